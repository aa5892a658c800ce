package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/kstat"
)

// PerType counts queries by type.
type PerType struct {
	A    int `json:"a"`
	AAAA int `json:"aaaa"`
}

func (p *PerType) add(qtype uint16) {
	if qtype == dnsmsg.TypeA {
		p.A++
	} else {
		p.AAAA++
	}
}

// SimultaneousWindow is how close two sends must start to count as
// simultaneous: about the time a packet takes from send() to the node's
// conntrack confirm on a real machine, so a lookup outside it can hardly race.
const SimultaneousWindow = 100 * time.Microsecond

// Total is A + AAAA.
func (p PerType) Total() int { return p.A + p.AAAA }

// NetnsStats is one namespace's conntrack counters over a run.
type NetnsStats struct {
	Netns
	Before kstat.Counters `json:"before"`
	After  kstat.Counters `json:"after"`
	Delta  kstat.Counters `json:"delta"`
}

// Socket is one client socket of a run.
type Socket struct {
	Client string `json:"client"` // netns role
	Cookie uint64 `json:"cookie"` // SO_COOKIE, 0 if unsupported
	Port   uint16 `json:"port"`   // local (source) port
}

// Setting is what a run was set up with: the scenario, its rules and the
// kernel. Stats and FloodStats both start with it.
type Setting struct {
	Scenario  string         `json:"scenario"`
	Path      string         `json:"path"`
	Family    int            `json:"family"`
	NAT       string         `json:"nat"`
	RuleTool  string         `json:"rule_tool"`
	Endpoints int            `json:"endpoints"`
	Target    netip.AddrPort `json:"target"`
	Kernel    string         `json:"kernel"`
}

func (t *Topology) setting() Setting {
	return Setting{
		Scenario: t.Scenario.Name, Path: t.Scenario.Path, Family: t.Scenario.Family,
		NAT: t.Options.NAT, RuleTool: t.RuleBin, Endpoints: t.endpoints, Target: t.Target,
		Kernel: kernelRelease(),
	}
}

// writeHeader prints the setting as the first lines of a text report.
func (s *Setting) writeHeader(b *strings.Builder) {
	fam := "IPv4"
	if s.Family == 6 {
		fam = "IPv6"
	}
	fmt.Fprintf(b, "scenario   %s (%s, %s, nat %s via %s, %d endpoint(s), target %s)\n",
		s.Scenario, s.Path, fam, s.NAT, s.RuleTool, s.Endpoints, s.Target)
	fmt.Fprintf(b, "kernel     %s\n", s.Kernel)
}

// Stats is the result of a run of lookups.
type Stats struct {
	Setting
	Timeout time.Duration `json:"timeout_ns"`

	// Racing: A and AAAA are sent at once from two threads on one socket;
	// false in the scenarios whose lookups are not a glibc pair.
	Racing    bool    `json:"racing"`
	Requested int     `json:"requested"`
	Lookups   int     `json:"lookups"` // completed
	Answered  PerType `json:"answered"`
	Lost      PerType `json:"lost"`
	// Split counts lookups whose two answers came from different endpoints
	// (race 3's precondition; a DNAT endpoint per conntrack entry).
	Split int `json:"split_endpoints"`
	// PortsApart counts lookups whose two queries reached one endpoint
	// from two different source ports: NAT gave the socket's two packets
	// different ports (race 2), so neither merged into the other's entry.
	// The endpoint's own view, independent of conntrack's counters.
	PortsApart int `json:"ports_apart"`
	// Served is how many queries each endpoint answered during the run
	// (dns1 first). A query dropped by conntrack never reaches one.
	Served []uint64 `json:"served"`
	// Reverse scenarios (UDP): datagrams the other peer never received
	// (dropped at the node), and datagrams it received from another source
	// port than the sender bound (moved by the node's NAT).
	PeerLost  int `json:"peer_lost"`
	PortMoved int `json:"port_moved"`
	// Simultaneous counts lookups whose two sends started within
	// SimultaneousWindow of each other, and MedianSkew is the median gap:
	// a run without clashes and without simultaneous sends says the CPUs
	// were busy elsewhere, not that the kernel has no race.
	Simultaneous int           `json:"simultaneous_sends"`
	MedianSkew   time.Duration `json:"median_send_skew_ns"`
	skews        []time.Duration
	Duration     time.Duration `json:"duration_ns"`
	Rate         float64       `json:"lookups_per_second"`

	// Who sent: the lab runs in-process, so the client is this process;
	// TIDs are the sending threads.
	Pid  int    `json:"pid"`
	Comm string `json:"comm"`
	TIDs []int  `json:"tids"`
	Pids []int  `json:"pids"`

	Netns   []NetnsStats `json:"netns"`
	Sockets []Socket     `json:"sockets,omitempty"`
}

