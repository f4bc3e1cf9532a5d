package ovsdb

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/ovn-kubernetes/libovsdb/ovsdb"
)

// DatabaseName is the name of the hardware_vtep database.
const DatabaseName = "hardware_vtep"

// ErrNotConnected is returned by calls made while the client has no live
// connection and the context ends before it gets one back.
var ErrNotConnected = errors.New("ovsdb: not connected")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("ovsdb: client closed")

// ClientOptions configure a Client.
type ClientOptions struct {
	// Endpoint is "unix:PATH", "tcp:HOST:PORT" or "ssl:HOST:PORT".
	Endpoint string
	// TLS is used for ssl: endpoints (client certificate, CA pool,
	// ServerName). Required for ssl:.
	TLS *tls.Config
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// OnChange, if set, is called from the client's reader goroutine after
	// the cache has taken an update, with the tables that changed; after
	// every (re)connect it is called with every monitored table. It must
	// not block for long nor call back into the client synchronously.
	OnChange func(tables []string)
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 100ms
	// and 5s).
	MinBackoff, MaxBackoff time.Duration
	// ProbeInterval is how often an idle connection is probed with echo; a
	// connection silent for 3 intervals is dropped. Default 5s.
	ProbeInterval time.Duration
}

// Client is a small OVSDB JSON-RPC (RFC 7047) client for hardware_vtep:
// transact, echo, and one monitor of MonitoredTables kept in a typed cache
// (State). It reconnects with backoff and, on each connection, replaces the
// cache with the server's fresh snapshot, so nothing stale survives a
// server restart.
//
// It exists because libovsdb's client package cannot be built from this
// module's go.sum (its dependencies cenkalti/backoff, cenkalti/rpc2 and
// go-logr are not listed); it uses libovsdb's ovsdb types for operations
// and results.
type Client struct {
	opts ClientOptions
	log  *slog.Logger

	stateMu sync.RWMutex
	state   *State

	mu        sync.Mutex
	conn      *rpcConn      // nil while disconnected
	connected chan struct{} // closed while conn != nil
	gen       uint64        // connection generation, bumped per connect
	closed    bool

	cancel context.CancelFunc
	done   chan struct{}
}

// Connect starts a client and waits until it is connected with its cache
// filled, or ctx ends. Later disconnections are repaired in the background.
func Connect(ctx context.Context, opts ClientOptions) (*Client, error) {
	if _, _, err := splitEndpoint(opts.Endpoint); err != nil {
		return nil, err
	}
	if strings.HasPrefix(opts.Endpoint, "ssl:") && opts.TLS == nil {
		return nil, fmt.Errorf("ovsdb: endpoint %s: ssl needs a TLS config", opts.Endpoint)
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Second
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c := &Client{
		opts:      opts,
		log:       log.With("ovsdb", opts.Endpoint),
		state:     newState(),
		connected: make(chan struct{}),
		cancel:    cancel,
		done:      make(chan struct{}),
	}
	go c.run(runCtx)
	if _, err := c.waitConn(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("ovsdb: connect %s: %w", opts.Endpoint, err)
	}
	return c, nil
}

// Close stops the client and closes its connection.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conn := c.conn
	c.mu.Unlock()
	c.cancel()
	if conn != nil {
		conn.close(ErrClosed)
	}
	<-c.done
	return nil
}

// Read runs fn with the cache read-locked. fn must not keep references
// past its return if it needs a consistent view, nor modify rows.
func (c *Client) Read(fn func(*State)) {
	c.stateMu.RLock()
	defer c.stateMu.RUnlock()
	fn(c.state)
}

// Generation is the number of connections made so far; it changes when the
// client reconnects.
func (c *Client) Generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// Transact commits ops as one transaction and returns its results. A
// transaction that the server rejects is returned as an error wrapping
// every operation error (libovsdb's ovsdb.OperationError types).
func (c *Client) Transact(ctx context.Context, ops ...ovsdb.Operation) ([]ovsdb.OperationResult, error) {
	conn, err := c.waitConn(ctx)
	if err != nil {
		return nil, err
	}
	params := make([]any, 0, len(ops)+1)
	params = append(params, DatabaseName)
	for _, op := range ops {
		params = append(params, op)
	}
	raw, err := conn.call(ctx, "transact", params, nil)
	if err != nil {
		return nil, fmt.Errorf("transact: %w", err)
	}
	var results []ovsdb.OperationResult
	if err := json.Unmarshal(raw, &results); err != nil {
		return nil, fmt.Errorf("transact: decode reply: %w", err)
	}
	opErrs, err := ovsdb.CheckOperationResults(results, ops)
	if err != nil {
		errs := []error{err}
		for _, e := range opErrs {
			errs = append(errs, e)
		}
		return results, fmt.Errorf("transact: %w", errors.Join(errs...))
	}
	return results, nil
}

