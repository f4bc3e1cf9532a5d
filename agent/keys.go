package agent

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/l2span/l2span/agent/gossip"
)

// ReadKeyFile reads gossip keys: base64, one per line, the first encrypts.
func ReadKeyFile(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gossip key file: %w", err)
	}
	var keys [][]byte
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("gossip key file %s line %d: not base64", path, i+1)
		}
		// memberlist takes AES-128, -192 or -256 keys; anything else would
		// fail only when the keyring is built, far from the file's name.
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("gossip key file %s line %d: a key of %d bytes; want 16, 24 or 32", path, i+1, n)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("gossip key file %s holds no key", path)
	}
	return keys, nil
}

// Keyring is a running gossip keyring (gossip.Gossip).
type Keyring interface {
	InstallKey([]byte) error
	UseKey([]byte) error
	RemoveKey([]byte) error
	Keys() [][]byte
}

var _ Keyring = (*gossip.Gossip)(nil)

// RotateKeys makes the running keyring g equal to keys, the first primary:
// install the new ones, switch the primary, then drop the ones no longer
// listed. Run it on every gateway with the new file holding old and new
// keys, then again with only the new key, and the cluster never splits.
func RotateKeys(g Keyring, keys [][]byte) error {
	for _, k := range keys {
		if err := g.InstallKey(k); err != nil {
			return fmt.Errorf("install gossip key: %w", err)
		}
	}
	if err := g.UseKey(keys[0]); err != nil {
		return fmt.Errorf("use gossip key: %w", err)
	}
	for _, have := range g.Keys() {
		keep := false
		for _, k := range keys {
			keep = keep || bytes.Equal(have, k)
		}
		if !keep {
			if err := g.RemoveKey(have); err != nil {
				return fmt.Errorf("remove gossip key: %w", err)
			}
		}
	}
	return nil
}
