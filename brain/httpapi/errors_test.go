package httpapi

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/l2span/l2span/brain"
	"github.com/l2span/l2span/brain/store"
)

// TestErrorWire pins the status and the exact error body each kind of error
// is answered with: clients match on these bytes.
func TestErrorWire(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := New(nil, nil, Options{Logger: quiet})
	for _, tc := range []struct {
		err    error
		status int
		body   string
	}{
		{&brain.Error{Kind: brain.KindInvalid, Field: "mac", Message: "bad"}, 400, `{"error":{"code":"invalid","message":"bad","field":"mac"}}`},
		{&brain.Error{Kind: brain.KindConflict, Message: "taken"}, 409, `{"error":{"code":"conflict","message":"taken"}}`},
		{&brain.Error{Kind: brain.KindNotFound, Message: "gone"}, 404, `{"error":{"code":"not_found","message":"gone"}}`},
		{&brain.Error{Kind: brain.KindUnauthorized, Message: "who"}, 401, `{"error":{"code":"unauthorized","message":"who"}}`},
		{&brain.Error{Kind: brain.KindInternal, Message: "broke"}, 500, `{"error":{"code":"internal","message":"broke"}}`},
		{fmt.Errorf("get pod: %w", store.ErrNotFound), 404, `{"error":{"code":"not_found","message":"get pod: ` + store.ErrNotFound.Error() + `"}}`},
		{fmt.Errorf("secret dsn leaked"), 500, `{"error":{"code":"internal","message":"internal error"}}`},
	} {
		w := httptest.NewRecorder()
		s.writeError(w, httptest.NewRequest("GET", "/v1/pods", nil), tc.err)
		if w.Code != tc.status || w.Body.String() != tc.body+"\n" || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%v: got %d %q (%s), want %d %q", tc.err, w.Code, w.Body, w.Header().Get("Content-Type"), tc.status, tc.body)
		}
	}
}

// TestRequestErrorWire covers the errors the HTTP layer raises itself.
func TestRequestErrorWire(t *testing.T) {
	s := New(nil, nil, Options{Auth: BearerTokens("secret")})
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		want                            string
	}{
		{"no token", "GET", "/v1/pods", "", "", 401, `{"error":{"code":"unauthorized","message":"missing bearer token"}}`},
		{"wrong token", "GET", "/v1/pods", "nope", "", 401, `{"error":{"code":"unauthorized","message":"invalid bearer token"}}`},
		{"no route", "GET", "/v2/pods", "", "", 404, `{"error":{"code":"not_found","message":"no route GET /v2/pods"}}`},
		{"bad limit", "GET", "/v1/pods?limit=0", "secret", "", 400, `{"error":{"code":"invalid","message":"must be a number from 1 to 10000","field":"limit"}}`},
		{"bad since", "GET", "/v1/pods/p/state?watch=true&since=x", "secret", "", 400, `{"error":{"code":"invalid","message":"must be a revision number \u003e= 0","field":"since"}}`},
		{"bad delta", "GET", "/v1/pods/p/state?watch=true&delta=x", "secret", "", 400, `{"error":{"code":"invalid","message":"must be 1 or 0","field":"delta"}}`},
		{"unknown field", "POST", "/v1/pods", "secret", `{"idd":"x"}`, 400, `{"error":{"code":"invalid","message":"unknown field","field":"idd"}}`},
		{"two objects", "POST", "/v1/pods", "secret", `{}{}`, 400, `{"error":{"code":"invalid","message":"request body must hold one JSON object"}}`},
		{"empty", "POST", "/v1/pods", "secret", ``, 400, `{"error":{"code":"invalid","message":"request body is empty"}}`},
		{"id mismatch", "PUT", "/v1/pods/a", "secret", `{"id":"b"}`, 400, `{"error":{"code":"invalid","message":"does not match the URL","field":"id"}}`},
		{"too large", "POST", "/v1/pods", "secret", `{"id":"` + strings.Repeat("x", maxBody) + `"}`, 413,
			fmt.Sprintf(`{"error":{"code":"invalid","message":"request body is larger than %d bytes"}}`, maxBody)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			if tc.token != "" {
				r.Header.Set("Authorization", "Bearer "+tc.token)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			if w.Code != tc.status || w.Body.String() != tc.want+"\n" {
				t.Fatalf("got %d %s, want %d %s", w.Code, w.Body, tc.status, tc.want)
			}
			if tc.status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") != `Bearer realm="l2span"` {
				t.Fatalf("401 without WWW-Authenticate: %v", w.Header())
			}
		})
	}
}
