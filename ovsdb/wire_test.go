package ovsdb

import (
	"encoding/json"
	"testing"
)

func TestRefMarshal(t *testing.T) {
	for in, want := range map[Ref]string{
		"0b5e6c1c-5b33-4d5f-9d43-7c7e3a0c1f00": `["uuid","0b5e6c1c-5b33-4d5f-9d43-7c7e3a0c1f00"]`,
		"ls100":                                `["named-uuid","ls100"]`,
		"0B5E6C1C-5B33-4D5F-9D43-7C7E3A0C1F00": `["named-uuid","0B5E6C1C-5B33-4D5F-9D43-7C7E3A0C1F00"]`,
	} {
		b, err := json.Marshal(in)
		if err != nil || string(b) != want {
			t.Errorf("%s: %s %v, want %s", in, b, err, want)
		}
	}
	if b, _ := json.Marshal(Set(nil)); string(b) != `["set",[]]` {
		t.Errorf("empty set %s", b)
	}
	if b, _ := json.Marshal(Map{{10, Ref("x")}}); string(b) != `["map",[[10,["named-uuid","x"]]]]` {
		t.Errorf("map %s", b)
	}
}
