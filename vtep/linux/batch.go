package linux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/l2span/l2span/internal/nsexec"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// batchSize is how many requests go in one sendmsg. The kernel handles
// every message of a send in turn and queues one ack each; the receive
// buffer is sized so that a whole batch of acks fits.
const batchSize = 256

// batchConn is a raw NETLINK_ROUTE socket for bulk neighbor/FDB writes.
type batchConn struct {
	mu  sync.Mutex
	fd  int
	seq uint32
	buf []byte
	rb  []byte
}

func openBatchConn(ns netns.NsHandle) (*batchConn, error) {
	c := &batchConn{fd: -1, rb: make([]byte, 1<<16)}
	err := nsexec.Run(ns, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
		if err != nil {
			return fmt.Errorf("netlink socket: %w", err)
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		return nil, err
	}
	setup := func() error {
		if err := unix.Bind(c.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("bind netlink socket: %w", err)
		}
		// Room for a batch of acks, even error acks; FORCE needs
		// CAP_NET_ADMIN, which programming FDBs needs anyway.
		const rcvbuf = 4 << 20
		if err := unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
			_ = unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
		}
		// Error acks need not echo the whole request back.
		_ = unix.SetsockoptInt(c.fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
		tv := unix.NsecToTimeval((10 * time.Second).Nanoseconds())
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return fmt.Errorf("set netlink receive timeout: %w", err)
		}
		return nil
	}
	if err := setup(); err != nil {
		unix.Close(c.fd)
		return nil, err
	}
	return c, nil
}

func (c *batchConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// do sends msgs (complete netlink messages; do fills in sequence numbers
// and NLM_F_REQUEST|NLM_F_ACK) batchSize at a time and returns the result
// of each from its ack.
func (c *batchConn) do(msgs [][]byte) []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	errs := make([]error, len(msgs))
	if c.fd < 0 {
		return errAll(len(msgs), errors.New("netlink socket closed"))
	}
	for start := 0; start < len(msgs); start += batchSize {
		end := min(start+batchSize, len(msgs))
		c.buf = c.buf[:0]
		base := c.seq + 1
		for _, m := range msgs[start:end] {
			c.seq++
			binary.NativeEndian.PutUint16(m[6:], binary.NativeEndian.Uint16(m[6:])|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
			binary.NativeEndian.PutUint32(m[8:], c.seq)
			c.buf = append(c.buf, m...)
		}
		if err := unix.Sendto(c.fd, c.buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			for i := start; i < end; i++ {
				errs[i] = fmt.Errorf("netlink send: %w", err)
			}
			continue
		}
		done := make([]bool, end-start)
		pending := end - start
		for pending > 0 {
			n, _, err := unix.Recvfrom(c.fd, c.rb, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				for i, d := range done {
					if !d {
						errs[start+i] = fmt.Errorf("netlink ack: %w", err)
					}
				}
				break
			}
			ms, err := syscall.ParseNetlinkMessage(c.rb[:n])
			if err != nil {
				continue
			}
			for _, m := range ms {
				if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
					continue
				}
				off := m.Header.Seq - base // wraps for stale acks
				if off >= uint32(len(done)) || done[off] {
					continue
				}
				done[off] = true
				pending--
				if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
					errs[start+int(off)] = syscall.Errno(-code)
				}
			}
		}
	}
	return errs
}

// neighMsg encodes an RTM_NEWNEIGH/RTM_DELNEIGH for n (sequence number and
// request/ack flags are filled in by do).
func neighMsg(typ, flags uint16, n *netlink.Neigh) []byte {
	ip := n.IP.To4()
	if ip == nil {
		ip = n.IP.To16()
	}
	size := unix.NLMSG_HDRLEN + unix.SizeofNdMsg
	if len(n.HardwareAddr) > 0 {
		size += rtaAlign(unix.SizeofRtAttr + len(n.HardwareAddr))
	}
	if len(ip) > 0 {
		size += rtaAlign(unix.SizeofRtAttr + len(ip))
	}
	b := make([]byte, size)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(size))
	ne.PutUint16(b[4:], typ)
	ne.PutUint16(b[6:], flags)
	// b[8:12] seq, b[12:16] pid: filled in / left 0.
	m := b[unix.NLMSG_HDRLEN:]
	m[0] = uint8(n.Family)
	ne.PutUint32(m[4:], uint32(int32(n.LinkIndex)))
	ne.PutUint16(m[8:], uint16(n.State))
	m[10] = uint8(n.Flags)
	m[11] = uint8(n.Type)
	off := unix.NLMSG_HDRLEN + unix.SizeofNdMsg
	putAttr := func(t uint16, v []byte) {
		ne.PutUint16(b[off:], uint16(unix.SizeofRtAttr+len(v)))
		ne.PutUint16(b[off+2:], t)
		copy(b[off+unix.SizeofRtAttr:], v)
		off += rtaAlign(unix.SizeofRtAttr + len(v))
	}
	if len(ip) > 0 {
		putAttr(unix.NDA_DST, ip)
	}
	if len(n.HardwareAddr) > 0 {
		putAttr(unix.NDA_LLADDR, n.HardwareAddr)
	}
	return b
}

func rtaAlign(n int) int { return (n + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1) }
