package brain

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/l2span/l2span/brain/store"
)

// Error codes in the API's error body.
const (
	CodeInvalid  = "invalid"
	CodeNotFound = "not_found"
	CodeConflict = "conflict"
	CodeInternal = "internal"
	CodeAuth     = "unauthorized"
)

// Error is a rule the caller broke (or an internal failure), with the HTTP
// status, a stable code and, for input errors, the field at fault.
type Error struct {
	Status  int
	Code    string
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
	return &Error{Status: http.StatusBadRequest, Code: CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

func conflict(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusConflict, Code: CodeConflict, Field: field, Message: fmt.Sprintf(format, args...)}
}

// AsError turns any error into an *Error: coded errors pass through, store
// not-found becomes 404, everything else 500.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, store.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Message: err.Error()}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error"}
}
