package lab

// Reverse collisions (race 5): two peers send to each other at the same
// instant, so that both packets reach the node's conntrack as NEW
// (docs/kernel-notes.md, Provoking the races).

import (
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// reverseFirstPort is where the peers' ports start; attempt i uses
// reverseFirstPort+2i on the pod and the next port on dns1, so that every
// attempt is a new pair of flows.
const (
	reverseFirstPort = 20000
	reversePorts     = 20000
)

// peerSocket is one peer's socket of a reverse attempt, bound to its port.
type peerSocket struct {
	fd   int
	port uint16
}

// newPeerSocket must run on a thread in the peer's netns.
func newPeerSocket(proto uint8, local netip.Addr, port uint16) (*peerSocket, error) {
	typ := unix.SOCK_DGRAM
	if proto == 6 {
		typ = unix.SOCK_STREAM | unix.SOCK_NONBLOCK
	}
	fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("peer socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(port), Addr: local.As4()}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind %s:%d: %w", local, port, err)
	}
	return &peerSocket{fd: fd, port: port}, nil
}

// cookie is the socket's SO_COOKIE, 0 if unsupported.
func (p *peerSocket) cookie() uint64 {
	c, _ := unix.GetsockoptUint64(p.fd, unix.SOL_SOCKET, unix.SO_COOKIE)
	return c
}

// send is the peer's first packet to the other: a datagram, or (TCP) the
// SYN of a non-blocking connect.
func (p *peerSocket) send(proto uint8, to netip.AddrPort) error {
	sa := &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()}
	if proto == 6 {
		if err := unix.Connect(p.fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
			return err
		}
		return nil
	}
	return unix.Sendto(p.fd, []byte("ctlab reverse"), 0, sa)
}

// recvPort waits for the other peer's datagram and returns the source port
// it came from.
func (p *peerSocket) recvPort(deadline time.Time) (uint16, bool) {
	buf := make([]byte, 64)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return 0, false
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}, max(int(left.Milliseconds()), 1))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return 0, false
		}
		_, from, err := unix.Recvfrom(p.fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			continue
		}
		if sa, ok := from.(*unix.SockaddrInet4); ok {
			return uint16(sa.Port), true
		}
	}
}

// connected waits until a TCP connect completed (either SYN made it, the
// other answered the simultaneous open).
func (p *peerSocket) connected(deadline time.Time) {
	for time.Now().Before(deadline) {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLOUT}}, max(int(time.Until(deadline).Milliseconds()), 1))
		if err == nil && n > 0 || err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
	}
}

// Close ends a TCP connection with a reset (SO_LINGER 0), leaving no
// TIME_WAIT behind.
func (p *peerSocket) Close() {
	unix.SetsockoptLinger(p.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	unix.Close(p.fd)
}

// reverseLookup is attempt i of a reverse scenario: the pod and dns1 each
// bind a fresh port and send to the other's at the same instant. For UDP
// each peer then waits for the other's datagram: one that never comes was
// dropped at the node (Stats.PeerLost); one from another source port than
// the sender bound had its port moved by the node's NAT (Stats.PortMoved).
func (t *Topology) reverseLookup(st *Stats, i int) error {
	proto := t.Scenario.proto
	fam := t.Scenario.Family
	off := uint16(2 * (i % (reversePorts / 2)))
	peers := [2]struct {
		s    *sender
		addr netip.Addr
		port uint16
		sock *peerSocket
	}{
		{s: t.senders[0], addr: podAddr(fam, 1), port: reverseFirstPort + off},
		{s: t.senders[1], addr: dnsAddr(fam, 1), port: reverseFirstPort + off + 1},
	}
	defer func() {
		for _, p := range peers {
			if p.sock != nil {
				p.sock.Close()
			}
		}
	}()
	for j := range peers {
		p := &peers[j]
		if err := p.s.do(func() (err error) { p.sock, err = newPeerSocket(proto, p.addr, p.port); return }); err != nil {
			return err
		}
		st.Sockets = append(st.Sockets, Socket{Client: p.s.ns.Role, Cookie: p.sock.cookie(), Port: p.port})
	}
	var arrived atomic.Int32
	start := make(chan struct{})
	sent := make(chan struct{}, 2)
	spinUntil := time.Now().Add(2 * time.Second)
	for j := range peers {
		me, other := &peers[j], &peers[1-j]
		if err := me.s.post(func() {
			defer func() { sent <- struct{}{} }()
			<-start
			spinBarrier(&arrived, 2, spinUntil)
			me.sock.send(proto, netip.AddrPortFrom(other.addr, other.port))
		}); err != nil {
			close(start)
			return err
		}
	}
	close(start)
	wait := time.NewTimer(jobTimeout)
	defer wait.Stop()
	for range 2 {
		select {
		case <-sent:
		case <-wait.C:
			return errors.New("peer threads did not send within 5s")
		}
	}
	deadline := time.Now().Add(t.Options.Timeout)
	for j := range peers {
		me, other := &peers[j], &peers[1-j]
		if proto == 6 {
			me.sock.connected(deadline)
			continue
		}
		port, ok := me.sock.recvPort(deadline)
		switch {
		case !ok:
			st.PeerLost++
		case port != other.port:
			st.PortMoved++
		}
	}
	return nil
}
