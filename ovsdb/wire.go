package ovsdb

import (
	"encoding/json"
)

// Ref is a row reference in an operation's row, condition or mutation: a
// real UUID marshals as ["uuid", U], anything else as ["named-uuid", N].
// It is libovsdb's ovsdb.UUID without the per-value regexp, which matters
// at 50,000 rows a run.
type Ref string

// IsUUID says whether r looks like a real (not named) UUID.
func (r Ref) IsUUID() bool { return isUUID(string(r)) }

func isUUID(s string) bool {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '-' {
			continue
		}
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// MarshalJSON encodes r in OVSDB notation.
func (r Ref) MarshalJSON() ([]byte, error) {
	kind := "named-uuid"
	if r.IsUUID() {
		kind = "uuid"
	}
	b := make([]byte, 0, len(r)+20)
	b = append(b, `["`...)
	b = append(b, kind...)
	b = append(b, `","`...)
	b = append(b, r...)
	b = append(b, `"]`...)
	return b, nil
}

// Set is an OVSDB set value in an operation: ["set", [...]].
type Set []any

// MarshalJSON encodes s in OVSDB notation.
func (s Set) MarshalJSON() ([]byte, error) {
	elems := []any(s)
	if elems == nil {
		elems = []any{}
	}
	return json.Marshal([]any{"set", elems})
}

// Map is an OVSDB map value in an operation: ["map", [[k, v], ...]].
type Map [][2]any

// MarshalJSON encodes m in OVSDB notation.
func (m Map) MarshalJSON() ([]byte, error) {
	pairs := [][2]any(m)
	if pairs == nil {
		pairs = [][2]any{}
	}
	return json.Marshal([]any{"map", pairs})
}

// StringMap turns a Go map into a Map.
func StringMap(m map[string]string) Map {
	out := make(Map, 0, len(m))
	for k, v := range m {
		out = append(out, [2]any{k, v})
	}
	return out
}
