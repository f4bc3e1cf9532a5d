package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Error is an error answer of the brain.
type Error struct {
	Status int
	ErrorDetail
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("brain: %d %s: %s: %s", e.Status, e.Code, e.Field, e.Message)
	}
	return fmt.Sprintf("brain: %d %s: %s", e.Status, e.Code, e.Message)
}

// IsStatus reports whether err is a brain answer with the given HTTP status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}

// Client talks to a brain, or to several replicas of one (on one
// PostgreSQL): it sticks to the replica that answered last and moves to the
// next when that one cannot be reached (see failover.go).
type Client struct {
	bases []*url.URL
	cur   atomic.Int64
	http  *http.Client
	token string
	// stream is used for watches: no overall timeout.
	stream *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithToken sends a bearer token on every request.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithTLS sets the TLS configuration (CA, client certificate).
func WithTLS(cfg *tls.Config) Option {
	return func(c *Client) {
		dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}
		c.http.Transport = &http.Transport{TLSClientConfig: cfg, Proxy: nil, DialContext: dialer.DialContext}
		c.stream.Transport = c.http.Transport
	}
}

// WithTransport sets the HTTP transport (e.g. a dialer into a namespace).
func WithTransport(rt http.RoundTripper) Option {
	return func(c *Client) { c.http.Transport, c.stream.Transport = rt, rt }
}

// WithTimeout sets the timeout of non-watch requests (default 30s).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.http.Timeout = d } }

