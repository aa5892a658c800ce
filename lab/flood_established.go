package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
)

// An established flood measures what a busy node's traffic mostly is:
// packets of flows that conntrack already knows. Each sender thread opens
// one flow before the flood starts and sends every packet on it; only the
// flow's first packet went through NAT and __nf_conntrack_confirm, and each
// packet after it finds its entry in nf_conntrack_in's lookup.
//
//   - UDP: a socket connect()ed to the target, like a resolver that keeps
//     one. Its first datagram is a query, and the flow is open once the
//     answer has come back: a reply makes the entry established (ctinfo
//     IP_CT_ESTABLISHED for the packets after it; an unanswered flow's
//     packets stay IP_CT_NEW however many there are). The flood's datagrams
//     are DNS responses, which the responders ignore.
//   - TCP: a connection to the target's port 53 (the service's dns-tcp port)
//     with TCP_NODELAY, whose every write is one DNS message in TCP framing;
//     a sink in each endpoint netns reads and discards them. Its packets
//     are the data segments the kernel sent (tcpi_data_segs_out), which
//     conntrack sees, not the writes: while a segment waits for the
//     device, the writes behind it queue and leave together.
//
// An entry that expires (no packet for the UDP timeout: the kernel's 30 s
// unreplied, 120 s once assured, which a bench's pauses stay far below)
// would be replaced by a new, unreplied one at the next packet: the flood
// checks at its end that every flow's entry in the node still has its
// reply (FloodStats.EntriesReplied).

// Established workloads (FloodOptions.Established).
const (
	EstablishedUDP = "udp"
	EstablishedTCP = "tcp"
)

// flowSendTimeout bounds a TCP connect and a blocked write: a sink that
// stopped reading fails the flow instead of hanging the flood.
const flowSendTimeout = 2 * time.Second

// flowConn is one sender thread's established flow.
type flowConn struct {
	fd      int
	local   netip.AddrPort // the flow's source, as the node's conntrack keys it
	payload []byte         // what every packet carries
	tcp     bool
	// segments is the last reading of the connection's data segments.
	segments atomic.Uint64
}

// establishedFlows are the flows of one established flood.
type establishedFlows struct {
	t     *Topology
	conns []*flowConn
	sinks []*tcpSink
}

// openFlows opens one flow of proto (EstablishedUDP or EstablishedTCP) on
// each thread, from the thread's netns to the target.
func (t *Topology) openFlows(ctx context.Context, threads []*sender, proto string) (*establishedFlows, error) {
	payload, err := floodPayload(t.Options.Name)
	if err != nil {
		return nil, err
	}
	e := &establishedFlows{t: t}
	if proto == EstablishedTCP {
		// DNS over TCP: a two-byte length before the message (RFC 1035,
		// 4.2.2).
		payload = append(binary.BigEndian.AppendUint16(nil, uint16(len(payload))), payload...)
		for i := 1; i <= t.endpoints; i++ {
			sink, err := startTCPSink(t.byRole[fmt.Sprintf("dns%d", i)], int(t.Target.Port()))
			if err != nil {
				e.close()
				return nil, err
			}
			e.sinks = append(e.sinks, sink)
		}
	}
	for _, s := range threads {
		var c *flowConn
		err := s.do(func() (err error) {
			if proto == EstablishedTCP {
				c, err = dialTCP(t.Target)
			} else {
				c, err = t.openUDPFlow(ctx, t.Target)
			}
			return err
		})
		if err != nil {
			e.close()
			return nil, fmt.Errorf("opening a %s flow from netns %s to %s: %w", proto, s.ns.Name, t.Target, err)
		}
		c.payload = payload
		e.conns = append(e.conns, c)
	}
	return e, nil
}

// openUDPFlow connects a UDP socket to target and has a query answered on it
// (a few tries of 500 ms). It runs on a thread in the client netns.
func (t *Topology) openUDPFlow(ctx context.Context, target netip.AddrPort) (*flowConn, error) {
	cs, err := newClientSocket(target)
	if err != nil {
		return nil, err
	}
	for try := 0; try < 4 && ctx.Err() == nil; try++ {
		id := randID()
		q, err := dnsmsg.BuildQuery(id, t.Options.Name, dnsmsg.TypeA)
		if err != nil {
			cs.Close()
			return nil, err
		}
		if _, err := writeFd(cs.fd, q); err != nil {
			continue // e.g. ENETUNREACH while routes settle: retry
		}
		if len(awaitReplies(cs.fd, map[uint16]uint16{id: dnsmsg.TypeA}, time.Now().Add(500*time.Millisecond))) == 1 {
			local, err := localAddrPort(cs.fd)
			if err != nil {
				cs.Close()
				return nil, err
			}
			return &flowConn{fd: cs.fd, local: local}, nil
		}
	}
	cs.Close()
	return nil, errors.Join(ctx.Err(), errors.New("no answer to the query that opens it"))
}

