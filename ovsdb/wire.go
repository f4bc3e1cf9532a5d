package ovsdb

import (
	"bytes"
	"encoding/json"
	"fmt"
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

// The decoders below read the OVSDB notation of monitor updates straight
// into the generated models.

// wireUUID decodes ["uuid", U].
type wireUUID string

func (u *wireUUID) UnmarshalJSON(b []byte) error {
	var a [2]string
	if err := json.Unmarshal(b, &a); err != nil {
		return fmt.Errorf("uuid %s: %w", b, err)
	}
	*u = wireUUID(a[1])
	return nil
}

// wireSet decodes a set of atoms of type T: a bare atom or ["set", [...]].
type wireSet[T any] []T

func (s *wireSet[T]) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		var tagged [2]json.RawMessage
		if err := json.Unmarshal(b, &tagged); err != nil {
			return fmt.Errorf("set %s: %w", b, err)
		}
		var tag string
		if err := json.Unmarshal(tagged[0], &tag); err != nil {
			return fmt.Errorf("set %s: %w", b, err)
		}
		if tag == "set" {
			var elems []T
			if err := json.Unmarshal(tagged[1], &elems); err != nil {
				return fmt.Errorf("set %s: %w", b, err)
			}
			*s = elems
			return nil
		}
	}
	var one T
	if err := json.Unmarshal(b, &one); err != nil {
		return fmt.Errorf("set atom %s: %w", b, err)
	}
	*s = []T{one}
	return nil
}

// wireMap decodes ["map", [[k, v], ...]].
type wireMap[K comparable, V any] map[K]V

func (m *wireMap[K, V]) UnmarshalJSON(b []byte) error {
	var tagged struct {
		tag   string
		pairs []json.RawMessage
	}
	var raw [2]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("map %s: %w", b, err)
	}
	if err := json.Unmarshal(raw[1], &tagged.pairs); err != nil {
		return fmt.Errorf("map %s: %w", b, err)
	}
	out := make(map[K]V, len(tagged.pairs))
	for _, p := range tagged.pairs {
		var kv [2]json.RawMessage
		if err := json.Unmarshal(p, &kv); err != nil {
			return fmt.Errorf("map pair %s: %w", p, err)
		}
		var k K
		var v V
		if err := json.Unmarshal(kv[0], &k); err != nil {
			return fmt.Errorf("map key %s: %w", kv[0], err)
		}
		if err := json.Unmarshal(kv[1], &v); err != nil {
			return fmt.Errorf("map value %s: %w", kv[1], err)
		}
		out[k] = v
	}
	*m = out
	return nil
}

func strs[T ~string](in []T) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = string(v)
	}
	return out
}

func optInt(s wireSet[int]) *int {
	if len(s) == 0 {
		return nil
	}
	v := s[0]
	return &v
}

func optString(s wireSet[string]) *string {
	if len(s) == 0 {
		return nil
	}
	v := s[0]
	return &v
}

func uuidMap[K comparable](m wireMap[K, wireUUID]) map[K]string {
	if m == nil {
		return nil
	}
	out := make(map[K]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}
