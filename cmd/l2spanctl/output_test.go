package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestTableEscapesControlCharacters: what the brain holds cannot break a
// table's columns or drive the terminal.
func TestTableEscapesControlCharacters(t *testing.T) {
	var buf bytes.Buffer
	tb := newTable(&buf)
	tb.row("NAME", "OWNER")
	tb.row("a\tb\nc", "x\x1b[2Jy\u202ez")
	tb.flush()
	out := buf.String()
	if strings.ContainsAny(out, "\x1b\u202e") || strings.Count(out, "\n") != 2 {
		t.Fatalf("table carries raw control characters: %q", out)
	}
	if !strings.Contains(out, `a\tb\nc`) || !strings.Contains(out, `x\x1b[2Jy\u202ez`) {
		t.Fatalf("escapes not shown: %q", out)
	}
}
