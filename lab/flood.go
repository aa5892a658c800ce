package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// A flood creates new UDP flows through a topology as fast as it can: each
// flow is a new socket bound to the next source port, one datagram to the
// target, and close. Nothing waits for a reply (the datagram is a DNS message
// with the response bit set, which the lab's responders ignore), so every
// flow costs the kernel one conntrack entry in each netns with rules: a NEW
// packet through nf_conntrack_in, NAT and __nf_conntrack_confirm, which is
// what a conntrack tracer adds cost to.
//
// Source ports are handed out in sequence, FloodFirstPort and up, so no two
// flows of a flood share a tuple: a flood stops early once every port was
// used (FloodStats.PortsExhausted). That also keeps a flood below the default
// nf_conntrack_max (65536 on a machine with more than 1 GiB). Every Flood
// starts again at FloodFirstPort, and unreplied UDP entries live 30 s, so a
// second flood on the same topology soon after the first repeats its tuples
// (ctlab flood sets up a new topology each time).

// FloodFirstPort is the first source port a flood uses; FloodPorts is how
// many there are (FloodFirstPort .. 65535).
const (
	FloodFirstPort = 1024
	FloodPorts     = 65536 - FloodFirstPort
)

// MaxFloodThreads bounds FloodOptions.Threads.
const MaxFloodThreads = 64

// FloodOptions tune Flood.
type FloodOptions struct {
	// Duration is how long to send; required.
	Duration time.Duration
	// Threads is the number of sender threads in the client netns
	// (default 1). They are not pinned: the scheduler spreads them.
	Threads int
	// Rate caps the flows per second of all threads together (0: as fast
	// as possible).
	Rate float64
}

