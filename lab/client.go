package lab

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/netns"
)

// sender is an OS thread that lives in a client netns. Two of them send the
// A and AAAA queries of a lookup on one socket at the same instant, which is
// what glibc and musl do (they send both queries back to back from one
// socket; in a multi-threaded resolver or on two CPUs the packets are in the
// kernel at once) and what gives conntrack two unconfirmed entries for one
// tuple.
type sender struct {
	ns     *Netns
	tid    int
	jobs   chan func()
	exited chan struct{}
}

// jobTimeout bounds how long the lab waits for a sender thread to take or
// finish a job: it never waits on a thread forever, and it is long, since
// an emulated guest on a loaded host was seen to take over 5 s.
const jobTimeout = 30 * time.Second

// startSender starts a client thread in ns. With cpu >= 0 the thread is
// pinned to that CPU, or not started: the two racing senders go to different
// CPUs, because when another process keeps one CPU busy the scheduler would
// otherwise put both on the idle one, where they can never be in the kernel
// at once; a bench's flood is pinned away from a tracer's reader. A comm
// other than "" names the thread while it sends.
func startSender(ns *Netns, cpu int, comm string) (*sender, error) {
	s := &sender{ns: ns, jobs: make(chan func()), exited: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		defer close(s.exited)
		th, err := netns.LockThread()
		if err != nil {
			ready <- err
			return
		}
		if ns != ownNetns {
			if err := th.Enter(ns.Path); err != nil {
				ready <- errors.Join(err, th.Release())
				return
			}
		}
		s.tid = unix.Gettid()
		var origCPUs unix.CPUSet
		pinned := cpu >= 0
		if pinned {
			var set unix.CPUSet
			set.Set(cpu)
			err := unix.SchedGetaffinity(0, &origCPUs)
			if err == nil {
				err = unix.SchedSetaffinity(0, &set)
			}
			if err != nil {
				ready <- errors.Join(fmt.Errorf("pin to CPU %d: %w", cpu, err), th.Release())
				return
			}
		}
		var origName [16]byte
		if comm != "" {
			err := unix.Prctl(unix.PR_GET_NAME, uintptr(unsafe.Pointer(&origName[0])), 0, 0, 0)
			if err == nil {
				err = setThreadName(comm)
			}
			if err != nil {
				// The thread stays locked and ends with this goroutine.
				ready <- fmt.Errorf("name the thread %q: %w", comm, err)
				return
			}
		}
		ready <- nil
		for job := range s.jobs {
			runJob(job)
		}
		// Go back (name, CPUs, netns) before unlocking; if that fails the
		// thread stays locked and ends with this goroutine.
		if comm != "" && setThreadName(string(bytes.TrimRight(origName[:], "\x00"))) != nil {
			return
		}
		if pinned && unix.SchedSetaffinity(0, &origCPUs) != nil {
			return
		}
		th.Release()
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("client thread in netns %s: %w", ns.Name, err)
	}
	return s, nil
}

// setThreadName sets the calling thread's comm; the kernel keeps its first
// 15 bytes.
func setThreadName(name string) error {
	b := append([]byte(name), 0)
	return unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&b[0])), 0, 0, 0)
}

// runJob runs a job on the sender thread. A panic in a job would end the
// process with namespaces left behind: it is logged and swallowed instead,
// and the caller's wait for the job's result times out into an error.
func runJob(job func()) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "lab: client thread: internal error: %v\n", r)
		}
	}()
	job()
}

// post hands a job to the thread without waiting for it to finish.
func (s *sender) post(job func()) error {
	t := time.NewTimer(jobTimeout)
	defer t.Stop()
	select {
	case s.jobs <- job:
		return nil
	case <-t.C:
		return fmt.Errorf("client thread %d in netns %s is stuck", s.tid, s.ns.Name)
	}
}