// NetnsByRole returns the stats of the netns with a role, or nil.
func (s *Stats) NetnsByRole(role string) *NetnsStats {
	for i := range s.Netns {
		if s.Netns[i].Role == role {
			return &s.Netns[i]
		}
	}
	return nil
}

func randID() uint16 { return uint16(rand.Uint32()) }

func writeFd(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return n, err
	}
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func processComm() string {
	b, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Lookups performs k lookups and reports the answers and, for every netns of
// the topology, the conntrack counters before and after. It stops early when
// ctx ends and then returns what it has with ctx's error.
//
// A lookup in the race scenarios: a new UDP socket in the client netns,
// connect()ed to the target, and the A and AAAA queries sent at the same
// instant from two threads (a spin barrier); then both replies are awaited up
// to Options.Timeout. In snat-one-port: the node's conntrack table is flushed
// (so the single SNAT port is free again), the first pod sends A and waits
// for the answer, then the second pod sends AAAA, whose reply tuple is now
// taken.
func (t *Topology) Lookups(ctx context.Context, k int) (Stats, error) {
	return t.LookupsUntil(ctx, k, 0, k)
}

// countedClashes is how many clashes the kernel counted in the topology's
// namespaces between two readings: settled (clash_resolve) and not
// (insert_failed; before 5.10 it counts every clash). A reverse collision
// that NAT settled by moving a port (Stats.PortMoved) counts nowhere.
func countedClashes(before, after []netnsReading) uint64 {
	var n uint64
	for i := range before {
		d := after[i].Counters.Sub(before[i].Counters)
		n += d.Clashes()
	}
	return n
}

// LookupsUntil performs k lookups, then goes on until the kernel has counted
// at least minClashes clashes in the topology, up to max lookups in all.
// Whether two sends really overlap depends on how busy the machine is (an
// emulated VM on a loaded host may race rarely), so a test that needs races
// asks for a number of them rather than a number of lookups.
func (t *Topology) LookupsUntil(ctx context.Context, k, minClashes, max int) (Stats, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return Stats{}, errors.New("lab topology is closed")
	}
	if k < 0 {
		return Stats{}, fmt.Errorf("lookups %d: must not be negative", k)
	}
	st := Stats{
		Setting: t.setting(), Timeout: t.Options.Timeout, Requested: k, Racing: t.Scenario.lookup == lookupRacing,
		Pid: os.Getpid(), Comm: processComm(), Pids: []int{os.Getpid()},
	}
	for _, s := range t.senders {
		st.TIDs = append(st.TIDs, s.tid)
	}
	before, err := t.readCounters()
	if err != nil {
		return st, fmt.Errorf("reading conntrack counters: %w", err)
	}
	for _, r := range t.responders {
		st.Served = append(st.Served, r.answered.Load())
	}
	start := time.Now()
	var runErr error
	enough := minClashes <= 0
	for i := 0; i < k || (!enough && i < max); i++ {
		if err := ctx.Err(); err != nil {
			runErr = err
			break
		}
		if !enough && i >= k && i%10 == 0 {
			now, err := t.readCounters()
			if err != nil {
				runErr = fmt.Errorf("reading conntrack counters: %w", err)
				break
			}
			if enough = countedClashes(before, now)+uint64(st.PortMoved) >= uint64(minClashes); enough {
				break
			}
		}
		switch t.Scenario.lookup {
		case lookupSequential:
			err = t.sequentialLookup(&st)
		case lookupSingle:
			err = t.singleLookup(&st)
		case lookupReverse:
			err = t.reverseLookup(&st, i)
		default:
			err = racingLookup(t.senders[0], t.senders[1], t.Target, &t.Options, &st)
		}
		if err != nil {
			runErr = fmt.Errorf("lookup %d: %w", i+1, err)
			break
		}
		st.Lookups++
	}
	st.Duration = time.Since(start)
	if len(st.skews) > 0 {
		slices.Sort(st.skews)
		st.MedianSkew = st.skews[len(st.skews)/2]
	}
	if st.Duration > 0 {
		st.Rate = float64(st.Lookups) / st.Duration.Seconds()
	}
	for i, r := range t.responders {
		st.Served[i] = r.answered.Load() - st.Served[i]
	}
	after, err := t.readCounters()
	if err != nil {
		return st, errors.Join(runErr, fmt.Errorf("reading conntrack counters: %w", err))
	}
	st.Netns = deltas(before, after)
	return st, runErr
}

