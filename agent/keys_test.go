package agent

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

type fakeKeyring struct {
	keys    [][]byte
	primary []byte
}

func (f *fakeKeyring) InstallKey(k []byte) error {
	for _, h := range f.keys {
		if bytes.Equal(h, k) {
			return nil
		}
	}
	f.keys = append(f.keys, k)
	return nil
}
func (f *fakeKeyring) UseKey(k []byte) error { f.primary = k; return nil }
func (f *fakeKeyring) RemoveKey(k []byte) error {
	for i, h := range f.keys {
		if bytes.Equal(h, k) {
			f.keys = append(f.keys[:i], f.keys[i+1:]...)
			return nil
		}
	}
	return nil
}
func (f *fakeKeyring) Keys() [][]byte { return append([][]byte(nil), f.keys...) }

func TestRotateKeys(t *testing.T) {
	old, next := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	write := func(keys ...[]byte) {
		var s string
		for _, k := range keys {
			s += base64.StdEncoding.EncodeToString(k) + "\n"
		}
		os.WriteFile(path, []byte("# gossip keys\n"+s), 0o600)
	}
	g := &fakeKeyring{keys: [][]byte{old}, primary: old}
	// Step 1: both keys, the new one first.
	write(next, old)
	keys, err := ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := RotateKeys(g, keys); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g.primary, next) || len(g.keys) != 2 {
		t.Fatalf("after step 1: primary %x keys %d", g.primary[:1], len(g.keys))
	}
	// Step 2: only the new key.
	write(next)
	keys, _ = ReadKeyFile(path)
	if err := RotateKeys(g, keys); err != nil {
		t.Fatal(err)
	}
	if len(g.keys) != 1 || !bytes.Equal(g.keys[0], next) {
		t.Fatalf("after step 2: %d keys", len(g.keys))
	}
	os.WriteFile(path, []byte("not base64!\n"), 0o600)
	if _, err := ReadKeyFile(path); err == nil {
		t.Fatal("bad key file accepted")
	}
}