// do runs job on the thread and waits for its result.
func (s *sender) do(job func() error) error {
	res := make(chan error, 1)
	if err := s.post(func() { res <- job() }); err != nil {
		return err
	}
	t := time.NewTimer(jobTimeout)
	defer t.Stop()
	select {
	case err := <-res:
		return err
	case <-t.C:
		return fmt.Errorf("client thread %d in netns %s did not finish a job in %v", s.tid, s.ns.Name, jobTimeout)
	}
}

func (s *sender) stop() {
	close(s.jobs)
	t := time.NewTimer(jobTimeout)
	defer t.Stop()
	select {
	case <-s.exited:
	case <-t.C:
	}
}

// racingCPUs picks two different CPUs this process may run on, or -1, -1
// when it has fewer than two.
func racingCPUs() (int, int) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return -1, -1
	}
	var cpus []int
	for c := 0; c < len(set)*64 && len(cpus) < 2; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	if len(cpus) < 2 {
		return -1, -1
	}
	return cpus[0], cpus[1]
}

// clientSocket is one UDP socket of a lookup.
type clientSocket struct {
	fd     int
	cookie uint64
	port   uint16
}

// newClientSocket must run on a thread in the client netns (a socket belongs
// to the netns it is created in). Like glibc's res_send, it connect()s the
// UDP socket to the server, which picks the source port: a new socket per
// lookup is a new conntrack flow per lookup.
func newClientSocket(server netip.AddrPort) (*clientSocket, error) {
	var (
		family int
		sa     unix.Sockaddr
	)
	if a := server.Addr(); a.Is4() {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: int(server.Port()), Addr: a.As4()}
	} else {
		family, sa = unix.AF_INET6, &unix.SockaddrInet6{Port: int(server.Port()), Addr: a.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("client socket: %w", err)
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connect %s: %w", server, err)
	}
	cs := &clientSocket{fd: fd}
	// SO_COOKIE is what a tracer sees as the socket's cookie
	// (bpf_get_socket_cookie); 4.12+.
	if c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE); err == nil {
		cs.cookie = c
	}
	if local, err := unix.Getsockname(fd); err == nil {
		switch a := local.(type) {
		case *unix.SockaddrInet4:
			cs.port = uint16(a.Port)
		case *unix.SockaddrInet6:
			cs.port = uint16(a.Port)
		}
	}
	return cs, nil
}

func (c *clientSocket) Close() { unix.Close(c.fd) }

// spinBarrier releases n threads at once: each announces itself and spins
// until all have arrived, so the two sends leave within a few hundred
// nanoseconds of each other. A deadline keeps a descheduled partner from
// holding the other forever; it then sends late rather than never.
func spinBarrier(arrived *atomic.Int32, n int32, deadline time.Time) {
	arrived.Add(1)
	for i := 0; arrived.Load() < n; i++ {
		if i&1023 == 1023 && time.Now().After(deadline) {
			return
		}
	}
}

// reply is what one answer told.
type reply struct {
	endpoint uint32 // the responding endpoint's number
	fromPort uint16 // the source port that endpoint saw the query come from
}

// awaitReplies reads DNS responses on fd until every id in want is answered
// or the deadline passes. want maps query id to query type; answered ones
// are removed from it and returned.
func awaitReplies(fd int, want map[uint16]uint16, deadline time.Time) map[uint16]reply {
	got := make(map[uint16]reply, len(want))
	buf := make([]byte, 1500)
	for len(want) > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		ms := int(left.Milliseconds())
		if ms == 0 {
			ms = 1
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			break
		}
		nr, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			// ECONNREFUSED from an ICMP error, EAGAIN: keep waiting.
			continue
		}
		m, err := dnsmsg.ParseMessage(buf[:nr])
		if err != nil || !m.Response() || len(m.Questions) != 1 {
			continue
		}
		qtype, ok := want[m.ID]
		if !ok || m.Questions[0].Type != qtype {
			continue
		}
		r := reply{}
		for _, a := range m.Answers {
			if a.Type == qtype {
				r.endpoint, r.fromPort = answerTTLParts(a.TTL)
			}
		}
		got[m.ID] = r
		delete(want, m.ID)
	}
	return got
}
