package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/l2span/l2span/brain/model"
)

// decode reads a JSON body strictly: unknown fields and trailing data are
// errors naming the field.
func decode(r *http.Request, v any) error {
	// The body is capped by the limit middleware (Limits.MaxBodyBytes).
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("", "request body must hold one JSON object")
	}
	return nil
}

func bodyError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	var maxErr *http.MaxBytesError
	switch {
	case errors.As(err, &typeErr):
		return invalid(typeErr.Field, fmt.Sprintf("must be a JSON %s, not %s", typeErr.Type, typeErr.Value))
	case errors.As(err, &syntaxErr):
		return invalid("", fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, syntaxErr))
	case errors.As(err, &maxErr):
		return limitError(http.StatusRequestEntityTooLarge, refusedBody, 0, "request body is larger than %d bytes", maxErr.Limit)
	case errors.Is(err, io.EOF):
		return invalid("", "request body is empty")
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return invalid(strings.Trim(f, `"`), "unknown field")
	}
	return invalid("", "malformed JSON: "+err.Error())
}

// page reads the marker and limit query parameters of a list.
func page(r *http.Request) (model.Page, error) {
	q := r.URL.Query()
	p := model.Page{Marker: q.Get("marker"), Limit: 1000}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return p, invalid("limit", "must be a number from 1 to 10000")
		}
		p.Limit = n
	}
	return p, nil
}

// pathID is the {id} of the URL; a body that names another id is refused.
func pathID(r *http.Request, bodyID string) (string, error) {
	id := r.PathValue("id")
	if bodyID != "" && bodyID != id {
		return "", invalid("id", "does not match the URL")
	}
	return id, nil
}
