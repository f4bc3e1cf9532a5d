package brain

import (
	"errors"
	"fmt"

	"github.com/l2span/l2span/brain/store"
)

// Kind says what sort of failure an Error is. The transport decides how to
// answer each kind (brain/httpapi maps them to status codes).
type Kind uint8

const (
	// KindInternal is a failure the caller cannot fix; the zero Kind, so an
	// Error built without one is never mistaken for the caller's fault.
	KindInternal     Kind = iota
	KindInvalid           // the input breaks a rule
	KindNotFound          // a named object does not exist
	KindConflict          // the input clashes with what exists
	KindUnauthorized      // the caller could not be authenticated
	KindForbidden         // the caller is known but may not do this
)

var kindNames = [...]string{
	KindInternal:     "internal",
	KindInvalid:      "invalid",
	KindNotFound:     "not_found",
	KindConflict:     "conflict",
	KindUnauthorized: "unauthorized",
	KindForbidden:    "forbidden",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Error is a rule the caller broke (or an internal failure): its kind and,
// for input errors, the field at fault.
type Error struct {
	Kind    Kind
	Message string
	Field   string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Message)
	}
	return e.Message
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

func conflict(field, format string, args ...any) *Error {
	return &Error{Kind: KindConflict, Field: field, Message: fmt.Sprintf(format, args...)}
}

// AsError turns any error into an *Error: coded errors pass through, store
// not-found becomes KindNotFound, everything else KindInternal with a
// message that leaks nothing.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, store.ErrNotFound) {
		return &Error{Kind: KindNotFound, Message: err.Error()}
	}
	return &Error{Kind: KindInternal, Message: "internal error"}
}
