//go:build linux

package netns

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// The rigs have no ping binary to rely on, so ICMP echo is done here over a
// raw socket opened inside the namespace.

type icmpConn struct {
	c   net.PacketConn
	dst netip.Addr
	id  uint16
}

func openICMP(from *NS, dst netip.Addr) (*icmpConn, error) {
	var c net.PacketConn
	err := from.Do(func() error {
		var err error
		if dst.Is4() {
			c, err = net.ListenPacket("ip4:icmp", "0.0.0.0")
		} else {
			c, err = net.ListenPacket("ip6:ipv6-icmp", "::")
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("icmp socket in %s: %w", from.Name(), err)
	}
	var b [2]byte
	_, _ = rand.Read(b[:])
	return &icmpConn{c: c, dst: dst, id: binary.BigEndian.Uint16(b[:])}, nil
}

func (ic *icmpConn) send(seq uint16) error {
	msg := make([]byte, 16)
	if ic.dst.Is4() {
		msg[0] = 8 // echo request
	} else {
		msg[0] = 128 // ICMPv6 echo request; the kernel fills the checksum
	}
	binary.BigEndian.PutUint16(msg[4:], ic.id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	binary.BigEndian.PutUint64(msg[8:], uint64(time.Now().UnixNano()))
	if ic.dst.Is4() {
		binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	}
	_, err := ic.c.WriteTo(msg, &net.IPAddr{IP: ic.dst.AsSlice()})
	return err
}

// recv returns the sequence number of the next echo reply for this id from
// dst, waiting until deadline.
func (ic *icmpConn) recv(deadline time.Time) (uint16, error) {
	buf := make([]byte, 1500)
	if err := ic.c.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	for {
		n, from, err := ic.c.ReadFrom(buf)
		if err != nil {
			return 0, err
		}
		if n < 8 {
			continue
		}
		want := byte(0)
		if ic.dst.Is6() {
			want = 129
		}
		if buf[0] != want || binary.BigEndian.Uint16(buf[4:]) != ic.id {
			continue
		}
		if a, ok := from.(*net.IPAddr); ok {
			if ip, ok := netip.AddrFromSlice(a.IP); !ok || ip.Unmap() != ic.dst {
				continue
			}
		}
		return binary.BigEndian.Uint16(buf[6:]), nil
	}
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// Ping sends ICMP echo requests from the namespace to ip every 100ms until
// one is answered (nil) or ctx ends (error).
func Ping(ctx context.Context, from *NS, ip netip.Addr) error {
	ic, err := openICMP(from, ip)
	if err != nil {
		return err
	}
	defer ic.c.Close()
	for seq := uint16(1); ; seq++ {
		if err := ic.send(seq); err != nil && ctx.Err() != nil {
			return fmt.Errorf("ping %s from %s: %w", ip, from.Name(), err)
		}
		deadline := time.Now().Add(100 * time.Millisecond)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		if _, err := ic.recv(deadline); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("ping %s from %s: no reply: %w", ip, from.Name(), ctx.Err())
		}
	}
}

// PingOnce sends one echo request and waits up to timeout for its reply.
func PingOnce(from *NS, ip netip.Addr, timeout time.Duration) error {
	ic, err := openICMP(from, ip)
	if err != nil {
		return err
	}
	defer ic.c.Close()
	if err := ic.send(1); err != nil {
		return fmt.Errorf("ping %s from %s: %w", ip, from.Name(), err)
	}
	if _, err := ic.recv(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("ping %s from %s: no reply: %w", ip, from.Name(), err)
	}
	return nil
}

// Pinger pings continuously and counts replies, to measure loss across a
// change (a failover, a reprogramming).
type Pinger struct {
	ic       *icmpConn
	interval time.Duration
	stop     chan struct{}
	done     sync.WaitGroup

	mu   sync.Mutex
	sent int
	got  map[uint16]bool
}

// StartPinger pings ip from the namespace every interval until Stop.
func StartPinger(from *NS, ip netip.Addr, interval time.Duration) (*Pinger, error) {
	ic, err := openICMP(from, ip)
	if err != nil {
		return nil, err
	}
	p := &Pinger{ic: ic, interval: interval, stop: make(chan struct{}), got: map[uint16]bool{}}
	p.done.Add(2)
	go p.sendLoop()
	go p.recvLoop()
	return p, nil
}

func (p *Pinger) sendLoop() {
	defer p.done.Done()
	tk := time.NewTicker(p.interval)
	defer tk.Stop()
	for seq := uint16(1); ; seq++ {
		p.mu.Lock()
		p.sent++
		p.mu.Unlock()
		_ = p.ic.send(seq)
		select {
		case <-p.stop:
			return
		case <-tk.C:
		}
	}
}

func (p *Pinger) recvLoop() {
	defer p.done.Done()
	for {
		seq, err := p.ic.recv(time.Now().Add(time.Hour))
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-p.stop:
				return
			default:
				continue
			}
		}
		p.mu.Lock()
		p.got[seq] = true
		p.mu.Unlock()
	}
}

// Stats returns how many echo requests were sent and answered so far.
func (p *Pinger) Stats() (sent, received int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent, len(p.got)
}

// Stop stops sending, waits grace for late replies, and returns the totals;
// lost = sent - received.
func (p *Pinger) Stop(grace time.Duration) (sent, received int) {
	close(p.stop)
	time.Sleep(grace)
	p.ic.c.Close()
	p.done.Wait()
	return p.Stats()
}
