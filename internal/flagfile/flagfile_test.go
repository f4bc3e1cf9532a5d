package flagfile

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newSet() (*flag.FlagSet, *string, *int, *time.Duration) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.String("config", "", "")
	listen := fs.String("listen", "127.0.0.1:1", "")
	n := fs.Int("workers", 4, "")
	d := fs.Duration("poll", time.Second, "")
	return fs, listen, n, d
}

func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.conf")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsFileFlags(t *testing.T) {
	fs, listen, n, d := newSet()
	path := write(t, "# comment\n\nlisten = 0.0.0.0:9 \nworkers = \"8\"\npoll = 250ms\n")
	// A flag on the command line wins over the file.
	if err := Parse(fs, []string{"--config", path, "--workers", "2"}); err != nil {
		t.Fatal(err)
	}
	if *listen != "0.0.0.0:9" || *n != 2 || *d != 250*time.Millisecond {
		t.Fatalf("listen %q workers %d poll %s", *listen, *n, *d)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"listn = x\n", `:1: unknown key "listn"`},
		{"workers = lots\n", `:1: key "workers"`},
		{"poll = 5\n", `key "poll"`},
		{"listen\n", ":1: want key = value"},
		{"listen = a\nlisten = b\n", `:2: key "listen" already set on line 1`},
		{"config = other.conf\n", `unknown key "config"`},
	} {
		fs, _, _, _ := newSet()
		err := Parse(fs, []string{"--config", write(t, tc.text)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want it to mention %s", tc.text, err, tc.want)
		}
	}
	fs, _, _, _ := newSet()
	if err := Parse(fs, []string{"stray"}); err == nil || !strings.Contains(err.Error(), `unexpected argument "stray"`) {
		t.Errorf("stray argument: %v", err)
	}
	fs, _, _, _ = newSet()
	if err := Parse(fs, []string{"--config", "/nonexistent/c.conf"}); err == nil {
		t.Error("missing config file accepted")
	}
}