// racingLookup sends a lookup's A and AAAA queries to target at the same
// instant from one socket, s0 and s1 each sending one, and waits for the
// replies.
func racingLookup(s0, s1 *sender, target netip.AddrPort, o *Options, st *Stats) error {
	var cs *clientSocket
	if err := s0.do(func() (err error) { cs, err = newClientSocket(target); return }); err != nil {
		return err
	}
	leak := false
	defer func() {
		// A thread that missed its deadline may still write to the fd
		// later; closing it could let that write hit a reused fd number.
		if !leak {
			cs.Close()
		}
	}()
	st.Sockets = append(st.Sockets, Socket{Client: s0.ns.Role, Cookie: cs.cookie, Port: cs.port})

	idA := randID()
	idAAAA := idA + 1 + uint16(rand.IntN(0xfffe)) // distinct, as glibc's are
	qA, err := dnsmsg.BuildQuery(idA, o.Name, dnsmsg.TypeA)
	if err != nil {
		return err
	}
	qAAAA, err := dnsmsg.BuildQuery(idAAAA, o.Name, dnsmsg.TypeAAAA)
	if err != nil {
		return err
	}

	var (
		arrived atomic.Int32
		sentAt  [2]time.Time // each written by one thread, read after <-sent
	)
	// Two steps: both threads first block on start, so neither spins while
	// this goroutine still needs a CPU to hand out the second job (on a
	// slow VM the spinner would then be preempted and the sends end up
	// milliseconds apart); once start is closed, the spin barrier lines
	// the two sends up to within nanoseconds.
	start := make(chan struct{})
	spinUntil := time.Now().Add(2 * time.Second)
	// A send error (say ENETUNREACH) shows up as a lost query, not as a
	// failure of the lab, so the threads only report that they are done.
	sent := make(chan struct{}, 2)
	send := func(q []byte, at *time.Time) func() {
		return func() {
			defer func() { sent <- struct{}{} }()
			<-start
			spinBarrier(&arrived, 2, spinUntil)
			*at = time.Now()
			writeFd(cs.fd, q)
		}
	}
	if err := s0.post(send(qA, &sentAt[0])); err != nil {
		return err
	}
	if err := s1.post(send(qAAAA, &sentAt[1])); err != nil {
		// s0 gives up spinning at spinUntil and sends alone.
		close(start)
		leak = true
		return err
	}
	close(start)
	wait := time.NewTimer(jobTimeout)
	defer wait.Stop()
	for i := 0; i < 2; i++ {
		select {
		case <-sent:
		case <-wait.C:
			leak = true
			return fmt.Errorf("client threads did not send within %v", jobTimeout)
		}
	}

	skew := sentAt[0].Sub(sentAt[1]).Abs()
	st.skews = append(st.skews, skew)
	if skew < SimultaneousWindow {
		st.Simultaneous++
	}

	got := awaitReplies(cs.fd, map[uint16]uint16{idA: dnsmsg.TypeA, idAAAA: dnsmsg.TypeAAAA}, time.Now().Add(o.Timeout))
	for _, q := range [2]struct{ id, qtype uint16 }{{idA, dnsmsg.TypeA}, {idAAAA, dnsmsg.TypeAAAA}} {
		if _, ok := got[q.id]; ok {
			st.Answered.add(q.qtype)
		} else {
			st.Lost.add(q.qtype)
		}
	}
	if ra, ok := got[idA]; ok {
		if rb, ok := got[idAAAA]; ok {
			switch {
			case ra.endpoint != rb.endpoint:
				st.Split++
			case ra.fromPort != rb.fromPort:
				st.PortsApart++
			}
		}
	}
	return nil
}

