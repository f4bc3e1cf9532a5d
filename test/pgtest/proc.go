package pgtest

// Finding and ending a postmaster's processes through /proc.

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procID names a process by PID and start time, so that a recycled PID is
// not taken for the process it once named.
type procID struct {
	pid   int
	start string // field 22 of /proc/PID/stat
}

// children lists the live (non-zombie) children of ppid: for a postmaster,
// its backends and auxiliary processes. (They call setsid, so they are not
// in the postmaster's process group.)
func children(ppid int) []procID {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var ids []procID
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f := statFields(pid)
		// f[0] is field 3 (state), f[1] field 4 (ppid), f[19] field 22 (starttime).
		if len(f) < 20 || f[0] == "Z" || f[0] == "X" || f[1] != strconv.Itoa(ppid) {
			continue
		}
		ids = append(ids, procID{pid, f[19]})
	}
	return ids
}

// statFields returns the fields of /proc/PID/stat after "pid (comm)".
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := strings.LastIndexByte(string(b), ')') // comm may hold spaces and parens
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// alive reports whether the process is still running (not a zombie).
func (id procID) alive() bool {
	f := statFields(id.pid)
	return len(f) >= 20 && f[0] != "Z" && f[0] != "X" && f[19] == id.start
}

// waitGone waits until none of ids is alive, or until timeout.
func waitGone(ids []procID, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, id := range ids {
		for id.alive() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// killAll SIGKILLs the postmaster p and the children listed in kids.
func (p *proc) killAll(kids []procID) {
	select {
	case <-p.done: // reaped: its PID may name another process now
	default:
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
	for _, k := range kids {
		if k.alive() {
			_ = syscall.Kill(k.pid, syscall.SIGKILL)
		}
	}
}

// processAlive reports whether pid names a live, non-zombie process.
func processAlive(pid int) bool {
	f := statFields(pid)
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

var sweepOnce sync.Once

// sweepStale removes server directories left in the temp dirs by test
// binaries that died without cleaning up (their postmasters died with them,
// by Pdeathsig). A directory is removed only when the test binary that made
// it (its PID is in the name) is gone and no postmaster runs in it.
func sweepStale() {
	for _, parent := range []string{os.TempDir(), "/tmp"} {
		dirs, _ := filepath.Glob(filepath.Join(parent, dirPrefix+"*"))
		for _, dir := range dirs {
			rest := strings.TrimPrefix(filepath.Base(dir), dirPrefix)
			owner, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
			if err != nil || owner == os.Getpid() || processAlive(owner) {
				continue
			}
			if fi, err := os.Stat(dir); err != nil || time.Since(fi.ModTime()) < time.Minute {
				continue
			}
			if b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
				line, _, _ := strings.Cut(string(b), "\n")
				if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && processAlive(pid) {
					continue
				}
			}
			_ = os.RemoveAll(dir)
		}
	}
}
