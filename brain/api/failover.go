package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// parseBases reads one brain URL or a comma-separated list of replicas.
func parseBases(list string) ([]*url.URL, error) {
	var out []*url.URL
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(strings.TrimRight(raw, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("brain url %q: want http(s)://host:port", raw)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("brain url %q: want http(s)://host:port[,http(s)://host:port...]", list)
	}
	return out, nil
}

func (c *Client) current() int { return int(c.cur.Load()) % len(c.bases) }

// send makes the request on the replica in use and, when that replica
// cannot be reached or says it cannot serve (502, 503, 504), on the next
// ones in turn; the first that answers is used from then on. A request that
// may have reached a replica before failing is tried again elsewhere only if
// repeating it is harmless (GET, PUT, DELETE); a POST is retried only when
// its connection was never made.
func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, q url.Values, body any) (*http.Response, error) {
	n := len(c.bases)
	start := c.current()
	var last error
	for i := range n {
		idx := (start + i) % n
		req, err := c.newRequest(ctx, c.bases[idx], method, path, q, body)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err == nil {
			if !unavailable(resp.StatusCode) || i == n-1 {
				c.cur.Store(int64(idx))
				return resp, nil
			}
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			resp.Body.Close()
			last = fmt.Errorf("%s answered %d", c.bases[idx].Host, resp.StatusCode)
			continue
		}
		last = err
		if ctx.Err() != nil || !(notSent(err) || idempotent(method)) {
			break
		}
	}
	return nil, fmt.Errorf("%s %s: %w", method, path, last)
}

func unavailable(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

// notSent reports a failure to connect: the request never left.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}