// singleLookup sends one A query from a new socket and waits for it.
func (t *Topology) singleLookup(st *Stats) error {
	s := t.senders[0]
	st.Sockets = append(st.Sockets, Socket{Client: s.ns.Role})
	ok, err := t.queryOnce(s, t.Target, dnsmsg.TypeA, t.Options.Timeout)
	if err != nil {
		return err
	}
	if ok {
		st.Answered.add(dnsmsg.TypeA)
	} else {
		st.Lost.add(dnsmsg.TypeA)
	}
	return nil
}

func (t *Topology) sequentialLookup(st *Stats) error {
	if err := t.flusher.Flush(); err != nil {
		return err
	}
	for i, qtype := range []uint16{dnsmsg.TypeA, dnsmsg.TypeAAAA} {
		s := t.senders[i]
		var cs *clientSocket
		if err := s.do(func() (err error) { cs, err = newClientSocket(t.Target); return }); err != nil {
			return err
		}
		st.Sockets = append(st.Sockets, Socket{Client: s.ns.Role, Cookie: cs.cookie, Port: cs.port})
		id := randID()
		q, err := dnsmsg.BuildQuery(id, t.Options.Name, qtype)
		if err != nil {
			cs.Close()
			return err
		}
		if i == 1 {
			time.Sleep(t.Scenario.hold) // the first pod's entry ages
		}
		answered := false
		if _, err := writeFd(cs.fd, q); err == nil {
			got := awaitReplies(cs.fd, map[uint16]uint16{id: qtype}, time.Now().Add(t.Options.Timeout))
			answered = len(got) == 1
		}
		cs.Close()
		if answered {
			st.Answered.add(qtype)
		} else {
			st.Lost.add(qtype)
		}
	}
	return nil
}

// WriteText prints the stats as a readable report.
func (s *Stats) WriteText(w io.Writer) error {
	var b strings.Builder
	s.writeHeader(&b)
	fmt.Fprintf(&b, "client     pid %d (%s), threads %v\n", s.Pid, s.Comm, s.TIDs)
	fmt.Fprintf(&b, "lookups    %d of %d in %v (%.0f/s), reply timeout %v\n",
		s.Lookups, s.Requested, s.Duration.Round(time.Millisecond), s.Rate, s.Timeout)
	fmt.Fprintf(&b, "answered   A %d  AAAA %d\n", s.Answered.A, s.Answered.AAAA)
	fmt.Fprintf(&b, "lost       A %d  AAAA %d\n", s.Lost.A, s.Lost.AAAA)
	fmt.Fprintf(&b, "served     %v queries by endpoint (dns1 first)\n", s.Served)
	if s.PeerLost > 0 || s.PortMoved > 0 {
		fmt.Fprintf(&b, "peers      %d packets never reached the other peer, %d reached it from a moved source port\n", s.PeerLost, s.PortMoved)
	}
	if s.Racing {
		fmt.Fprintf(&b, "together   %d lookups sent A and AAAA within %v of each other (median gap %v)\n",
			s.Simultaneous, SimultaneousWindow, s.MedianSkew)
	}
	if s.Endpoints > 1 {
		fmt.Fprintf(&b, "split      %d lookups answered by two different endpoints\n", s.Split)
	}
	if s.PortsApart > 0 {
		fmt.Fprintf(&b, "apart      %d lookups whose queries reached one endpoint from two source ports (NAT moved them)\n", s.PortsApart)
	}
	b.WriteString("\nconntrack counters per netns (delta over the run; entries = now):\n")
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "netns\trole\tinode\tentries\tclash_resolve\tinsert_failed\tdrop\tfound\tinvalid\tearly_drop\tchaintoolong\t")
	for _, n := range s.Netns {
		d := n.Delta
		clash, chain := fmt.Sprint(d.ClashResolve), fmt.Sprint(d.ChainTooLong)
		if !d.HasClashResolve {
			clash = "n/a"
		}
		if !d.HasChainTooLong {
			chain = "n/a"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t\n",
			n.Name, n.Role, n.Inode, d.Entries, clash, d.InsertFailed, d.Drop, d.Found, d.Invalid, d.EarlyDrop, chain)
	}
	return tw.Flush()
}
