package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/l2span/l2span/brain/api"
	"github.com/l2span/l2span/test/pgtest"
)

// TestOnlineBackupRestore backs a serving brain's SQLite store up with
// --backup-to, then starts a brain on the copy: everything is there.
func TestOnlineBackupRestore(t *testing.T) {
	dir := t.TempDir()
	p := startBrainProc(t, "sqlite://"+filepath.Join(dir, "live.db"), filepath.Join(dir, "live.log"))
	c := p.client(t)
	ctx := context.Background()
	if _, err := c.CreatePod(ctx, api.Pod{ID: "pod1", AZ: "az1"}); err != nil {
		t.Fatal(err)
	}
	n, err := c.CreateNetwork(ctx, api.NetworkCreate{Name: "keep", Type: api.TypeSharedVXLAN})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: fmt.Sprintf("fa:16:3e:00:0b:%02x", i)}); err != nil {
			t.Fatal(err)
		}
	}
	backup := filepath.Join(dir, "backup.db")
	out, err := exec.Command(brainBinary(t), "--store", "sqlite://"+filepath.Join(dir, "live.db"), "--backup-to", backup).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "backup written") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	// The same again refuses to overwrite.
	if out, err := exec.Command(brainBinary(t), "--store", "sqlite://"+filepath.Join(dir, "live.db"), "--backup-to", backup).CombinedOutput(); err == nil {
		t.Fatalf("backup overwrote an existing file: %s", out)
	}
	restored := startBrainProc(t, "sqlite://"+backup, filepath.Join(dir, "restored.log")).client(t)
	ports, err := api.ListAll(ctx, restored.ListPorts, api.ListOptions{Filters: map[string]string{"network_id": n.ID}})
	if err != nil || len(ports) != 50 {
		t.Fatalf("restored brain has %d ports (%v)", len(ports), err)
	}
	st, err := restored.PodState(ctx, "pod1")
	if err != nil || st.Revision == 0 {
		t.Fatalf("restored state %+v %v", st, err)
	}
}

// TestPostgresDumpRestore runs the documented PostgreSQL procedure:
// pg_dump of a serving brain's database, psql into a new database, a brain
// on the restored database has everything.
func TestPostgresDumpRestore(t *testing.T) {
	srv := pgtest.Shared(t)
	bin := "/usr/lib/postgresql/15/bin"
	if _, err := os.Stat(bin + "/pg_dump"); err != nil {
		if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump"); len(m) > 0 {
			bin = filepath.Dir(m[len(m)-1])
		} else {
			t.Fatal("pg_dump not installed: run make deps")
		}
	}
	dir := t.TempDir()
	live := srv.NewDatabase(t)
	p := startBrainProc(t, live, filepath.Join(dir, "live.log"))
	c := p.client(t)
	ctx := context.Background()
	if _, err := c.CreatePod(ctx, api.Pod{ID: "pod1", AZ: "az1"}); err != nil {
		t.Fatal(err)
	}
	n, err := c.CreateNetwork(ctx, api.NetworkCreate{Name: "keep", Type: api.TypeSharedVXLAN})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePort(ctx, api.PortCreate{NetworkID: n.ID, PodID: "pod1", MAC: "fa:16:3e:00:0c:01"}); err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(dir, "brain.sql")
	if out, err := exec.Command(bin+"/pg_dump", "--dbname", live, "--file", dump).CombinedOutput(); err != nil {
		t.Fatalf("pg_dump: %v\n%s", err, out)
	}
	restored := srv.NewDatabase(t)
	if out, err := exec.Command(bin+"/psql", "--dbname", restored, "--quiet", "--set", "ON_ERROR_STOP=1", "--file", dump).CombinedOutput(); err != nil {
		t.Fatalf("psql restore: %v\n%s", err, out)
	}
	rc := startBrainProc(t, restored, filepath.Join(dir, "restored.log")).client(t)
	got, err := rc.GetNetwork(ctx, n.ID)
	if err != nil || len(got.Segments) != 1 || got.SegmentationID != n.SegmentationID {
		t.Fatalf("restored network %+v %v", got, err)
	}
	// The restored brain keeps allocating after the restored ids.
	n2, err := rc.CreateNetwork(ctx, api.NetworkCreate{Name: "next", Type: api.TypeSharedVXLAN})
	if err != nil || n2.SegmentationID == n.SegmentationID {
		t.Fatalf("allocation after restore: %+v %v", n2, err)
	}
}
