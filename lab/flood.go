package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
)

// A flood creates new UDP flows through a topology as fast as it can: each
// flow is a new socket bound to the next source port, one datagram to the
// target, and close. Nothing waits for a reply (the datagram is a DNS message
// with the response bit set, which the lab's responders ignore), so every
// flow costs the kernel one conntrack entry in each netns with rules: a NEW
// packet through nf_conntrack_in, NAT and __nf_conntrack_confirm, which is
// what a conntrack tracer adds cost to.
//
// Each sender thread has its own share of the source ports, FloodFirstPort
// and up (thread i of n: every n-th port from FloodFirstPort+i), and takes
// them in sequence, so no two flows of a flood share a tuple. By default a
// thread stops once its share is used (FloodStats.PortsExhausted), which also
// keeps a flood below the default nf_conntrack_max (65536 on a machine with
// more than 1 GiB). Every Flood starts again at FloodFirstPort, and
// unreplied UDP entries live 30 s, so a second flood on the same topology
// soon after the first repeats its tuples (ctlab flood sets up a new
// topology each time).
//
// On a topology with Options.UDPTimeout the ports wrap instead, and a flood
// can last as long as asked: a port is used again no sooner than the UDP
// timeout plus reuseMargin after its previous flow was sent. That flow's
// entry expired by then, and a lookup that finds an expired entry removes it
// and goes on as if there were none, so the reused tuple is a NEW flow again
// (NAT, confirm), the same work as the first time. The short timeout also
// keeps the table at about rate x timeout entries, far below its limit.
// With a 2 s timeout a flood waits for its ports only above about 21000
// flows/s (all ports in 3 s).
//
// An established flood (FloodOptions.Established) sends instead every packet
// on a flow that exists already: each thread keeps one UDP or TCP socket
// (see flood_established.go). Floods count packets: a new-flow flood's are
// its flows, a TCP flood's the data segments the kernel sent for its
// writes.

// FloodFirstPort is the first source port a flood uses; FloodPorts is how
// many there are (FloodFirstPort .. 65535).
const (
	FloodFirstPort = 1024
	FloodPorts     = 65536 - FloodFirstPort
)

// MaxFloodThreads bounds FloodOptions.Threads.
const MaxFloodThreads = 64

// reuseMargin is added to the UDP timeout before a source port is used
// again. The previous flow's entry is confirmed in the softirq that the
// datagram raises, normally before sendto returns (when the thread records
// its time); the margin covers a softirq deferred to ksoftirqd and the
// timeout's rounding to jiffies.
const reuseMargin = time.Second

// FloodOptions tune Flood.
type FloodOptions struct {
	// Duration is how long to send; required.
	Duration time.Duration
	// Threads is the number of sender threads in the client netns
	// (default 1). Unless Pin is set they are not pinned: the scheduler
	// spreads them.
	Threads int
	// Pin pins every sender thread to CPU (and only them: the responders
	// and the rest of the process keep the process's CPUs). A bench pins
	// the senders away from a tracer's reader, so that the flood's rate
	// shows the kernel's per-packet cost on the sending CPU alone.
	Pin bool
	CPU int
	// Rate caps the packets (TCP: writes) per second of all threads
	// together (0: as fast as possible).
	Rate float64
	// Established, if set, sends on established flows instead of new ones:
	// EstablishedUDP or EstablishedTCP, one flow per thread. The
	// topology's UDP timeout must then be the kernel's (Options.UDPTimeout
	// 0), so that a flow outlives the pauses of a bench.
	Established string
	// Marks, if set, cuts the flood into segments (FloodStats.Segments):
	// every line read starts a new segment labelled with the line, and the
	// end of Marks (or a read error) ends the flood before Duration. A line
	// that starts with "!" starts a paused segment, labelled with the rest
	// of the line: the senders send nothing until the next line. (Under
	// QEMU TCG, attaching probes to functions that another vCPU runs can
	// crash the guest: a bench attaches its tracer in a pause.) Flood does
	// not close Marks, and returns without waiting for a Read still
	// blocked when the flood ends: the caller closes it.
	Marks io.Reader
}

