package ovsdb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/ovn-kubernetes/libovsdb/cache"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/ovn-kubernetes/libovsdb/model"
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
	// OnChange, if set, is called after the cache has taken a change, with
	// the table that changed; after every (re)connect it is called with
	// every monitored table. It runs on libovsdb's event goroutine: it must
	// not block for long nor call back into the client synchronously.
	OnChange func(tables []string)
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 100ms
	// and 5s).
	MinBackoff, MaxBackoff time.Duration
	// ProbeInterval is how often the connection is probed with echo; a
	// probe unanswered within the interval drops it. Default 5s.
	ProbeInterval time.Duration
}

// Client keeps one libovsdb connection to a hardware_vtep server with a
// monitor of MonitoredTables, and replaces it when it fails.
//
// Each connection is a fresh libovsdb client whose cache is filled by its
// own monitor; the client swaps it in only once that snapshot is complete,
// so readers always see either the last connection's full cache (stale
// while the server is away) or the new one, never a half-filled one. That
// is why libovsdb's own reconnect (which purges and refills the cache that
// readers are using) is not used.
type Client struct {
	opts  ClientOptions
	log   *slog.Logger
	model model.ClientDBModel

	mu        sync.Mutex
	conn      *conn         // nil while disconnected
	last      *conn         // the last connection that got its snapshot
	connected chan struct{} // closed while conn != nil
	gen       uint64        // connections made so far
	closed    bool
	lastErr   error // why the last connection attempt failed

	cancel context.CancelFunc
	done   chan struct{}
}

// conn is one libovsdb client with its filled cache.
type conn struct {
	cli   client.Client
	cache *cache.TableCache
}

