package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/netns"
)

// responder is a minimal DNS server on port 53 of one endpoint netns.
type responder struct {
	index    int // endpoint number, 1-based; sent in the answer's TTL (AnswerTTL)
	conn     net.PacketConn
	wg       sync.WaitGroup
	answered atomic.Uint64
}

// startResponder binds [::]:53 (dual stack; 0.0.0.0:53 on a kernel without
// IPv6) in ns and serves it through Go's poller from any thread.
func startResponder(ns *Netns, index int) (*responder, error) {
	fd, err := bindInNetns(ns, unix.SOCK_DGRAM, 53)
	if err != nil {
		return nil, fmt.Errorf("DNS responder in netns %s: %w", ns.Name, err)
	}
	f := os.NewFile(uintptr(fd), "dns")
	conn, err := net.FilePacketConn(f) // dups the fd
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("DNS responder in netns %s: %w", ns.Name, err)
	}
	r := &responder{index: index, conn: conn}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

// bindInNetns returns a non-blocking socket of type sotype bound to port on
// every address of ns: [::] (dual stack), or 0.0.0.0 on a kernel without
// IPv6. The socket is created on a thread inside ns (ownNetns: the calling
// thread, without switching), which fixes its netns for life; it can then be
// used from any thread.
func bindInNetns(ns *Netns, sotype, port int) (int, error) {
	fd := -1
	run := func(fn func() error) error { return netns.Run(ns.Path, fn) }
	if ns == ownNetns {
		run = func(fn func() error) error { return fn() }
	}
	err := run(func() error {
		s, err := unix.Socket(unix.AF_INET6, sotype|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err == nil {
			if err = unix.SetsockoptInt(s, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err == nil {
				err = unix.Bind(s, &unix.SockaddrInet6{Port: port})
			}
			if err != nil {
				unix.Close(s)
				return fmt.Errorf("bind [::]:%d: %w", port, err)
			}
			fd = s
			return nil
		}
		if !errors.Is(err, unix.EAFNOSUPPORT) {
			return fmt.Errorf("socket: %w", err)
		}
		s, err = unix.Socket(unix.AF_INET, sotype|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		if err := unix.Bind(s, &unix.SockaddrInet4{Port: port}); err != nil {
			unix.Close(s)
			return fmt.Errorf("bind 0.0.0.0:%d: %w", port, err)
		}
		fd = s
		return nil
	})
	return fd, err
}

func (r *responder) serve() {
	defer r.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := r.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. a transient ICMP error reported on the socket
		}
		q, err := dnsmsg.ParseMessage(buf[:n])
		if err != nil || q.Response() {
			continue
		}
		var fromPort uint16
		if a, ok := from.(*net.UDPAddr); ok {
			fromPort = uint16(a.Port)
		}
		resp, err := Answer(&q, AnswerTTL(r.index, fromPort))
		if err != nil {
			continue
		}
		// Count before sending: once the client holds a reply, the count
		// already includes it, so a snapshot taken after a lookup is exact.
		r.answered.Add(1)
		r.conn.WriteTo(resp, from)
	}
}

func (r *responder) Close() {
	r.conn.Close()
	r.wg.Wait()
}