// FloodStats is the result of a flood.
type FloodStats struct {
	Setting
	Client string `json:"client"` // the senders' netns role

	Threads   int     `json:"threads"`
	RateLimit float64 `json:"rate_limit"` // packets/s asked for; 0: unlimited
	// Established is FloodOptions.Established: "" for new flows.
	Established string `json:"established,omitempty"`
	// Packets is the number of datagrams sent, or with EstablishedTCP the
	// data segments that carried the writes (tcpi_data_segs_out): a
	// segment can carry several writes that the kernel queued while it
	// waited to send (TCP_NODELAY does not prevent that). Flows is the
	// number of flows they made: as many as Packets for new flows (each
	// from its own socket and source port), one per thread for established
	// ones (opened before the flood's start).
	Packets   uint64   `json:"packets"`
	Flows     uint64   `json:"flows"`
	PerThread []uint64 `json:"packets_per_thread"`
	// TCPWrites, with EstablishedTCP: the writes, each one DNS message.
	TCPWrites uint64 `json:"tcp_writes,omitempty"`
	// EntriesReplied, with Established: the flows whose conntrack entry in
	// the node still had its reply at the end, which is every flow unless
	// an entry expired and a later packet made a new, unreplied one.
	EntriesReplied int `json:"entries_replied,omitempty"`
	// Errors counts packets that failed (socket, bind or send); PortsInUse
	// counts source ports skipped because something else held them.
	Errors     uint64 `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	PortsInUse uint64 `json:"ports_in_use"`
	// PortsExhausted: a thread stopped before Duration because every
	// source port of its share had been used once.
	PortsExhausted bool `json:"ports_exhausted"`
	// PortsWrap: source ports wrap (the topology has Options.UDPTimeout),
	// each reused once its previous flow's entry has expired.
	PortsWrap bool          `json:"ports_wrap"`
	Duration  time.Duration `json:"duration_ns"`
	Rate      float64       `json:"packets_per_second"`

	Pid  int   `json:"pid"`
	TIDs []int `json:"tids"`

	// Segments, with FloodOptions.Marks: the flood cut at every mark, the
	// first one (label "") from the start to the first mark. Their packets
	// add up to Packets.
	Segments []Segment `json:"segments,omitempty"`

	// The conntrack counters of every netns over the flood: in the netns
	// that NATs, entries should grow by about Flows of a new-flow flood
	// (unreplied UDP entries live 30 s, unless Options.UDPTimeout) and not
	// at all in an established one, and drop / early_drop stay 0 unless
	// the table filled up.
	Netns []NetnsStats `json:"netns"`
}

// floodPayload is a DNS message with the response bit set: it looks like
// DNS to a tracer, and the lab's responders drop it without answering.
func floodPayload(name string) ([]byte, error) {
	b, err := dnsmsg.BuildQuery(0, name, dnsmsg.TypeA)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint16(b[2:], binary.BigEndian.Uint16(b[2:])|dnsmsg.FlagQR)
	return b, nil
}

func (o *FloodOptions) validate() error {
	if o.Duration <= 0 {
		return fmt.Errorf("flood duration %v: must be positive", o.Duration)
	}
	if o.Threads == 0 {
		o.Threads = 1
	}
	if o.Threads < 0 || o.Threads > MaxFloodThreads {
		return fmt.Errorf("flood threads %d: use 1 to %d", o.Threads, MaxFloodThreads)
	}
	if o.Rate < 0 {
		return fmt.Errorf("flood rate %v: must not be negative", o.Rate)
	}
	if o.Pin && o.CPU < 0 {
		return fmt.Errorf("flood CPU %d: must not be negative", o.CPU)
	}
	if o.Established != "" && o.Established != EstablishedUDP && o.Established != EstablishedTCP {
		return fmt.Errorf("established flows %q: use %s or %s", o.Established, EstablishedUDP, EstablishedTCP)
	}
	return nil
}

// floodState is shared by the threads of one flood.
type floodState struct {
	family  int
	target  netip.AddrPort
	payload []byte
	// sent counts the packets of all threads; a segmenter reads it at its
	// boundaries, and holds the threads in pause while a segment is paused.
	sent      atomic.Uint64
	pause     pauser
	errs      atomic.Uint64 // packets that failed
	inUse     atomic.Uint64
	exhausted atomic.Bool

	errOnce  sync.Once
	firstErr error
}

func (f *floodState) fail(err error) {
	f.errOnce.Do(func() { f.firstErr = err })
}

// sockaddr is the target for one thread: unix.Sockaddr values are written
// to when used, so threads must not share one.
func (f *floodState) sockaddr() unix.Sockaddr {
	if f.family == unix.AF_INET {
		return &unix.SockaddrInet4{Port: int(f.target.Port()), Addr: f.target.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(f.target.Port()), Addr: f.target.Addr().As16()}
}

// portShare is one sender thread's share of the source ports:
// FloodFirstPort+first, then every step-th port. Only its thread uses it.
type portShare struct {
	first, step, size int
	next              int // index of the next port, counting every lap
	// hold is 0 when each port is used once; otherwise ports wrap and
	// last[i] is when port i's previous flow was sent.
	hold time.Duration
	last []time.Time
}

func newPortShare(thread, threads int, hold time.Duration) *portShare {
	p := &portShare{first: thread, step: threads, size: (FloodPorts - thread + threads - 1) / threads, hold: hold}
	if hold > 0 {
		p.last = make([]time.Time, p.size)
	}
	return p
}

// take returns the next port's index in the share and when it may be used
// (zero: at once); ok is false once every port was used and ports do not
// wrap.
func (p *portShare) take() (i int, ready time.Time, ok bool) {
	if p.hold == 0 && p.next >= p.size {
		return 0, time.Time{}, false
	}
	i = p.next % p.size
	p.next++
	if p.hold > 0 && !p.last[i].IsZero() {
		ready = p.last[i].Add(p.hold)
	}
	return i, ready, true
}

func (p *portShare) port(i int) int { return FloodFirstPort + p.first + i*p.step }

// sent records that port i's flow has gone (only ports that wrap need it).
func (p *portShare) sent(i int) {
	if p.hold > 0 {
		p.last[i] = time.Now()
	}
}

// sleepUntil waits until t (zero: not at all) and reports whether the flood
// goes on: false if ctx ends first or t is past the deadline (it then waits
// until the deadline, so that the flood lasts as long as asked).
func sleepUntil(ctx context.Context, t, deadline time.Time) bool {
	wake := t
	if deadline.Before(t) {
		wake = deadline
	}
	if d := time.Until(wake); d > 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-ctx.Done():
			return false
		}
	}
	return !t.After(deadline)
}

// flowResult is what one try of a packet came to.
type flowResult int

const (
	flowSent   flowResult = iota
	flowFailed            // socket, bind or send failed (f.fail has the first error)
	flowInUse             // another socket holds the port: nothing sent
	flowStop              // no port left, or the flood ended while waiting for one
	flowBroken            // the thread's established flow failed (counted as failed): the thread stops
)

// send sends one datagram to target from a new socket bound to port.
func (f *floodState) send(target unix.Sockaddr, port int) flowResult {
	var bindTo unix.Sockaddr = &unix.SockaddrInet4{Port: port}
	if f.family == unix.AF_INET6 {
		bindTo = &unix.SockaddrInet6{Port: port}
	}
	fd, err := unix.Socket(f.family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		f.fail(fmt.Errorf("socket: %w", err))
		return flowFailed
	}
	if err := unix.Bind(fd, bindTo); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return flowInUse
		}
		f.fail(fmt.Errorf("bind port %d: %w", port, err))
		return flowFailed
	}
	err = unix.Sendto(fd, f.payload, 0, target)
	unix.Close(fd)
	if err != nil {
		f.fail(fmt.Errorf("send from port %d: %w", port, err))
		return flowFailed
	}
	return flowSent
}

// flow sends one datagram from the next free port of ports, skipping ports
// that other sockets hold.
func (f *floodState) flow(ctx context.Context, target unix.Sockaddr, ports *portShare, deadline time.Time) flowResult {
	for {
		i, ready, ok := ports.take()
		if !ok {
			f.exhausted.Store(true)
			return flowStop
		}
		if !sleepUntil(ctx, ready, deadline) {
			return flowStop
		}
		res := f.send(target, ports.port(i))
		ports.sent(i)
		if res != flowInUse {
			return res
		}
		f.inUse.Add(1)
	}
}

// sendFunc sends one packet of a thread; ctx and deadline bound any wait.
type sendFunc func(ctx context.Context, deadline time.Time) flowResult

// run sends packets with send until the deadline, ctx ends or send says
// stop, at most one per pace if pace > 0, and returns how many it sent.
func (f *floodState) run(ctx context.Context, send sendFunc, start, deadline time.Time, pace time.Duration) (packets uint64) {
	for i := 0; ; i++ {
		if pace > 0 {
			next := start.Add(time.Duration(i) * pace)
			if !next.Before(deadline) {
				return
			}
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
		} else if i&7 == 0 && !time.Now().Before(deadline) {
			return
		}
		// After the pace's sleep, right before the packet: a pause that
		// began during the sleep holds this packet back too.
		if goOn, waited := f.pause.wait(ctx, deadline); !goOn {
			return
		} else if waited {
			// Pace from the resume on, not to catch up the pause.
			start, i = time.Now(), 0
		}
		if i&63 == 0 && ctx.Err() != nil {
			return
		}
		switch send(ctx, deadline) {
		case flowSent:
			packets++
			f.sent.Add(1)
		case flowFailed:
			f.errs.Add(1)
		case flowBroken:
			f.errs.Add(1)
			return
		case flowStop:
			return
		}
	}
}

// Flood sends from the scenario's client netns to its target for
// o.Duration, new UDP flows (see the comment at FloodFirstPort) or with
// o.Established the packets of one established flow per thread, and reports
// the rate and the conntrack counters of every netns. It stops early when
// ctx ends and then returns what it has with ctx's error, and when o.Marks
// ends (with Marks' read error, if any).
func (t *Topology) Flood(ctx context.Context, o FloodOptions) (FloodStats, error) {
	if err := o.validate(); err != nil {
		return FloodStats{}, err
	}
	if o.Established != "" && t.Options.UDPTimeout > 0 {
		return FloodStats{}, fmt.Errorf("established flows on a topology with a UDP timeout of %v: a flow would expire in a pause; set up the topology without one", t.Options.UDPTimeout)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return FloodStats{}, errors.New("lab topology is closed")
	}
	role := t.clientRoles()[0]
	st := FloodStats{
		Setting: t.setting(), Client: role, Threads: o.Threads, RateLimit: o.Rate, Established: o.Established,
		Pid: os.Getpid(), PerThread: make([]uint64, o.Threads), PortsWrap: o.Established == "" && t.Options.UDPTimeout > 0,
	}
	payload, err := floodPayload(t.Options.Name)
	if err != nil {
		return st, err
	}
	f := &floodState{payload: payload, target: t.Target, family: unix.AF_INET6}
	if t.Target.Addr().Is4() {
		f.family = unix.AF_INET
	}

	threads := make([]*sender, 0, o.Threads)
	defer func() {
		for _, s := range threads {
			s.stop()
		}
	}()
	cpu := -1
	if o.Pin {
		cpu = o.CPU
	}
	for i := 0; i < o.Threads; i++ {
		s, err := startSender(t.byRole[role], cpu, t.Options.Comm)
		if err != nil {
			return st, err
		}
		threads = append(threads, s)
		st.TIDs = append(st.TIDs, s.tid)
	}
	sends := make([]sendFunc, len(threads))
	count := f.sent.Load
	var flows *establishedFlows
	if o.Established == "" {
		var hold time.Duration
		if st.PortsWrap {
			hold = t.Options.UDPTimeout + reuseMargin
		}
		for i := range threads {
			target, ports := f.sockaddr(), newPortShare(i, len(threads), hold)
			sends[i] = func(ctx context.Context, deadline time.Time) flowResult {
				return f.flow(ctx, target, ports, deadline)
			}
		}
	} else {
		if flows, err = t.openFlows(ctx, threads, o.Established); err != nil {
			return st, err
		}
		defer flows.close()
		for i, c := range flows.conns {
			sends[i] = func(context.Context, time.Time) flowResult { return f.sendOn(c) }
		}
		if o.Established == EstablishedTCP {
			count = flows.dataSegments
		}
	}

	before, err := t.readCounters()
	if err != nil {
		return st, fmt.Errorf("reading conntrack counters: %w", err)
	}
	t.logf("flood: %d thread(s) sending from netns %s to %s", o.Threads, t.byRole[role].Name, t.Target)
	marksErr := f.runOn(ctx, threads, sends, count, o, &st)
	st.Errors = f.errs.Load()
	if f.firstErr != nil {
		st.FirstError = f.firstErr.Error()
	}
	st.PortsInUse = f.inUse.Load()
	st.PortsExhausted = f.exhausted.Load()
	st.Flows = st.Packets
	if st.Duration > 0 {
		st.Rate = float64(st.Packets) / st.Duration.Seconds()
	}
	var flowsErr error
	if flows != nil {
		st.Flows = uint64(len(flows.conns))
		flowsErr = flows.check(&st)
	}
	after, cerr := t.readCounters()
	if cerr != nil {
		return st, errors.Join(ctx.Err(), marksErr, flowsErr, fmt.Errorf("reading conntrack counters: %w", cerr))
	}
	st.Netns = deltas(before, after)
	if st.Packets == 0 && st.FirstError != "" {
		return st, fmt.Errorf("no packet was sent: %s", st.FirstError)
	}
	return st, errors.Join(ctx.Err(), marksErr, flowsErr)
}

// runOn runs the flood on the threads (thread i sends with sends[i]) and
// fills in st's packets (as count gives them), duration and segments. The
// end of o.Marks ends it early. It returns Marks' read error, or why a
// thread could not be given its job.
func (f *floodState) runOn(ctx context.Context, threads []*sender, sends []sendFunc, count func() uint64, o FloodOptions, st *FloodStats) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var pace time.Duration
	if o.Rate > 0 {
		pace = time.Duration(float64(time.Second) * float64(o.Threads) / o.Rate)
	}
	var (
		wg       sync.WaitGroup
		begin    = make(chan struct{})
		started  time.Time
		deadline time.Time
	)
	for i, s := range threads {
		wg.Add(1)
		job := func() {
			defer wg.Done()
			<-begin
			st.PerThread[i] = f.run(ctx, sends[i], started, deadline, pace)
		}
		if err := s.post(job); err != nil {
			wg.Done()
			// Threads already given a job wait on begin: release them
			// with a deadline in the past.
			started, deadline = time.Now(), time.Now()
			close(begin)
			wg.Wait()
			return err
		}
	}
	started = time.Now()
	deadline = started.Add(o.Duration)
	var seg *segmenter
	marksErr := make(chan error, 1)
	if o.Marks != nil {
		seg = newSegmenter(count, &f.pause, started, time.Now)
		go func() {
			marksErr <- readMarks(o.Marks, seg)
			stop()
		}()
	}
	close(begin) // publishes started and deadline to the threads
	wg.Wait()
	st.Duration = time.Since(started)
	st.Packets = count()
	if seg != nil {
		st.Segments = seg.finish()
	}
	select {
	case err := <-marksErr:
		return err
	default: // the flood ended first; the reader is blocked in Marks
		return nil
	}
}