// NewClient returns a client for the brain at baseURL (http(s)://host:port),
// or for the replicas in a comma-separated list of such URLs.
func NewClient(baseURL string, opts ...Option) (*Client, error) {
	bases, err := parseBases(baseURL)
	if err != nil {
		return nil, err
	}
	// No proxy from the environment: the brain is reached directly.
	// A replica whose host is gone must not hold a connect for the OS's
	// minutes-long timeout: the next one is tried instead.
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}
	tr := &http.Transport{Proxy: nil, DialContext: dialer.DialContext, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}
	c := &Client{bases: bases, http: &http.Client{Timeout: 30 * time.Second, Transport: tr}, stream: &http.Client{Transport: tr}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// URL returns the base URL of the brain replica in use.
func (c *Client) URL() string { return c.bases[c.current()].String() }

func (c *Client) newRequest(ctx context.Context, base *url.URL, method, path string, q url.Values, body any) (*http.Request, error) {
	u := *base
	u.Path += path
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := c.send(ctx, c.http, method, path, q, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeError(resp)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func decodeError(resp *http.Response) error {
	var body ErrorBody
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(b, &body); err != nil || body.Error.Code == "" {
		return &Error{Status: resp.StatusCode, ErrorDetail: ErrorDetail{Code: http.StatusText(resp.StatusCode), Message: strings.TrimSpace(string(b))}}
	}
	return &Error{Status: resp.StatusCode, ErrorDetail: body.Error}
}

// ListOptions page and filter a list; Filters are query parameters
// (e.g. network_id, pod_id, az, name, type, mac).
type ListOptions struct {
	Limit   int
	Marker  string
	Filters map[string]string
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Marker != "" {
		q.Set("marker", o.Marker)
	}
	for k, v := range o.Filters {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func list[T any](ctx context.Context, c *Client, path string, o ListOptions) (List[T], error) {
	var l List[T]
	err := c.do(ctx, http.MethodGet, path, o.query(), nil, &l)
	return l, err
}

// ListAll follows pages until the end.
func ListAll[T any](ctx context.Context, page func(ctx context.Context, o ListOptions) (List[T], error), o ListOptions) ([]T, error) {
	var out []T
	for {
		l, err := page(ctx, o)
		if err != nil {
			return out, err
		}
		out = append(out, l.Items...)
		if l.Next == "" {
			return out, nil
		}
		o.Marker = l.Next
	}
}

// CreatePod registers a pod.
func (c *Client) CreatePod(ctx context.Context, p Pod) (Pod, error) {
	var out Pod
	return out, c.do(ctx, http.MethodPost, "/v1/pods", nil, p, &out)
}

// UpdatePod changes a pod's mutable fields.
func (c *Client) UpdatePod(ctx context.Context, p Pod) (Pod, error) {
	var out Pod
	return out, c.do(ctx, http.MethodPut, "/v1/pods/"+url.PathEscape(p.ID), nil, p, &out)
}

// GetPod returns a pod.
func (c *Client) GetPod(ctx context.Context, id string) (Pod, error) {
	var out Pod
	return out, c.do(ctx, http.MethodGet, "/v1/pods/"+url.PathEscape(id), nil, nil, &out)
}

// ListPods returns a page of pods.
func (c *Client) ListPods(ctx context.Context, o ListOptions) (List[Pod], error) {
	return list[Pod](ctx, c, "/v1/pods", o)
}

// DeletePod removes a pod.
func (c *Client) DeletePod(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/pods/"+url.PathEscape(id), nil, nil, nil)
}

// CreateNetwork creates a top network.
func (c *Client) CreateNetwork(ctx context.Context, n NetworkCreate) (Network, error) {
	var out Network
	return out, c.do(ctx, http.MethodPost, "/v1/networks", nil, n, &out)
}

// UpdateNetwork changes a network.
func (c *Client) UpdateNetwork(ctx context.Context, id string, u NetworkUpdate) (Network, error) {
	var out Network
	return out, c.do(ctx, http.MethodPut, "/v1/networks/"+url.PathEscape(id), nil, u, &out)
}

// GetNetwork returns a network with its segments.
func (c *Client) GetNetwork(ctx context.Context, id string) (Network, error) {
	var out Network
	return out, c.do(ctx, http.MethodGet, "/v1/networks/"+url.PathEscape(id), nil, nil, &out)
}

// ListNetworks returns a page of networks.
func (c *Client) ListNetworks(ctx context.Context, o ListOptions) (List[Network], error) {
	return list[Network](ctx, c, "/v1/networks", o)
}

// DeleteNetwork deletes a network.
func (c *Client) DeleteNetwork(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/networks/"+url.PathEscape(id), nil, nil, nil)
}

// ListSegments returns a network's segments.
func (c *Client) ListSegments(ctx context.Context, networkID string) ([]Segment, error) {
	var l List[Segment]
	err := c.do(ctx, http.MethodGet, "/v1/networks/"+url.PathEscape(networkID)+"/segments", nil, nil, &l)
	return l.Items, err
}

// ReportSegment records the bottom segment a pod chose (mixed_vlan_vxlan).
func (c *Client) ReportSegment(ctx context.Context, networkID string, r SegmentReport) (Segment, error) {
	var out Segment
	return out, c.do(ctx, http.MethodPost, "/v1/networks/"+url.PathEscape(networkID)+"/segments", nil, r, &out)
}

// CreateSubnet adds a subnet.
func (c *Client) CreateSubnet(ctx context.Context, s Subnet) (Subnet, error) {
	var out Subnet
	return out, c.do(ctx, http.MethodPost, "/v1/subnets", nil, s, &out)
}

// GetSubnet returns a subnet.
func (c *Client) GetSubnet(ctx context.Context, id string) (Subnet, error) {
	var out Subnet
	return out, c.do(ctx, http.MethodGet, "/v1/subnets/"+url.PathEscape(id), nil, nil, &out)
}

// ListSubnets returns a page of subnets.
func (c *Client) ListSubnets(ctx context.Context, o ListOptions) (List[Subnet], error) {
	return list[Subnet](ctx, c, "/v1/subnets", o)
}

// DeleteSubnet removes a subnet.
func (c *Client) DeleteSubnet(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/subnets/"+url.PathEscape(id), nil, nil, nil)
}

// CreatePort binds a port in a pod.
func (c *Client) CreatePort(ctx context.Context, p PortCreate) (Port, error) {
	var out Port
	return out, c.do(ctx, http.MethodPost, "/v1/ports", nil, p, &out)
}

// CreatePorts creates many ports at once: all or none.
func (c *Client) CreatePorts(ctx context.Context, ports []PortCreate) ([]Port, error) {
	var out Ports
	err := c.do(ctx, http.MethodPost, "/v1/ports", nil, BulkPortCreate{Ports: ports}, &out)
	return out.Ports, err
}

// GetPort returns a port.
func (c *Client) GetPort(ctx context.Context, id string) (Port, error) {
	var out Port
	return out, c.do(ctx, http.MethodGet, "/v1/ports/"+url.PathEscape(id), nil, nil, &out)
}

// ListPorts returns a page of ports.
func (c *Client) ListPorts(ctx context.Context, o ListOptions) (List[Port], error) {
	return list[Port](ctx, c, "/v1/ports", o)
}

// UpdatePort moves a port, changes its IPs or clears its duplicate mark.
func (c *Client) UpdatePort(ctx context.Context, id string, u PortUpdate) (Port, error) {
	var out Port
	return out, c.do(ctx, http.MethodPut, "/v1/ports/"+url.PathEscape(id), nil, u, &out)
}

// DeletePort removes a port.
func (c *Client) DeletePort(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/ports/"+url.PathEscape(id), nil, nil, nil)
}

// RegisterGateway registers or refreshes a gateway.
func (c *Client) RegisterGateway(ctx context.Context, g Gateway) (Gateway, error) {
	var out Gateway
	return out, c.do(ctx, http.MethodPut, "/v1/gateways/"+url.PathEscape(g.ID), nil, g, &out)
}

// ListGateways returns a page of gateways.
func (c *Client) ListGateways(ctx context.Context, o ListOptions) (List[Gateway], error) {
	return list[Gateway](ctx, c, "/v1/gateways", o)
}

// GetGateway returns a gateway.
func (c *Client) GetGateway(ctx context.Context, id string) (Gateway, error) {
	var out Gateway
	return out, c.do(ctx, http.MethodGet, "/v1/gateways/"+url.PathEscape(id), nil, nil, &out)
}

// DeleteGateway removes a gateway.
func (c *Client) DeleteGateway(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/gateways/"+url.PathEscape(id), nil, nil, nil)
}

// PodState returns a pod's full desired state.
func (c *Client) PodState(ctx context.Context, pod string) (PodState, error) {
	var out PodState
	return out, c.do(ctx, http.MethodGet, "/v1/pods/"+url.PathEscape(pod)+"/state", nil, nil, &out)
}

// Watch streams the pod's state events after since (0: start with a
// snapshot) to fn until ctx ends, the stream breaks, or fn fails. It asks
// for deltas (delta=1): fn gets snapshots and EventDelta events (or, from a
// brain that predates deltas, EventUpdate ones). It returns the error that
// ended it; the caller reconnects with the last revision seen. Heartbeats
// reach fn too: a watch resumed at the current revision hears nothing else,
// and the first heartbeat (sent at once) says it is up. idle bounds the wait
// for any line (heartbeats included); 0 means 45s.
func (c *Client) Watch(ctx context.Context, pod string, since int64, idle time.Duration, fn func(WatchEvent) error) error {
	return c.watch(ctx, pod, since, idle, true, fn)
}

// WatchFull is Watch on the full-network stream of older agents: fn gets
// snapshots and EventUpdate events carrying every changed network whole.
func (c *Client) WatchFull(ctx context.Context, pod string, since int64, idle time.Duration, fn func(WatchEvent) error) error {
	return c.watch(ctx, pod, since, idle, false, fn)
}

func (c *Client) watch(ctx context.Context, pod string, since int64, idle time.Duration, delta bool, fn func(WatchEvent) error) error {
	if idle <= 0 {
		idle = 45 * time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := url.Values{"watch": {"true"}, "since": {strconv.FormatInt(since, 10)}}
	if delta {
		q.Set("delta", "1")
	}
	// A watch that cannot start on one replica starts on the next, from the
	// same revision: the state the caller holds stays valid.
	resp, err := c.send(ctx, c.stream, http.MethodGet, "/v1/pods/"+url.PathEscape(pod)+"/state", q, nil)
	if err != nil {
		return fmt.Errorf("watch %s: %w", pod, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	// A stalled connection shows as no line (not even a heartbeat) for idle.
	alive := make(chan struct{}, 1)
	go func() {
		t := time.NewTimer(idle)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-alive:
				t.Reset(idle)
			case <-t.C:
				cancel()
				return
			}
		}
	}()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		select {
		case alive <- struct{}{}:
		default:
		}
		var ev WatchEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("watch %s: decode event: %w", pod, err)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("watch %s: %w", pod, err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("watch %s: %w", pod, ctx.Err())
	}
	return fmt.Errorf("watch %s: stream closed by the brain", pod)
}
