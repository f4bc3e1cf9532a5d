package pgtest

// A minimal PostgreSQL frontend (protocol 3.0, simple query, trust auth only)
// used for readiness checks and CREATE/DROP DATABASE. It keeps this package
// free of third-party dependencies, so it builds no matter what go.sum holds.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// pgError is an ErrorResponse sent by the server.
type pgError struct {
	Severity string
	Code     string // SQLSTATE
	Message  string
}

func (e *pgError) Error() string {
	return fmt.Sprintf("postgres: %s: %s (SQLSTATE %s)", e.Severity, e.Message, e.Code)
}

type wireConn struct {
	c net.Conn
	r *bufio.Reader
}

// wireConnect opens a session as user on database db at addr (host:port).
func wireConnect(ctx context.Context, addr, user, db string) (*wireConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	wc := &wireConn{c: c, r: bufio.NewReader(c)}
	stop := wc.watch(ctx)
	defer stop()

	// StartupMessage: length, protocol 3.0, key/value pairs, terminator.
	body := binary.BigEndian.AppendUint32(nil, 196608)
	for _, kv := range [][2]string{{"user", user}, {"database", db}, {"application_name", "pgtest"}} {
		body = append(body, kv[0]...)
		body = append(body, 0)
		body = append(body, kv[1]...)
		body = append(body, 0)
	}
	body = append(body, 0)
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))
	if _, err := c.Write(append(msg, body...)); err != nil {
		c.Close()
		return nil, err
	}
	for {
		typ, payload, err := wc.read()
		if err != nil {
			c.Close()
			return nil, ctxErr(ctx, err)
		}
		switch typ {
		case 'R':
			if len(payload) < 4 {
				c.Close()
				return nil, errors.New("postgres: short authentication message")
			}
			if code := binary.BigEndian.Uint32(payload); code != 0 {
				c.Close()
				return nil, fmt.Errorf("postgres: server asks for authentication method %d; pgtest supports trust only", code)
			}
		case 'E':
			c.Close()
			return nil, parseError(payload)
		case 'Z':
			return wc, nil
		default: // ParameterStatus, BackendKeyData, NoticeResponse, ...
		}
	}
}

// watch makes blocking I/O return when ctx ends; call the result to stop.
func (wc *wireConn) watch(ctx context.Context) func() {
	if dl, ok := ctx.Deadline(); ok {
		_ = wc.c.SetDeadline(dl)
	} else {
		_ = wc.c.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = wc.c.SetDeadline(time.Unix(1, 0)) })
	return func() { stop() }
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

func (wc *wireConn) read() (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(wc.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n < 4 || n > 1<<30 {
		return 0, nil, fmt.Errorf("postgres: bad message length %d", n)
	}
	payload := make([]byte, n-4)
	if _, err := io.ReadFull(wc.r, payload); err != nil {
		return 0, nil, err
	}
	return hdr[0], payload, nil
}

// query runs sql with the simple query protocol and returns the rows of the
// last result set as text (NULL becomes ""). Several statements separated by
// ';' run in one implicit transaction unless they say otherwise.
func (wc *wireConn) query(ctx context.Context, sql string) ([][]string, error) {
	stop := wc.watch(ctx)
	defer stop()
	msg := append([]byte{'Q'}, binary.BigEndian.AppendUint32(nil, uint32(len(sql)+5))...)
	msg = append(msg, sql...)
	msg = append(msg, 0)
	if _, err := wc.c.Write(msg); err != nil {
		return nil, ctxErr(ctx, err)
	}
	var rows [][]string
	var qerr error
	for {
		typ, p, err := wc.read()
		if err != nil {
			return nil, ctxErr(ctx, err)
		}
		switch typ {
		case 'T':
			rows = nil // a new result set starts
		case 'D':
			row, err := parseDataRow(p)
			if err != nil {
				return nil, err
			}
			rows = append(rows, row)
		case 'E':
			if qerr == nil {
				qerr = parseError(p)
			}
		case 'Z':
			return rows, qerr
		default: // CommandComplete, EmptyQueryResponse, NoticeResponse, ...
		}
	}
}

func (wc *wireConn) close() error {
	_ = wc.c.SetDeadline(time.Now().Add(time.Second))
	_, _ = wc.c.Write([]byte{'X', 0, 0, 0, 4})
	return wc.c.Close()
}

func parseDataRow(p []byte) ([]string, error) {
	if len(p) < 2 {
		return nil, errors.New("postgres: short DataRow")
	}
	n := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	row := make([]string, n)
	for i := range n {
		if len(p) < 4 {
			return nil, errors.New("postgres: short DataRow")
		}
		l := int32(binary.BigEndian.Uint32(p))
		p = p[4:]
		if l < 0 {
			continue
		}
		if int(l) > len(p) {
			return nil, errors.New("postgres: short DataRow")
		}
		row[i] = string(p[:l])
		p = p[l:]
	}
	return row, nil
}

func parseError(p []byte) error {
	e := &pgError{}
	for len(p) > 0 && p[0] != 0 {
		code := p[0]
		end := strings.IndexByte(string(p[1:]), 0)
		if end < 0 {
			break
		}
		val := string(p[1 : 1+end])
		p = p[2+end:]
		switch code {
		case 'V':
			e.Severity = val
		case 'S':
			if e.Severity == "" {
				e.Severity = val
			}
		case 'C':
			e.Code = val
		case 'M':
			e.Message = val
		}
	}
	return e
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