// Connect starts a client and waits until it is connected with its cache
// filled, or ctx ends. Later disconnections are repaired in the background.
func Connect(ctx context.Context, opts ClientOptions) (*Client, error) {
	if err := checkEndpoint(opts.Endpoint); err != nil {
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
	dbModel, err := FullDatabaseModel()
	if err != nil {
		return nil, fmt.Errorf("ovsdb: database model: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c := &Client{
		opts:      opts,
		log:       log.With("ovsdb", opts.Endpoint),
		model:     dbModel,
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
	c.mu.Unlock()
	c.cancel()
	<-c.done
	return nil
}

// Read runs fn with a snapshot of the cache: each table as it was when
// the snapshot was taken. Updates from this client's own transactions are
// in it once Barrier has returned; a change another writer makes while
// the snapshot is taken may be in some tables and not yet in others. Rows
// are shared with the cache: never modify them.
func (c *Client) Read(fn func(*State)) {
	c.mu.Lock()
	last := c.last
	c.mu.Unlock()
	if last == nil {
		fn(newState())
		return
	}
	fn(snapshot(last.cache))
}

// Connected says whether the client has a live connection now.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn != nil
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
	cn, err := c.waitConn(ctx)
	if err != nil {
		return nil, err
	}
	results, err := cn.cli.Transact(ctx, ops...)
	if err != nil {
		return nil, fmt.Errorf("transact: %w", err)
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
// after that transaction's update; libovsdb applies update notifications
// to its cache on its reader goroutine, in order, before it reads the next
// message (its RPC client runs in blocking mode).
func (c *Client) Barrier(ctx context.Context) error {
	cn, err := c.waitConn(ctx)
	if err != nil {
		return err
	}
	if err := cn.cli.Echo(ctx); err != nil {
		return fmt.Errorf("barrier: %w", err)
	}
	return nil
}

func (c *Client) waitConn(ctx context.Context) (*conn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		cn, ch := c.conn, c.connected
		c.mu.Unlock()
		if cn != nil {
			return cn, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			c.mu.Lock()
			last := c.lastErr
			c.mu.Unlock()
			if last != nil {
				return nil, fmt.Errorf("%w (last attempt: %w): %w", ErrNotConnected, last, context.Cause(ctx))
			}
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
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
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

// session connects, monitors, serves the connection until it fails, and
// returns nil if it was connected at some point (so backoff resets).
func (c *Client) session(ctx context.Context) error {
	logger := logr.FromSlogHandler(atLeastInfo{c.log.Handler()})
	cli, err := client.NewOVSDBClient(c.model,
		client.WithEndpoint(c.opts.Endpoint),
		client.WithTLSConfig(c.opts.TLS),
		client.WithLogger(&logger),
	)
	if err != nil {
		return fmt.Errorf("new client: %w", err)
	}
	defer cli.Close()

	cctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = cli.Connect(cctx)
	if err == nil {
		_, err = cli.Monitor(cctx, cli.NewMonitor(monitoredTables()...))
		if err != nil {
			err = fmt.Errorf("monitor: %w", err)
		}
	}
	cancel()
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	cn := &conn{cli: cli, cache: cli.Cache()}
	if c.opts.OnChange != nil {
		onChange := c.opts.OnChange
		cn.cache.AddEventHandler(&cache.EventHandlerFuncs{
			AddFunc:    func(table string, _ model.Model) { onChange([]string{table}) },
			UpdateFunc: func(table string, _, _ model.Model) { onChange([]string{table}) },
			DeleteFunc: func(table string, _ model.Model) { onChange([]string{table}) },
		})
	}

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.conn, c.last = cn, cn
	c.gen++
	close(c.connected)
	c.mu.Unlock()
	c.log.Info("ovsdb connected")
	if c.opts.OnChange != nil {
		c.opts.OnChange(MonitoredTables)
	}

	err = c.serve(ctx, cli)
	c.mu.Lock()
	c.conn = nil
	c.connected = make(chan struct{})
	c.mu.Unlock()
	if ctx.Err() == nil {
		c.log.Warn("ovsdb disconnected", "err", err)
	}
	return nil
}

// serve returns when the connection is lost (noticed by libovsdb, or by an
// echo probe that fails or goes unanswered) or ctx ends.
func (c *Client) serve(ctx context.Context, cli client.Client) error {
	t := time.NewTicker(c.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-cli.DisconnectNotify():
			return errors.New("connection closed")
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, c.opts.ProbeInterval)
			err := cli.Echo(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("echo probe: %w", err)
			}
		}
	}
}

func monitoredTables() []client.MonitorOption {
	out := make([]client.MonitorOption, 0, len(MonitoredTables))
	for _, m := range []model.Model{
		&Global{}, &PhysicalSwitch{}, &PhysicalPort{}, &LogicalSwitch{},
		&PhysicalLocator{}, &PhysicalLocatorSet{}, &UcastMacsRemote{},
		&UcastMacsLocal{}, &McastMacsRemote{}, &McastMacsLocal{},
	} {
		out = append(out, client.WithTable(m))
	}
	return out
}

func checkEndpoint(ep string) error {
	kind, rest, ok := strings.Cut(ep, ":")
	if !ok || rest == "" {
		return fmt.Errorf("ovsdb: endpoint %q: want unix:PATH, tcp:HOST:PORT or ssl:HOST:PORT", ep)
	}
	switch kind {
	case "unix":
		return nil
	case "tcp", "ssl":
		if _, _, err := net.SplitHostPort(rest); err != nil {
			return fmt.Errorf("ovsdb: endpoint %q: %w", ep, err)
		}
		return nil
	}
	return fmt.Errorf("ovsdb: endpoint %q: unknown kind %q", ep, kind)
}

// atLeastInfo passes on libovsdb's warnings and errors only: its
// verbose levels print every operation of every transaction, which at
// 1,000 rows a batch would drown an agent run at debug level.
type atLeastInfo struct{ slog.Handler }

func (h atLeastInfo) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo && h.Handler.Enabled(ctx, l)
}

func (h atLeastInfo) WithAttrs(attrs []slog.Attr) slog.Handler {
	return atLeastInfo{h.Handler.WithAttrs(attrs)}
}

func (h atLeastInfo) WithGroup(name string) slog.Handler {
	return atLeastInfo{h.Handler.WithGroup(name)}
}
