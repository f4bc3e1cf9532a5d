package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/l2span/l2span/brain/api"
)

// table is a tabwriter whose empty cells print as "-"; it keeps the first
// write error.
type table struct {
	tw  *tabwriter.Writer
	err error
}

func (e *env) table() *table { return newTable(e.out) }

func newTable(w io.Writer) *table {
	return &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

func (t *table) row(cells ...string) {
	if t.err != nil {
		return
	}
	for i, c := range cells {
		// The first column is a key or an id; empty there continues the row above.
		if c == "" && i > 0 {
			cells[i] = "-"
		}
		cells[i] = escapeCell(cells[i])
	}
	_, t.err = io.WriteString(t.tw, strings.Join(cells, "\t")+"\n")
}

func (t *table) flush() {
	if err := t.tw.Flush(); t.err == nil {
		t.err = err
	}
}

// json prints v as indented JSON.
func (e *env) json(v any) error {
	enc := json.NewEncoder(e.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// show prints one object: as JSON, or as a table of fields.
func (e *env) show(v any, fields func(*table)) error {
	if e.format == "json" {
		return e.json(v)
	}
	t := e.table()
	fields(t)
	t.flush()
	return t.err
}

// list prints a list: a JSON array (never null), or a table.
func list[T any](e *env, items []T, rows func(*table)) error {
	if e.format == "json" {
		if items == nil {
			items = []T{}
		}
		return e.json(items)
	}
	t := e.table()
	rows(t)
	t.flush()
	return t.err
}

// done confirms a deletion in table mode; JSON mode prints nothing.
func (e *env) done(format string, a ...any) error {
	if e.format == "json" {
		return nil
	}
	_, err := fmt.Fprintf(e.out, format+"\n", a...)
	return err
}

// filters builds list options from key, value pairs; empty values are dropped.
func filters(kv ...string) api.ListOptions {
	f := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			f[kv[i]] = kv[i+1]
		}
	}
	return api.ListOptions{Filters: f}
}

const timeLayout = "2006-01-02 15:04:05"

// fmtTime is a local wall-clock time, "-" when unset.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format(timeLayout)
}

// fmtSeen is a time with its age, for liveness (gateways' last_seen).
func fmtSeen(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return fmtTime(t) + " (" + fmtAge(time.Since(t)) + " ago)"
}

func fmtAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func fmtInt(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func fmtHints(h []string) string {
	if len(h) == 0 {
		return "(any)"
	}
	return strings.Join(h, ",")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// fmtSegment is "vxlan 5000", "vlan 101 on physnet1#pod1", or a note when the
// pod has not reported its segment yet.
func fmtSegment(s api.Segment) string {
	if s.NetworkType == "" {
		return "(not reported yet)"
	}
	out := s.NetworkType
	if s.SegmentationID != 0 {
		out += " " + strconv.Itoa(s.SegmentationID)
	}
	if s.PhysicalNetwork != "" {
		out += " on " + s.PhysicalNetwork
	}
	return out
}

// writeState prints a pod's desired state for a human.
func writeState(w io.Writer, st api.PodState) error {
	t := newTable(w)
	t.row("pod", st.PodID)
	t.row("revision", strconv.FormatInt(st.Revision, 10))
	if len(st.DVRBaseMACs) > 0 {
		var macs []string
		for _, pod := range slices.Sorted(maps.Keys(st.DVRBaseMACs)) {
			macs = append(macs, pod+"="+st.DVRBaseMACs[pod])
		}
		t.row("dvr_base_macs", strings.Join(macs, " "))
	}
	if len(st.Networks) == 0 {
		t.row("networks", "(none spanned into this pod and another)")
	}
	t.flush()
	if t.err != nil {
		return t.err
	}
	for _, n := range st.Networks {
		if err := writeNetworkState(w, n); err != nil {
			return err
		}
	}
	return nil
}

func writeNetworkState(w io.Writer, n api.NetworkState) error {
	if _, err := fmt.Fprintf(w, "\nnetwork %s (%s)\n", n.Name, n.NetworkID); err != nil {
		return err
	}
	t := newTable(w)
	t.row("  type", n.Type)
	t.row("  vni", strconv.FormatUint(uint64(n.VNI), 10))
	t.row("  local_segment", fmtSegment(n.LocalSegment))
	t.row("  remote_pods", strings.Join(n.RemotePods, ","))
	for i, s := range n.Subnets {
		key := ""
		if i == 0 {
			key = "  subnets"
		}
		v := s.CIDR
		if s.GatewayIP != "" {
			v += " gateway " + s.GatewayIP
		}
		t.row(key, v)
	}
	if len(n.RemotePorts) == 0 {
		t.row("  remote_ports", "(none)")
	}
	t.flush()
	if t.err != nil || len(n.RemotePorts) == 0 {
		return t.err
	}
	if _, err := fmt.Fprintln(w, "  remote_ports:"); err != nil {
		return err
	}
	t = newTable(w)
	t.row("    MAC", "IPS", "POD")
	for _, p := range n.RemotePorts {
		t.row("    "+p.MAC, strings.Join(p.IPs, ","), p.PodID)
	}
	t.flush()
	return t.err
}

// writeEvent prints one watch event: a JSON line, or a header and the state
// or the changed networks.
func writeEvent(e *env, ev api.WatchEvent) error {
	if e.format == "json" {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = e.out.Write(append(b, '\n'))
		return err
	}
	now := time.Now().Format("15:04:05")
	switch ev.Type {
	case api.EventSnapshot:
		if _, err := fmt.Fprintf(e.out, "=== %s snapshot, revision %d\n", now, ev.Revision); err != nil {
			return err
		}
		if ev.State != nil {
			if err := writeState(e.out, *ev.State); err != nil {
				return err
			}
		}
	case api.EventUpdate:
		if _, err := fmt.Fprintf(e.out, "=== %s update, revision %d: %d network(s) changed, %d removed\n",
			now, ev.Revision, len(ev.Networks), len(ev.Removed)); err != nil {
			return err
		}
		for _, n := range ev.Networks {
			if err := writeNetworkState(e.out, n); err != nil {
				return err
			}
		}
		for _, id := range ev.Removed {
			if _, err := fmt.Fprintf(e.out, "\nremoved network %s\n", id); err != nil {
				return err
			}
		}
	default:
		if _, err := fmt.Fprintf(e.out, "=== %s %s, revision %d\n", now, ev.Type, ev.Revision); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(e.out)
	return err
}

// escapeCell writes control characters (a tab or newline would break the
// table, an escape sequence would drive the terminal) and bidirectional
// overrides as Go escapes, so a cell shows what the brain holds.
func escapeCell(c string) string {
	if !strings.ContainsFunc(c, unsafeRune) {
		return c
	}
	var b strings.Builder
	for _, r := range c {
		if unsafeRune(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || r == utf8.RuneError || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}
