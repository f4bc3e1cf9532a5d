package store

import (
	"context"
	"fmt"
)

// SetNetworkExternal switches a network to or from external with the
// az_hints that go with it.
func (t *Tx) SetNetworkExternal(ctx context.Context, id string, external bool, azHints []string) error {
	if _, err := t.exec(ctx, `UPDATE networks SET external = ?, az_hints = ? WHERE id = ?`, boolInt(external), jsonList(azHints), id); err != nil {
		return fmt.Errorf("set external of network %s: %w", id, err)
	}
	return nil
}