// FloodStats is the result of a flood.
type FloodStats struct {
	Setting
	Client string `json:"client"` // the senders' netns role

	Threads   int     `json:"threads"`
	RateLimit float64 `json:"rate_limit"` // flows/s asked for; 0: unlimited
	// Flows is the number of datagrams sent, each from its own socket and
	// source port: one new flow each.
	Flows     uint64   `json:"flows"`
	PerThread []uint64 `json:"flows_per_thread"`
	// Errors counts flows that failed (socket, bind or send); PortsInUse
	// counts source ports skipped because something else held them.
	Errors     uint64 `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	PortsInUse uint64 `json:"ports_in_use"`
	// PortsExhausted: the flood stopped before Duration because every
	// source port had been used once.
	PortsExhausted bool          `json:"ports_exhausted"`
	Duration       time.Duration `json:"duration_ns"`
	Rate           float64       `json:"flows_per_second"`

	Pid  int   `json:"pid"`
	TIDs []int `json:"tids"`

	// The conntrack counters of every netns over the flood: in the netns
	// that NATs, entries should grow by about Flows (unreplied UDP
	// entries live 30 s), and drop / early_drop stay 0 unless the table
	// filled up.
	Netns []NetnsStats `json:"netns"`
}

// floodPayload is a DNS message with the response bit set: it looks like
// DNS to a tracer, and the lab's responders drop it without answering.
func floodPayload(name string) ([]byte, error) {
	b, err := BuildQuery(0, name, TypeA)
	if err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint16(b[2:], binary.BigEndian.Uint16(b[2:])|flagQR)
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
	return nil
}

// floodState is shared by the threads of one flood.
type floodState struct {
	family  int
	target  netip.AddrPort
	payload []byte
	// next is the index of the next source port to use.
	next      atomic.Uint64
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

// flow sends one datagram to target from a new socket bound to the next free
// source port. more is false when no port is left.
func (f *floodState) flow(target unix.Sockaddr) (sent bool, more bool) {
	for {
		n := f.next.Add(1) - 1
		if n >= FloodPorts {
			f.exhausted.Store(true)
			return false, false
		}
		port := int(FloodFirstPort + n)
		var bindTo unix.Sockaddr = &unix.SockaddrInet4{Port: port}
		if f.family == unix.AF_INET6 {
			bindTo = &unix.SockaddrInet6{Port: port}
		}
		fd, err := unix.Socket(f.family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			f.fail(fmt.Errorf("socket: %w", err))
			return false, true
		}
		if err := unix.Bind(fd, bindTo); err != nil {
			unix.Close(fd)
			if errors.Is(err, unix.EADDRINUSE) {
				f.inUse.Add(1)
				continue
			}
			f.fail(fmt.Errorf("bind port %d: %w", port, err))
			return false, true
		}
		err = unix.Sendto(fd, f.payload, 0, target)
		unix.Close(fd)
		if err != nil {
			f.fail(fmt.Errorf("send from port %d: %w", port, err))
			return false, true
		}
		return true, true
	}
}

// run sends flows until the deadline, ctx ends or the ports run out, at most
// one per pace if pace > 0.
func (f *floodState) run(ctx context.Context, start, deadline time.Time, pace time.Duration) (flows, errs uint64) {
	target := f.sockaddr()
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
		if i&63 == 0 && ctx.Err() != nil {
			return
		}
		sent, more := f.flow(target)
		if !more {
			return
		}
		if sent {
			flows++
		} else {
			errs++
		}
	}
}

// Flood creates new UDP flows from the scenario's client netns to its
// target for o.Duration (see the comment at FloodFirstPort) and reports the
// rate and the conntrack counters of every netns. It stops early when ctx
// ends and then returns what it has with ctx's error.
func (t *Topology) Flood(ctx context.Context, o FloodOptions) (FloodStats, error) {
	if err := o.validate(); err != nil {
		return FloodStats{}, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return FloodStats{}, errors.New("lab topology is closed")
	}
	role := t.clientRoles()[0]
	st := FloodStats{
		Setting: t.setting(), Client: role, Threads: o.Threads, RateLimit: o.Rate,
		Pid: os.Getpid(), PerThread: make([]uint64, o.Threads),
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
	for i := 0; i < o.Threads; i++ {
		s, err := startSender(t.byRole[role], -1)
		if err != nil {
			return st, err
		}
		threads = append(threads, s)
		st.TIDs = append(st.TIDs, s.tid)
	}
	var pace time.Duration
	if o.Rate > 0 {
		pace = time.Duration(float64(time.Second) * float64(o.Threads) / o.Rate)
	}

	before, err := t.Counters()
	if err != nil {
		return st, fmt.Errorf("reading conntrack counters: %w", err)
	}
	var (
		wg       sync.WaitGroup
		errCount atomic.Uint64
		begin    = make(chan struct{})
		started  time.Time
		deadline time.Time
	)
	for i, s := range threads {
		wg.Add(1)
		job := func() {
			defer wg.Done()
			<-begin
			n, e := f.run(ctx, started, deadline, pace)
			st.PerThread[i] = n
			errCount.Add(e)
		}
		if err := s.post(job); err != nil {
			wg.Done()
			// Threads already given a job wait on begin: release them
			// with a deadline in the past.
			started, deadline = time.Now(), time.Now()
			close(begin)
			wg.Wait()
			return st, err
		}
	}
	started = time.Now()
	deadline = started.Add(o.Duration)
	close(begin) // publishes started and deadline to the threads
	wg.Wait()
	st.Duration = time.Since(started)

	for _, n := range st.PerThread {
		st.Flows += n
	}
	st.Errors = errCount.Load()
	if f.firstErr != nil {
		st.FirstError = f.firstErr.Error()
	}
	st.PortsInUse = f.inUse.Load()
	st.PortsExhausted = f.exhausted.Load()
	if st.Duration > 0 {
		st.Rate = float64(st.Flows) / st.Duration.Seconds()
	}
	after, cerr := t.Counters()
	if cerr != nil {
		return st, errors.Join(ctx.Err(), fmt.Errorf("reading conntrack counters: %w", cerr))
	}
	for i := range before {
		st.Netns = append(st.Netns, NetnsStats{
			Netns:  *before[i].Netns,
			Before: before[i].Counters,
			After:  after[i].Counters,
			Delta:  after[i].Counters.Sub(before[i].Counters),
		})
	}
	if st.Flows == 0 && st.FirstError != "" {
		return st, fmt.Errorf("no flow was sent: %s", st.FirstError)
	}
	return st, ctx.Err()
}

// WriteText prints the flood's result as a readable report.
func (s *FloodStats) WriteText(w io.Writer) error {
	var b strings.Builder
	s.writeHeader(&b)
	fmt.Fprintf(&b, "client     pid %d, %d thread(s) %v in netns %s\n", s.Pid, s.Threads, s.TIDs, s.Client)
	limit := "as fast as possible"
	if s.RateLimit > 0 {
		limit = fmt.Sprintf("at most %.0f/s", s.RateLimit)
	}
	fmt.Fprintf(&b, "flows      %d new UDP flows in %v: %.0f flows/s (%s; one socket, source port and datagram each)\n",
		s.Flows, s.Duration.Round(time.Millisecond), s.Rate, limit)
	if s.Threads > 1 {
		fmt.Fprintf(&b, "per thread %v\n", s.PerThread)
	}
	if s.Errors > 0 || s.PortsInUse > 0 {
		fmt.Fprintf(&b, "errors     %d failed flows, %d source ports in use and skipped", s.Errors, s.PortsInUse)
		if s.FirstError != "" {
			fmt.Fprintf(&b, " (first: %s)", s.FirstError)
		}
		b.WriteString("\n")
	}
	if s.PortsExhausted {
		fmt.Fprintf(&b, "stopped    early: all %d source ports were used (use a shorter --duration or a --rate)\n", FloodPorts)
	}
	b.WriteString("\nconntrack counters per netns (delta over the flood; entries = now):\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "netns\trole\tinode\tentries\tinsert_failed\tdrop\tearly_drop\tinvalid\t")
	for _, n := range s.Netns {
		d := n.Delta
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n",
			n.Name, n.Role, n.Inode, n.After.Entries, d.InsertFailed, d.Drop, d.EarlyDrop, d.Invalid)
	}
	return tw.Flush()
}