// Barrier returns once every update the server sent for transactions
// committed before the call is in the cache. ovsdb-server flushes a
// session's pending monitor updates before it reads that session's next
// request, so the reply to an echo sent after a transaction's reply comes
// after that transaction's update.
func (c *Client) Barrier(ctx context.Context) error {
	conn, err := c.waitConn(ctx)
	if err != nil {
		return err
	}
	if _, err := conn.call(ctx, "echo", []any{"barrier"}, nil); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	return nil
}

func (c *Client) waitConn(ctx context.Context) (*rpcConn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		conn, ch := c.conn, c.connected
		c.mu.Unlock()
		if conn != nil {
			return conn, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrNotConnected, context.Cause(ctx))
		}
	}
}

func (c *Client) run(ctx context.Context) {
	defer close(c.done)
	backoff := c.opts.MinBackoff
	for ctx.Err() == nil {
		err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.log.Warn("ovsdb session ended", "err", err, "retry_in", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.opts.MaxBackoff)
		if err == nil {
			backoff = c.opts.MinBackoff
		}
	}
}

// session dials, monitors, serves the connection until it fails, and
// returns nil if it was connected at some point (so backoff resets).
func (c *Client) session(ctx context.Context) error {
	network, addr, _ := splitEndpoint(c.opts.Endpoint)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	nc, err := dial(dctx, network, addr, c.opts.TLS)
	cancel()
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	conn := newRPCConn(nc, c.opts.ProbeInterval, c.onUpdate)
	go conn.readLoop()
	go conn.probeLoop()

	req := map[string]ovsdb.MonitorRequest{}
	for _, t := range MonitoredTables {
		req[t] = ovsdb.MonitorRequest{}
	}
	mctx, mcancel := context.WithTimeout(ctx, 60*time.Second)
	_, err = conn.call(mctx, "monitor", []any{DatabaseName, "l2span", req}, func(raw json.RawMessage) error {
		// Runs in the reader goroutine, before any later update.
		st := newState()
		if err := applyUpdates(st, raw); err != nil {
			return err
		}
		c.stateMu.Lock()
		c.state = st
		c.stateMu.Unlock()
		return nil
	})
	mcancel()
	if err != nil {
		conn.close(err)
		return fmt.Errorf("monitor: %w", err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		conn.close(ErrClosed)
		return nil
	}
	c.conn = conn
	c.gen++
	close(c.connected)
	c.mu.Unlock()
	c.log.Info("ovsdb connected")
	if c.opts.OnChange != nil {
		c.opts.OnChange(MonitoredTables)
	}

	<-conn.dead
	c.mu.Lock()
	c.conn = nil
	c.connected = make(chan struct{})
	c.mu.Unlock()
	c.log.Warn("ovsdb disconnected", "err", conn.err)
	return nil
}

func (c *Client) onUpdate(params json.RawMessage) error {
	var p [2]json.RawMessage
	if err := json.Unmarshal(params, &p); err != nil {
		return fmt.Errorf("update params: %w", err)
	}
	c.stateMu.Lock()
	var tables []string
	err := applyUpdatesTables(c.state, p[1], &tables)
	c.stateMu.Unlock()
	if err != nil {
		return err
	}
	if c.opts.OnChange != nil && len(tables) > 0 {
		c.opts.OnChange(tables)
	}
	return nil
}

type rowUpdate struct {
	New json.RawMessage `json:"new"`
}

func applyUpdates(st *State, raw json.RawMessage) error {
	return applyUpdatesTables(st, raw, nil)
}

func applyUpdatesTables(st *State, raw json.RawMessage, tables *[]string) error {
	var tu map[string]map[string]rowUpdate
	if err := json.Unmarshal(raw, &tu); err != nil {
		return fmt.Errorf("table updates: %w", err)
	}
	for table, rows := range tu {
		if tables != nil {
			*tables = append(*tables, table)
		}
		for uuid, ru := range rows {
			if err := st.applyRow(table, uuid, ru.New); err != nil {
				return err
			}
		}
	}
	return nil
}

func splitEndpoint(ep string) (network, addr string, err error) {
	kind, rest, ok := strings.Cut(ep, ":")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("ovsdb: endpoint %q: want unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT", ep)
	}
	switch kind {
	case "unix":
		return "unix", rest, nil
	case "tcp", "ssl":
		if _, _, err := net.SplitHostPort(rest); err != nil {
			return "", "", fmt.Errorf("ovsdb: endpoint %q: %w", ep, err)
		}
		return kind, rest, nil
	}
	return "", "", fmt.Errorf("ovsdb: endpoint %q: unknown kind %q", ep, kind)
}

