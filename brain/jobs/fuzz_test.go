package jobs

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig: a bottom-config file is loaded or refused, never a panic;
// what loads has passed Validate.
func FuzzLoadConfig(f *testing.F) {
	for _, s := range []string{
		`{"pods":{"pod1":{"auth":"noauth","endpoint":"http://127.0.0.1:9696","project_id":"p"}}}`,
		`{"pods":{"pod1":{"auth":"password","auth_url":"http://k:5000/v3","username":"u","password":"p"}}}`,
		`{"pods":{"pod1":{"auth":"application_credential"}}}`,
		`{"pods":{"":{}}}`, `{"pods":null}`, `{"colour":1}`, `[]`, `{`,
	} {
		f.Add([]byte(s))
	}
	path := filepath.Join(f.TempDir(), "bottom.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(path)
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("loaded a config Validate refuses: %v", verr)
			}
		}
	})
}
