package httpapi

import (
	"errors"
	"net/http"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/api"
)

// Error codes in the API's error body; they are part of the wire contract.
const (
	codeInvalid      = "invalid"
	codeNotFound     = "not_found"
	codeConflict     = "conflict"
	codeInternal     = "internal"
	codeUnauthorized = "unauthorized"
	codeForbidden    = "forbidden"
)

// answer is how one kind of brain error goes on the wire.
type answer struct {
	status int
	code   string
}

var answers = map[brain.Kind]answer{
	brain.KindInvalid:      {http.StatusBadRequest, codeInvalid},
	brain.KindNotFound:     {http.StatusNotFound, codeNotFound},
	brain.KindConflict:     {http.StatusConflict, codeConflict},
	brain.KindUnauthorized: {http.StatusUnauthorized, codeUnauthorized},
	brain.KindForbidden:    {http.StatusForbidden, codeForbidden},
	brain.KindInternal:     {http.StatusInternalServerError, codeInternal},
}

// statusError answers err with a status other than its kind's: a request
// body over the size limit is invalid input, but HTTP has 413 for it.
type statusError struct {
	status int
	err    *brain.Error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// errorAnswer maps err to the status code and error body it is answered with.
func errorAnswer(err error) (int, api.ErrorBody) {
	e := brain.AsError(err)
	a, ok := answers[e.Kind]
	if !ok {
		a = answers[brain.KindInternal]
	}
	var se *statusError
	if errors.As(err, &se) {
		a.status = se.status
	}
	return a.status, api.ErrorBody{Error: api.ErrorDetail{Code: a.code, Message: e.Message, Field: e.Field}}
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, body := errorAnswer(err)
	if status >= 500 {
		s.errors5.Inc()
		s.opts.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeJSON(w, status, body)
}

func invalid(field, message string) *brain.Error {
	return &brain.Error{Kind: brain.KindInvalid, Field: field, Message: message}
}