func dial(ctx context.Context, network, addr string, tlsConf *tls.Config) (net.Conn, error) {
	switch network {
	case "ssl":
		d := tls.Dialer{Config: tlsConf}
		return d.DialContext(ctx, "tcp", addr)
	default:
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
}

// rpcConn is one JSON-RPC connection.
type rpcConn struct {
	nc       net.Conn
	probe    time.Duration
	onUpdate func(json.RawMessage) error

	wmu sync.Mutex // serializes writes

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]*pendingCall
	err     error
	dead    chan struct{}
}

type pendingCall struct {
	done   chan struct{}
	result json.RawMessage
	err    error
	inline func(json.RawMessage) error
}

func newRPCConn(nc net.Conn, probe time.Duration, onUpdate func(json.RawMessage) error) *rpcConn {
	return &rpcConn{nc: nc, probe: probe, onUpdate: onUpdate, pending: map[uint64]*pendingCall{}, dead: make(chan struct{})}
}

func (r *rpcConn) close(err error) {
	r.mu.Lock()
	if r.err != nil {
		r.mu.Unlock()
		return
	}
	r.err = err
	pend := r.pending
	r.pending = nil
	r.mu.Unlock()
	r.nc.Close()
	for _, p := range pend {
		p.err = fmt.Errorf("connection lost: %w", err)
		close(p.done)
	}
	close(r.dead)
}

type rpcMsg struct {
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  json.RawMessage `json:"error,omitempty"`
	ID     json.RawMessage `json:"id"`
}

func (r *rpcConn) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if _, err := r.nc.Write(b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// call sends a request and waits for its reply. inline, if set, is run by
// the reader goroutine on the result before any later message is read.
func (r *rpcConn) call(ctx context.Context, method string, params []any, inline func(json.RawMessage) error) (json.RawMessage, error) {
	p := &pendingCall{done: make(chan struct{}), inline: inline}
	r.mu.Lock()
	if r.err != nil {
		err := r.err
		r.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrNotConnected, err)
	}
	r.nextID++
	id := r.nextID
	r.pending[id] = p
	r.mu.Unlock()
	if err := r.write(struct {
		Method string `json:"method"`
		Params []any  `json:"params"`
		ID     uint64 `json:"id"`
	}{method, params, id}); err != nil {
		r.close(err)
		return nil, err
	}
	select {
	case <-p.done:
		return p.result, p.err
	case <-ctx.Done():
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
		return nil, context.Cause(ctx)
	}
}

func (r *rpcConn) readLoop() {
	dec := json.NewDecoder(bufio.NewReaderSize(r.nc, 256<<10))
	for {
		_ = r.nc.SetReadDeadline(time.Now().Add(3 * r.probe))
		var m rpcMsg
		if err := dec.Decode(&m); err != nil {
			r.close(fmt.Errorf("read: %w", err))
			return
		}
		if err := r.handle(&m); err != nil {
			r.close(err)
			return
		}
	}
}

func (r *rpcConn) handle(m *rpcMsg) error {
	switch m.Method {
	case "":
	case "update":
		return r.onUpdate(m.Params)
	case "echo":
		return r.write(struct {
			Result json.RawMessage `json:"result"`
			Error  any             `json:"error"`
			ID     json.RawMessage `json:"id"`
		}{m.Params, nil, m.ID})
	default:
		return nil // other notifications (locked, stolen, ...) are not used
	}
	var id uint64
	if err := json.Unmarshal(m.ID, &id); err != nil {
		return nil // a reply to a probe ("echo" string ids) or unknown
	}
	r.mu.Lock()
	p := r.pending[id]
	delete(r.pending, id)
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	if len(m.Error) > 0 && string(m.Error) != "null" {
		p.err = fmt.Errorf("rpc error: %s", m.Error)
	} else {
		p.result = m.Result
		if p.inline != nil {
			p.err = p.inline(m.Result)
		}
	}
	close(p.done)
	return nil
}

func (r *rpcConn) probeLoop() {
	t := time.NewTicker(r.probe)
	defer t.Stop()
	for {
		select {
		case <-r.dead:
			return
		case <-t.C:
			if err := r.write(map[string]any{"method": "echo", "params": []any{}, "id": "probe"}); err != nil {
				r.close(err)
				return
			}
		}
	}
}
