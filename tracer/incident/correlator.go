package incident

import (
	"time"
	"unsafe"

	"github.com/ctprobe/ctprobe/tracer/event"
)

// Defaults for Options fields left zero.
const (
	DefaultMaxCTs        = 16384
	DefaultMaxAge        = 10 * time.Second
	DefaultReorderWindow = 20 * time.Millisecond
	DefaultMaxPending    = 256
)

// Options bound the correlator's memory and say how long it waits for late
// events. Times are kernel monotonic time (event.Event.Time).
type Options struct {
	// MaxCTs is how many per-ct records are kept (older generations of a
	// reused ct pointer included). The least recently touched goes first.
	MaxCTs int
	// MaxAge drops a record that no event touched for this long (measured
	// against the newest event time seen, so replayed history with old
	// timestamps does not age out on arrival).
	MaxAge time.Duration
	// ReorderWindow is how long, after a loser's confirm reaches the
	// correlator, an incident waits for events of other CPUs that arrive
	// late (--all mode): kernel time past the newest the stream had reached
	// then (corr_reorder.go). Incidents whose evidence the kernel sent
	// together (--timeline, the default mode) never wait.
	// Negative: never wait.
	ReorderWindow time.Duration
	// MaxPending bounds the incidents waiting out ReorderWindow; when full,
	// the oldest is completed at once. Each holds a copy of the loser's
	// record (about 1 KiB), so that eviction cannot lose it.
	MaxPending int
	// ClashProbed: nf_ct_resolve_clash is probed, so a loser dropped at
	// confirm without a clash event (and without a winner found by tuple)
	// failed its insert for another reason: a Finding, not an Incident.
	// Where the probe is missing (inlined, or skipped) such a drop stays an
	// unclassified incident.
	ClashProbed bool
}

// Stats counts what the correlator did.
type Stats struct {
	Events    uint64 // events passed to Add
	Incidents uint64 // incidents returned
	Findings  uint64 // findings returned
	Unknown   uint64 // of those, RaceUnknown
	Tracked   int    // per-ct records held now
	Pending   int    // incidents waiting for late events now
	Evicted   uint64 // records dropped to stay within MaxCTs
	Expired   uint64 // records dropped after MaxAge without an event
	Stale     uint64 // events that fit no generation of their ct pointer
}

// Correlator pairs the loser and the winner of every conntrack insertion
// clash from a stream of probe events (either mode: --all or incident
// replay) and classifies it. It is not safe for concurrent use.
//
// Per-ct state lives in a fixed pool of records found by ct pointer. A ct
// pointer is reused quickly (SLAB_TYPESAFE_BY_RCU): a record is one
// generation of a pointer, bounded by its birth (CT_IN with FlagNew) and its
// confirm; an event is filed by time into the current or the previous
// generation, or starts a new one.
type Correlator struct {
	maxAge, window uint64
	clashProbed    bool
	heads          []recHead // by slot: what every event and eviction reads
	bodies         []recBody // by slot: what the events said
	lru            []lruNode // by slot
	free           []int32
	byCT           ctIndex    // ct pointer -> current generation
	byTuple        tupleIndex // confirmed tuples -> record (winner lookup)
	idxQ           []int32    // ring of records queued for byTuple, oldest first
	idxQHead       int
	idxQLen        int
	head, tail     int32     // LRU list of records in use, head oldest
	pend           []pending // ring of incidents waiting for late events
	pendHead       int
	pendLen        int
	openClashes    int    // records with a clash and no confirm yet (setHave)
	now            uint64 // newest event time seen
	out            []Incident
	findings       []Finding
	stats          Stats
	warmSink       uint64 // see alloc
	prefetched     int32  // the slot prefetchVictim asked for last
}