// dialTCP connects a TCP socket to target, with TCP_NODELAY so that each
// write leaves as a segment of its own, and a send timeout. It runs on a
// thread in the client netns.
func dialTCP(target netip.AddrPort) (*flowConn, error) {
	family, sa := unix.AF_INET, unix.Sockaddr(&unix.SockaddrInet4{Port: int(target.Port()), Addr: target.Addr().As4()})
	if target.Addr().Is6() {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(target.Port()), Addr: target.Addr().As16()}
	}
	// Non-blocking while connecting, so that the wait is bounded and not
	// cut short by a signal; blocking afterwards, so that a write waits for
	// room in the send buffer.
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	c := &flowConn{fd: fd, tcp: true}
	tv := unix.NsecToTimeval(flowSendTimeout.Nanoseconds())
	if err = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err == nil {
		err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	}
	if err == nil {
		if err = unix.Connect(fd, sa); errors.Is(err, unix.EINPROGRESS) {
			err = awaitConnect(fd, time.Now().Add(flowSendTimeout))
		}
	}
	if err == nil {
		err = unix.SetNonblock(fd, false)
	}
	if err == nil {
		c.local, err = localAddrPort(fd)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return c, nil
}

// awaitConnect waits until a non-blocking connect on fd is done, and returns
// its result.
func awaitConnect(fd int, deadline time.Time) error {
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("connect: no answer in %v", flowSendTimeout)
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) || err == nil && n == 0 {
			continue
		}
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		if soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soErr != 0 {
			return fmt.Errorf("connect: %w", errors.Join(err, unix.Errno(soErr)))
		}
		return nil
	}
}

// localAddrPort is the address and port a socket is bound to.
func localAddrPort(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockname: %w", err)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("getsockname: unexpected address %T", sa)
}

// sendOn sends one packet on an established flow. A UDP send that fails is
// one failed packet; a TCP connection that fails is lost, and so is its
// thread's flow.
func (f *floodState) sendOn(c *flowConn) flowResult {
	if _, err := writeFd(c.fd, c.payload); err != nil {
		f.fail(fmt.Errorf("send on the flow from %s: %w", c.local, err))
		if c.tcp {
			return flowBroken
		}
		return flowFailed
	}
	return flowSent
}

// dataSegments is the number of data segments the TCP flows have sent
// (tcpi_data_segs_out, 4.6+). Any thread may call it: TCP_INFO reads the
// socket under its lock.
func (e *establishedFlows) dataSegments() (n uint64) {
	for _, c := range e.conns {
		// A failed read (the socket is gone) keeps the last one.
		if info, err := unix.GetsockoptTCPInfo(c.fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			c.segments.Store(uint64(info.Data_segs_out))
		}
		n += c.segments.Load()
	}
	return n
}

// check fills in st's per-thread packets and writes for TCP, and
// EntriesReplied, and fails unless every flow's entry in the node still has
// its reply.
func (e *establishedFlows) check(st *FloodStats) error {
	proto := uint8(unix.IPPROTO_UDP)
	if len(e.conns) > 0 && e.conns[0].tcp {
		proto = unix.IPPROTO_TCP
		for i, c := range e.conns {
			st.TCPWrites += st.PerThread[i]
			st.PerThread[i] = c.segments.Load()
		}
	}
	node := e.t.byRole["node"]
	ct, err := newCtnetlink(node)
	if err != nil {
		return err
	}
	defer ct.Close()
	var lost []string
	for _, c := range e.conns {
		status, err := ct.Status(proto, c.local, e.t.Target)
		switch {
		case errors.Is(err, errNoEntry):
			lost = append(lost, c.local.String()+" (no entry)")
		case err != nil:
			return err
		case status&ipsSeenReply == 0:
			lost = append(lost, c.local.String()+" (unreplied)")
		default:
			st.EntriesReplied++
		}
	}
	if len(lost) > 0 {
		return fmt.Errorf("%d of %d established flows lost their conntrack entry in netns %s: %v (an entry expired in a pause longer than the UDP timeout, and the next packet made a new one)",
			len(lost), len(e.conns), node.Name, lost)
	}
	return nil
}

// close closes the flows and stops the sinks.
func (e *establishedFlows) close() {
	for _, c := range e.conns {
		unix.Close(c.fd)
	}
	for _, s := range e.sinks {
		s.Close()
	}
}

// tcpSink accepts TCP connections on a port of an endpoint netns and reads
// and discards what they carry: the far end of an established TCP flood.
type tcpSink struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func startTCPSink(ns *Netns, port int) (*tcpSink, error) {
	fd, err := bindInNetns(ns, unix.SOCK_STREAM, port)
	if err == nil {
		if err = unix.Listen(fd, 128); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("TCP sink in netns %s: %w", ns.Name, err)
	}
	f := os.NewFile(uintptr(fd), "sink")
	ln, err := net.FileListener(f) // dups the fd
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("TCP sink in netns %s: %w", ns.Name, err)
	}
	s := &tcpSink{ln: ln}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

func (s *tcpSink) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.mu.Lock()
		if s.closed { // accepted as Close began
			s.mu.Unlock()
			conn.Close()
			continue
		}
		s.conns = append(s.conns, conn)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			io.Copy(io.Discard, conn) // until the flow or the sink closes it
		}()
	}
}

// Close stops accepting, closes every connection and waits for the readers.
func (s *tcpSink) Close() {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