// New makes a Correlator. Zero Options fields take the defaults.
func New(opts Options) *Correlator {
	if opts.MaxCTs <= 0 {
		opts.MaxCTs = DefaultMaxCTs
	}
	opts.MaxCTs = min(max(opts.MaxCTs, 4), 1<<30) // slots are int32, and byTuple shifts them
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.ReorderWindow == 0 {
		opts.ReorderWindow = DefaultReorderWindow
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	c := &Correlator{
		maxAge:      uint64(opts.MaxAge),
		window:      uint64(max(opts.ReorderWindow, 0)),
		clashProbed: opts.ClashProbed,
		heads:       make([]recHead, opts.MaxCTs),
		bodies:      make([]recBody, opts.MaxCTs),
		lru:         make([]lruNode, opts.MaxCTs),
		free:        make([]int32, opts.MaxCTs),
		byCT:        newCTIndex(opts.MaxCTs),
		byTuple:     newTupleIndex(2 * opts.MaxCTs),
		idxQ:        make([]int32, opts.MaxCTs),
		head:        -1,
		tail:        -1,
		prefetched:  -1,
		pend:        make([]pending, opts.MaxPending),
	}
	for i := range c.heads {
		c.heads[i].reset()
		c.lru[i] = lruNode{prev: -1, next: -1}
		c.free[i] = int32(len(c.heads) - 1 - i)
	}
	return c
}

// Stats returns the counters.
func (c *Correlator) Stats() Stats {
	s := c.stats
	s.Tracked = len(c.heads) - len(c.free)
	s.Pending = c.pendLen
	return s
}

// Add files one event and returns the incidents it completed (nil for
// almost every event). The event is copied; it may be reused after Add.
func (c *Correlator) Add(ev *event.Event) []Incident {
	c.stats.Events++
	if ev.Time > c.now {
		c.now = ev.Time
	}
	if files(ev) {
		// The value is compared only so that the compiler keeps the loads.
		if c.touch(ev.CT) == 0x5bd1e9955bd1e995 {
			c.warmSink++
		}
	}
	switch ev.Kind {
	case event.CTIn:
		if ev.Flags&event.FlagNew != 0 {
			c.addIn(ev)
		}
	case event.NAT:
		c.addNAT(ev)
	case event.Clash:
		c.addClash(ev)
	case event.Confirm:
		c.addConfirm(ev)
	}
	c.due()
	c.expire()
	c.prefetchVictim()
	return c.take()
}

// Prefetch starts loading the index entry that Add(ev) looks ev's ct up
// in, and returns at once: a caller with work to do before Add(ev), such as
// printing the event, calls it first, and the entry is in by then.
func (c *Correlator) Prefetch(ev *event.Event) {
	if files(ev) {
		prefetch(unsafe.Pointer(&c.byCT.e[c.byCT.home(ctHash(ev.CT))]), unsafe.Sizeof(entry{}))
	}
}

// files: Add files ev in a record (the other events only move the clock).
func files(ev *event.Event) bool { return ev.Kind != event.CTIn || ev.Flags&event.FlagNew != 0 }

// prefetchVictim starts loading the record that the next new ct evicts,
// the LRU list's head (its head, links and body), once per record, while
// the caller goes on to other work; touch then finds it in, and its own
// loads wait for one round of misses instead of two.
func (c *Correlator) prefetchVictim() {
	if len(c.free) > 0 || c.head < 0 || c.head == c.prefetched {
		return
	}
	c.prefetched = c.head
	prefetch(unsafe.Pointer(&c.heads[c.head]), unsafe.Sizeof(recHead{}))
	prefetch(unsafe.Pointer(&c.lru[c.head]), unsafe.Sizeof(lruNode{}))
	prefetch(unsafe.Pointer(&c.bodies[c.head]), unsafe.Sizeof(recBody{}))
}

func (c *Correlator) take() []Incident {
	out := c.out
	c.out = nil
	return out
}

// Findings returns the findings that the calls since the last one
// completed (nil for almost every event).
func (c *Correlator) Findings() []Finding {
	out := c.findings
	c.findings = nil
	return out
}

func (c *Correlator) found(f Finding) {
	c.stats.Findings++
	c.findings = append(c.findings, f)
}

// common files in record s what every kind of event says (netns, zone,
// ORIGINAL tuple, whether it is history) and returns the record; the add*
// methods below file the rest of their kind's event.
func (c *Correlator) common(s int32, ev *event.Event) rec {
	r := c.at(s)
	if ev.Flags&event.FlagHistory != 0 {
		r.have |= hasHistory
	}
	r.netns, r.zone = ev.Netns, ev.Zone
	if r.have&hasOrig == 0 && ev.Kind != event.Clash {
		r.orig = ev.Orig
		r.have |= hasOrig
	}
	return r
}

func (c *Correlator) addIn(ev *event.Event) {
	s := c.gen(ev.CT, ev.Time, event.CTIn)
	if s < 0 {
		return
	}
	r := c.common(s, ev)
	r.orig = ev.Orig
	r.have |= hasIn | hasOrig
	r.inTime = ev.Time
	r.in = inRec{
		cpu: ev.CPU, pid: ev.PID, tid: ev.TID, comm: ev.Comm,
		hook: ev.Hook, flags: ev.Flags, sock: ev.Sock, reply: ev.Reply,
		payload: ev.Payload, payloadLen: ev.PayloadLen,
	}
}

func (c *Correlator) addNAT(ev *event.Event) {
	s := c.gen(ev.CT, ev.Time, event.NAT)
	if s < 0 {
		return
	}
	r := c.common(s, ev)
	m := ev.Aux & 1
	n := &r.nat[m]
	*n = natRec{time: ev.Time, cpu: ev.CPU, flags: ev.Flags, before: ev.Before, after: ev.Reply, rng: ev.Range}
	if ev.Flags&event.FlagNATGUT != 0 {
		// get_unique_tuple works in ORIGINAL direction.
		n.before, n.after = invert(ev.Before), invert(ev.Reply)
	}
	r.have |= hasNATSrc << m
}

func (c *Correlator) addClash(ev *event.Event) {
	s := c.gen(ev.CT, ev.Time, event.Clash)
	if s < 0 {
		return
	}
	r := c.common(s, ev)
	r.clash = clashRec{time: ev.Time, cpu: ev.CPU, winner: ev.OtherCT, dir: ev.Aux & 1, lookup: ev.Flags&event.FlagLookup != 0, orig: ev.Orig, reply: ev.Reply}
	c.setHave(r.recHead, hasClash, 0)
}

func (c *Correlator) addConfirm(ev *event.Event) {
	s := c.gen(ev.CT, ev.Time, event.Confirm)
	if s < 0 {
		return
	}
	c.unindex(s) // before conf changes: the keys are made from it
	r := c.common(s, ev)
	r.orig = ev.Orig // the loser's tuples at confirm entry are authoritative
	r.confTime = ev.Time
	r.conf = confRec{
		cpu: ev.CPU, pid: ev.PID, tid: ev.TID, comm: ev.Comm, flags: ev.Flags,
		verdict: ev.Verdict, other: ev.OtherCT, status: ev.Status, sock: ev.Sock,
		orig: ev.Orig, reply: ev.Reply, payload: ev.Payload, payloadLen: ev.PayloadLen,
	}
	c.setHave(r.recHead, hasConfirm, 0)
	outcome, race := OutcomeOf(ev.Verdict, ev.CT, ev.OtherCT, ev.Status)
	if ev.Flags&event.FlagHistory != 0 {
		// A winner's confirm replayed by the kernel (it keeps only normal
		// inserts). Not indexed: --timeline does not see every confirm,
		// so a tuple lookup there would pair with stale entries.
		return
	}
	if !race && r.have&hasClash == 0 {
		// A normal insert: both nodes are now in the hash, and this ct may
		// win a later clash.
		c.queueIndex(s, 1|2)
		if ev.Reply.Dst != ev.Orig.Src || sourceMoved(ev.Orig, ev.Reply) {
			c.sourceNATed(s, r)
		}
		return
	}
	if outcome == OutcomeNATClash {
		// Reply-only insert: its ORIGINAL node is fake.
		c.queueIndex(s, 2)
	}
	if c.window == 0 || c.replayed(r) {
		c.finish(s, r)
		return
	}
	// The window counts from where the stream is, not from the confirm's
	// own time: a confirm record that comes late (its program ran late, or
	// the reader idled and Advance moved the clock past it) comes with the
	// other CPUs' records of its race, which are as late.
	c.wait(r, c.now+c.window)
}
