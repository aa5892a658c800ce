package incident

import (
	"time"
	"unsafe"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
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
	// ReorderWindow is how long, after a loser's confirm, an incident waits
	// for events of other CPUs that arrive late (--all mode). Incidents whose
	// evidence the kernel sent together (--timeline, the default mode)
	// never wait.
	// Negative: never wait.
	ReorderWindow time.Duration
	// MaxPending bounds the incidents waiting out ReorderWindow; when full,
	// the oldest is completed at once. Each holds a copy of the loser's
	// record (about 1 KiB), so that eviction cannot lose it.
	MaxPending int
}

// Stats counts what the correlator did.
type Stats struct {
	Events    uint64 // events passed to Add
	Incidents uint64 // incidents returned
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
	heads          []recHead // by slot: what every event and eviction reads
	bodies         []recBody // by slot: what the events said
	lru            []lruNode // by slot
	free           []int32
	byCT           ctIndex    // ct pointer -> current generation
	byTuple        tupleIndex // confirmed tuples -> record (winner lookup)
	head, tail     int32      // LRU list of records in use, head oldest
	pend           []pending  // ring of incidents waiting for late events
	pendHead       int
	pendLen        int
	now            uint64 // newest event time seen
	out            []Incident
	stats          Stats
	warmSink       uint64 // see alloc
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
		maxAge:  uint64(opts.MaxAge),
		window:  uint64(max(opts.ReorderWindow, 0)),
		heads:   make([]recHead, opts.MaxCTs),
		bodies:  make([]recBody, opts.MaxCTs),
		lru:     make([]lruNode, opts.MaxCTs),
		free:    make([]int32, opts.MaxCTs),
		byCT:    newCTIndex(opts.MaxCTs),
		byTuple: newTupleIndex(2 * opts.MaxCTs),
		head:    -1,
		tail:    -1,
		pend:    make([]pending, opts.MaxPending),
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
	return c.take()
}

// Advance tells the correlator that kernel time reached now (for example
// when the event stream is idle), so that waiting incidents complete and
// idle records expire.
func (c *Correlator) Advance(now uint64) []Incident {
	if now > c.now {
		c.now = now
	}
	c.due()
	c.expire()
	return c.take()
}

// Flush ends the stream: it completes every waiting incident, reports
// clashes whose confirm never arrived, and forgets all state.
func (c *Correlator) Flush() []Incident {
	for c.pendLen > 0 {
		c.finishOldest()
	}
	// Orphans first, while their winners are still there.
	for s := c.head; s >= 0; s = c.lru[s].next {
		if r := &c.heads[s]; r.have&hasClash != 0 && r.have&hasConfirm == 0 {
			c.emit(c.orphan(s))
			r.have &^= hasClash
		}
	}
	for c.head >= 0 {
		c.drop(c.head, nil)
	}
	return c.take()
}

func (c *Correlator) take() []Incident {
	out := c.out
	c.out = nil
	return out
}

// ---- per-ct records ----------------------------------------------------

const (
	hasIn uint16 = 1 << iota
	hasNATSrc
	hasNATDst
	hasClash
	hasConfirm
	hasOrig
	hasHistory // some event came from the kernel's replay (FlagHistory)
)

type inRec struct {
	cpu        uint32
	pid, tid   uint32
	comm       [16]byte
	hook       uint8
	flags      event.Flags
	sock       event.Socket
	reply      event.Tuple // REPLY before NAT
	payload    [64]byte
	payloadLen uint16
}

type natRec struct {
	time          uint64
	cpu           uint32
	flags         event.Flags
	before, after event.Tuple // REPLY direction (get_unique_tuple's are inverted)
	rng           event.NATRange
}

type clashRec struct {
	time        uint64
	cpu         uint32
	winner      uint64
	dir         uint8
	orig, reply event.Tuple // the winner's
}

type confRec struct {
	cpu         uint32
	pid, tid    uint32
	comm        [16]byte
	flags       event.Flags
	verdict     uint32
	other       uint64
	status      uint64
	sock        event.Socket
	orig, reply event.Tuple // the ct's at confirm entry (after NAT)
	// The default mode's loser record carries the DNS message that CT_IN
	// carries otherwise.
	payload    [64]byte
	payloadLen uint16
}

// rec is one generation of one ct pointer: its head, which every event and
// every eviction reads (64 bytes, in a compact array of its own, so that
// finding a generation or evicting one touches one cache line), and its
// body, which the events fill. A pending incident's snapshot is a rec too.
type rec struct {
	*recHead
	*recBody
}

func (c *Correlator) at(s int32) rec { return rec{&c.heads[s], &c.bodies[s]} }

type recHead struct {
	ct           uint64
	first        uint64 // earliest event time of this generation
	inTime       uint64 // the CT_IN (with hasIn)
	confTime     uint64 // the confirm (with hasConfirm)
	netns        uint32
	idxNetns     uint32    // zone and netns the index entries were made with
	older, newer int32     // generation links (same ct pointer)
	idxHome      [2]uint32 // where the index entries' probes start, by bit
	have         uint16
	zone         uint16
	idxZone      uint16
	indexed      uint8 // 1: orig in byTuple, 2: reply in byTuple
}

// recBody holds the events. Each part (orig, in, nat, clash, conf) is valid
// only while its have bit is set, and is written whole when the bit is set,
// so a reused record's body needs no clearing.
type recBody struct {
	in    inRec
	orig  event.Tuple
	nat   [2]natRec // by manip type
	clash clashRec
	conf  confRec
}

func (h *recHead) reset() { *h = recHead{older: -1, newer: -1} }

// warm loads a word of each cache line of the body. A record is allocated
// when a ct is born, mostly in the place of the least recently used one, so
// its body is the coldest memory there is; the events of the new ct then
// fill the body in over a few microseconds, and each store would wait for
// its line in turn. Loads go out together, and by then the lines are in.
// This made decode+correlate about 15% faster on the busy-node benchmark.
func (b *recBody) warm() uint64 {
	p := unsafe.Pointer(b)
	x := *(*uint64)(unsafe.Add(p, unsafe.Sizeof(*b)-8))
	for off := uintptr(0); off < unsafe.Sizeof(*b); off += 64 {
		x ^= *(*uint64)(unsafe.Add(p, off))
	}
	return x
}

// lruNode links a record into the LRU list. The links live apart from the
// records: moving a record to the tail touches its neighbours' links, not
// their kilobyte records.
type lruNode struct {
	prev, next int32
	touched    uint64 // c.now when an event last touched the record
}

// fits: an event of kind at time t (birth: a CT_IN with FlagNew) belongs
// to this generation. Nothing precedes a birth, nothing follows the
// confirm, and a ct is confirmed once (a replay repeats the same one).
func (r *recHead) fits(t uint64, kind event.Kind) bool {
	if r.have&hasConfirm != 0 && (t > r.confTime || kind == event.Confirm && t != r.confTime) {
		return false
	}
	if kind == event.CTIn {
		if r.have&hasIn != 0 {
			return t == r.inTime
		}
		return t <= r.first
	}
	return r.have&hasIn == 0 || t >= r.inTime
}

// later: an event at t that does not fit comes from a later generation.
func (r *recHead) later(t uint64) bool {
	if r.have&hasConfirm != 0 {
		return t > r.confTime
	}
	return t > r.first
}

// gen returns the record an event of kind for ct at time t belongs to,
// making one if needed, or -1 when the event fits no generation.
func (c *Correlator) gen(ct, t uint64, kind event.Kind) int32 {
	if len(c.free) == 0 {
		c.evict(c.head)
	}
	s, ok := c.ctGet(ct)
	if !ok {
		n := c.alloc(ct, t)
		c.ctPut(ct, n)
		return c.use(n, t)
	}
	r := &c.heads[s]
	if r.fits(t, kind) {
		return c.use(s, t)
	}
	if o := r.older; o >= 0 && c.heads[o].fits(t, kind) {
		return c.use(o, t)
	}
	if r.later(t) {
		// The pointer was reused: a new generation. Keep one older.
		if r.older >= 0 {
			c.drop(r.older, nil)
		}
		n := c.alloc(ct, t)
		c.heads[n].older = s
		r.newer = n
		c.ctPut(ct, n)
		return c.use(n, t)
	}
	if t < r.first && r.older < 0 {
		// A late event of an earlier generation not seen so far.
		n := c.alloc(ct, t)
		c.heads[n].newer = s
		r.older = n
		return c.use(n, t)
	}
	c.stats.Stale++
	return -1
}

func (c *Correlator) use(s int32, t uint64) int32 {
	r := &c.heads[s]
	if t < r.first {
		r.first = t
	}
	c.lru[s].touched = c.now
	if c.tail != s {
		c.unlink(s)
		c.pushTail(s)
	}
	return s
}

func (c *Correlator) alloc(ct, t uint64) int32 {
	n := c.free[len(c.free)-1]
	c.free = c.free[:len(c.free)-1]
	// The value is compared only so that the compiler keeps the loads.
	if c.bodies[n].warm() == 0x5bd1e9955bd1e995 {
		c.warmSink++
	}
	r := &c.heads[n]
	r.ct = ct
	r.first = t
	c.pushTail(n)
	return n
}

func (c *Correlator) pushTail(s int32) {
	r := &c.lru[s]
	r.prev, r.next = c.tail, -1
	if c.tail >= 0 {
		c.lru[c.tail].next = s
	} else {
		c.head = s
	}
	c.tail = s
}

func (c *Correlator) unlink(s int32) {
	r := &c.lru[s]
	if r.prev >= 0 {
		c.lru[r.prev].next = r.next
	} else if c.head == s {
		c.head = r.next
	}
	if r.next >= 0 {
		c.lru[r.next].prev = r.prev
	} else if c.tail == s {
		c.tail = r.prev
	}
	r.prev, r.next = -1, -1
}

// release frees a record (and, for a current generation, the older one).
func (c *Correlator) release(s int32) {
	r := &c.heads[s]
	if r.older >= 0 {
		c.drop(r.older, nil) // unlinks itself from r
	}
	if r.newer >= 0 {
		c.heads[r.newer].older = -1
	} else if cur, ok := c.ctGet(r.ct); ok && cur == s {
		c.ctDel(r.ct)
	}
	c.unindex(s)
	c.unlink(s)
	r.reset()
	c.free = append(c.free, s)
}

// drop removes a record that leaves without an incident of its own
// (evicted, expired, flushed); a clash whose confirm never came is still
// reported. counter, if not nil, counts it.
func (c *Correlator) drop(s int32, counter *uint64) {
	r := &c.heads[s]
	if r.older >= 0 {
		c.drop(r.older, counter)
	}
	if r.have&hasClash != 0 && r.have&hasConfirm == 0 {
		c.emit(c.orphan(s))
	}
	if counter != nil {
		*counter++
	}
	c.release(s)
}

func (c *Correlator) evict(s int32) {
	if s >= 0 {
		c.drop(s, &c.stats.Evicted)
	}
}

func (c *Correlator) expire() {
	for c.head >= 0 && c.lru[c.head].touched+c.maxAge < c.now {
		c.drop(c.head, &c.stats.Expired)
	}
}

// ---- confirmed-tuple index (winner lookup without nf_ct_resolve_clash) --

// tupleKey is a tuple in one netns and zone: what byTuple is keyed by.
type tupleKey struct {
	src, dst     [16]byte
	sport, dport uint16
	netns        uint32
	zone         uint16
	proto        uint8
	v6           bool
}

func keyOf(t *event.Tuple, netns uint32, zone uint16) tupleKey {
	return tupleKey{
		src: t.Src.As16(), dst: t.Dst.As16(), sport: t.SrcPort, dport: t.DstPort,
		netns: netns, zone: zone, proto: t.Proto, v6: t.Src.Is6(),
	}
}

func (c *Correlator) index(s int32, bit uint8, t *event.Tuple) {
	r := &c.heads[s]
	if r.indexed == 0 {
		r.idxNetns, r.idxZone = r.netns, r.zone
	}
	k := keyOf(t, r.idxNetns, r.idxZone)
	fp := c.byTuple.hash(&k)
	c.byTuple.set(c.findTuple(&k, fp), fp, tupleVal(s, bit))
	r.idxHome[bit>>1] = c.byTuple.home(fp)
	r.indexed |= bit
}

// unindex removes the entries that still name record s.
func (c *Correlator) unindex(s int32) {
	r := &c.heads[s]
	for i, bit := range [2]uint8{1, 2} {
		if r.indexed&bit != 0 {
			c.byTuple.remove(r.idxHome[i], s, bit)
		}
	}
	r.indexed = 0
}

// lookupWinner finds a confirmed entry, other than loser l, that held one of
// l's tuples when l was confirmed (kernel-facts §4.2: the W-candidate maps).
// An entry matched through l's ORIGINAL tuple, or whose ORIGINAL is l's
// REPLY, must have been confirmed after l was born: had it been in the
// table before, nf_conntrack_in would have attached l's packet to it.
func (c *Correlator) lookupWinner(l rec) int32 {
	for i, tp := range [2]*event.Tuple{&l.conf.orig, &l.conf.reply} {
		k := keyOf(tp, l.netns, l.zone)
		s, ok := c.lookupTuple(&k)
		if !ok {
			continue
		}
		w := c.at(s)
		if w.ct == l.ct || w.have&hasConfirm == 0 || w.confTime > l.confTime {
			continue
		}
		replyToReply := i == 1 && w.conf.reply == *tp
		if !replyToReply && l.have&hasIn != 0 && w.confTime < l.inTime {
			continue
		}
		return s
	}
	return -1
}

// ---- events ------------------------------------------------------------

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
	r.clash = clashRec{time: ev.Time, cpu: ev.CPU, winner: ev.OtherCT, dir: ev.Aux & 1, orig: ev.Orig, reply: ev.Reply}
	r.have |= hasClash
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
	r.have |= hasConfirm
	outcome, race := OutcomeOf(ev.Verdict, ev.CT, ev.OtherCT, ev.Status)
	if ev.Flags&event.FlagHistory != 0 {
		// A winner's confirm replayed by the kernel (it keeps only normal
		// inserts). Not indexed: --timeline does not see every confirm,
		// so a tuple lookup there would pair with stale entries.
		return
	}
	if !race && r.have&hasClash == 0 {
		// A normal insert: both nodes are now in the hash, and this ct may
		// win a later clash. (The keys are made from the event's tuples,
		// which r.conf now holds too: they are in cache, r.conf may not be.)
		c.index(s, 1, &ev.Orig)
		c.index(s, 2, &ev.Reply)
		return
	}
	if outcome == OutcomeNATClash {
		// Reply-only insert: its ORIGINAL node is fake.
		c.index(s, 2, &ev.Reply)
	}
	if c.window == 0 || c.replayed(r) {
		c.finish(s, r)
		return
	}
	if c.pendLen == len(c.pend) {
		c.finishOldest()
	}
	p := &c.pend[(c.pendHead+c.pendLen)%len(c.pend)]
	p.deadline = ev.Time + c.window
	p.head, p.body = *r.recHead, *r.recBody
	c.pendLen++
}

// replayed: the kernel replayed this clash's history (--timeline) or sent
// the clash with it (the default mode), so every event of it was written
// before the loser's confirm.
func (c *Correlator) replayed(r rec) bool {
	if r.have&hasHistory != 0 {
		return true
	}
	w := r.conf.other
	if r.have&hasClash != 0 {
		w = r.clash.winner
	}
	if s, ok := c.ctGet(w); ok && w != r.ct {
		return c.heads[s].have&hasHistory != 0
	}
	return false
}

// ---- incidents ---------------------------------------------------------

// pending is a loser's confirm whose incident waits for late events. snap
// is the loser's record at its confirm, used if the record is gone by then.
type pending struct {
	deadline uint64
	head     recHead
	body     recBody
}

func (c *Correlator) due() {
	for c.pendLen > 0 && c.pend[c.pendHead].deadline <= c.now {
		c.finishOldest()
	}
}

func (c *Correlator) finishOldest() {
	p := &c.pend[c.pendHead]
	c.pendHead = (c.pendHead + 1) % len(c.pend)
	c.pendLen--
	ls := c.find(p.head.ct, p.head.confTime)
	if ls >= 0 {
		c.finish(ls, c.at(ls))
	} else {
		c.finish(-1, rec{&p.head, &p.body})
	}
}

func (c *Correlator) emit(inc Incident) {
	c.stats.Incidents++
	if inc.Race == RaceUnknown {
		c.stats.Unknown++
	}
	c.out = append(c.out, inc)
}

// find returns the generation of ct whose confirm happened at t.
func (c *Correlator) find(ct, t uint64) int32 {
	s, ok := c.ctGet(ct)
	for ok && s >= 0 {
		r := &c.heads[s]
		if r.have&hasConfirm != 0 && r.confTime == t {
			return s
		}
		s = r.older
	}
	return -1
}

// alive returns the generation of ct that existed at time t, preferring
// one that was confirmed by then. A generation first seen at its insert
// (--all) counts up to a reorder window after t: that record is written
// at confirm's exit, which can run after its loser's confirm returned on
// another CPU (softirqs run at the winner's local_bh_enable).
func (c *Correlator) alive(ct, t uint64) int32 {
	s, ok := c.ctGet(ct)
	best := int32(-1)
	for ok && s >= 0 {
		r := &c.heads[s]
		born := r.first
		if r.have&hasIn != 0 {
			born = r.inTime
		}
		if born <= t || r.have&(hasIn|hasConfirm) == hasConfirm && born <= t+c.window {
			if r.have&hasConfirm != 0 && r.confTime <= t {
				return s
			}
			if best < 0 {
				best = s
			}
		}
		s = r.older
	}
	return best
}

// finish builds the incident of loser l's confirm (record ls, or -1 for a
// snapshot) and forgets a loser that died.
func (c *Correlator) finish(ls int32, l rec) {
	inc := Incident{Time: l.confTime, ClashDir: -1}
	e := Evidence{
		HaveConfirm: true, Verdict: l.conf.verdict, CT: l.ct, OtherCT: l.conf.other,
		Status: l.conf.status, OL: l.conf.orig, RL: l.conf.reply, ClashDir: -1,
	}
	if l.have&hasNATSrc != 0 {
		n := &l.nat[event.ManipSrc]
		e.LSrcNAT = NATStep{Seen: true, Time: n.time, Before: n.before, After: n.after, Range: n.rng}
	}
	outcome, _ := OutcomeOf(l.conf.verdict, l.ct, l.conf.other, l.conf.status)
	ws := int32(-1)
	switch {
	case outcome == OutcomeMerged:
		e.W, e.WFrom = l.conf.other, "the merge"
	case l.have&hasClash != 0:
		e.W, e.WFrom = l.clash.winner, "nf_ct_resolve_clash"
	default:
		if ws = c.lookupWinner(l); ws >= 0 {
			e.W, e.WFrom = c.heads[ws].ct, "a confirmed entry with the loser's tuple (no nf_ct_resolve_clash event)"
		}
	}
	if l.have&hasClash != 0 {
		e.ClashDir, e.ClashWinner = int(l.clash.dir), l.clash.winner
		inc.ClashDir = e.ClashDir
	}
	if e.W != 0 && ws < 0 {
		ws = c.alive(e.W, l.confTime)
	}
	ws = c.checkWinner(&e, l, ws)
	c.winnerTuples(&e, l, ws)

	res := Classify(&e)
	inc.Race, inc.Outcome, inc.Reason = res.Race, res.Outcome, res.Reason
	c.packet(l, &inc.Loser)
	c.winnerPacket(&inc, &e, l, ws)
	c.emit(inc)
	if ls >= 0 && (outcome == OutcomeDropped || outcome == OutcomeMerged) {
		// The loser is freed with its skb: nothing more will come for it.
		c.release(ls)
	}
}

// checkWinner drops a winner record that cannot be W: the clash event read
// W's ORIGINAL tuple from the kernel, and a record of another ORIGINAL is
// an earlier ct at the same address (with --timeline the kernel's history
// of a pointer survives the ct it described).
func (c *Correlator) checkWinner(e *Evidence, l rec, ws int32) int32 {
	if ws < 0 || l.have&hasClash == 0 || l.clash.winner != e.W {
		return ws
	}
	if w := c.at(ws); w.have&hasOrig != 0 && w.orig != l.clash.orig {
		e.WStale = true
		return -1
	}
	return ws
}

// winnerTuples fills W's tuples from the best source: the clash event (read
// at clash time), W's own confirm, or W's SRC NAT binding (the last one).
func (c *Correlator) winnerTuples(e *Evidence, l rec, ws int32) {
	if e.W == 0 {
		return
	}
	if l.have&hasClash != 0 && l.clash.winner == e.W {
		e.OW, e.RW, e.WTuples = l.clash.orig, l.clash.reply, true
	}
	if ws < 0 {
		return
	}
	w := c.at(ws)
	if w.have&hasConfirm != 0 {
		e.WConfirmed = w.confTime
		if !e.WTuples && w.conf.verdict == event.VerdictAccept {
			e.OW, e.RW, e.WTuples = w.conf.orig, w.conf.reply, true
		}
	}
	if !e.WTuples && w.have&(hasOrig|hasNATSrc) == hasOrig|hasNATSrc {
		e.OW, e.RW, e.WTuples = w.orig, w.nat[event.ManipSrc].after, true
	}
}

func (c *Correlator) winnerPacket(inc *Incident, e *Evidence, l rec, ws int32) {
	if e.W == 0 {
		return
	}
	inc.HasWinner = true
	if ws >= 0 {
		c.packet(c.at(ws), &inc.Winner)
	} else {
		inc.Winner.CT = e.W
		inc.Winner.Netns, inc.Winner.Zone = l.netns, l.zone
	}
	if e.WTuples {
		inc.Winner.Orig, inc.Winner.Reply = e.OW, e.RW
		if !inc.Winner.ReplyPre.Src.IsValid() {
			inc.Winner.ReplyPre = invert(e.OW)
		}
		inc.Winner.NATChange = inc.Winner.Reply != inc.Winner.ReplyPre
		inc.Winner.PortMoved = sourceMoved(e.OW, e.RW)
		if ws < 0 && e.OW == inc.Loser.Orig && inc.Loser.HasSock {
			// One ORIGINAL tuple in one netns is one source address and
			// port: the loser's socket (barring SO_REUSEPORT). Which task
			// sent the winner is not known without its history.
			inc.Winner.Sock, inc.Winner.HasSock = inc.Loser.Sock, true
		}
	}
	if inc.Loser.Born != 0 && inc.Winner.Born != 0 {
		inc.Window = absDiff(inc.Loser.Born, inc.Winner.Born)
	}
}

// orphan is the incident of a clash whose loser's confirm never arrived.
func (c *Correlator) orphan(s int32) Incident {
	l := c.at(s)
	inc := Incident{Time: l.clash.time, ClashDir: int(l.clash.dir)}
	e := Evidence{
		CT: l.ct, ClashDir: int(l.clash.dir), ClashWinner: l.clash.winner,
		W: l.clash.winner, WTuples: true, OW: l.clash.orig, RW: l.clash.reply, WFrom: "nf_ct_resolve_clash",
	}
	if l.have&hasOrig != 0 {
		e.OL = l.orig
	}
	if l.have&hasNATSrc != 0 {
		e.RL = l.nat[event.ManipSrc].after
	}
	res := Classify(&e)
	inc.Race, inc.Outcome, inc.Reason = res.Race, res.Outcome, res.Reason
	c.packet(l, &inc.Loser)
	ws := c.alive(e.W, l.clash.time)
	if ws == s {
		ws = -1
	}
	ws = c.checkWinner(&e, l, ws)
	c.winnerPacket(&inc, &e, l, ws)
	return inc
}

// packet fills one side of an incident from its record.
func (c *Correlator) packet(r rec, p *Packet) {
	p.CT = r.ct
	p.Netns, p.Zone = r.netns, r.zone
	if r.have&hasOrig != 0 {
		p.Orig = r.orig
	}
	switch {
	case r.have&hasIn != 0:
		in := &r.in
		p.Comm, p.PID, p.TID, p.CPU = event.CommName(&in.comm), in.pid, in.tid, in.cpu
		p.Task = in.flags&event.FlagOrigin != 0 || in.hook == event.HookLocalOut && in.flags&event.FlagSoftirqKey == 0
		p.Sock, p.HasSock = in.sock, in.flags&event.FlagSock != 0
		p.Born = r.inTime
		p.ReplyPre = in.reply
		if in.payloadLen > 0 {
			p.DNS = dnsQuery(in.payload[:min(int(in.payloadLen), len(in.payload))])
		}
	case r.have&hasConfirm != 0:
		// The default mode: confirm (or the clash probe standing in for it)
		// runs in the sender's context when the skb was made here.
		cf := &r.conf
		p.Comm, p.PID, p.TID, p.CPU = event.CommName(&cf.comm), cf.pid, cf.tid, cf.cpu
		p.Task = cf.flags&event.FlagLocal != 0 && cf.flags&event.FlagSock != 0 && cf.flags&event.FlagSoftirqKey == 0
		if cf.payloadLen > 0 {
			p.DNS = dnsQuery(cf.payload[:min(int(cf.payloadLen), len(cf.payload))])
		}
	}
	if !p.HasSock && r.have&hasConfirm != 0 && r.conf.flags&event.FlagSock != 0 {
		p.Sock, p.HasSock = r.conf.sock, true
	}
	switch {
	case r.have&hasConfirm != 0:
		p.Reply = r.conf.reply
	case r.have&hasNATSrc != 0:
		p.Reply = r.nat[event.ManipSrc].after
	case r.have&hasNATDst != 0:
		p.Reply = r.nat[event.ManipDst].after
	case r.have&hasIn != 0:
		p.Reply = r.in.reply
	}
	if !p.ReplyPre.Src.IsValid() && r.have&hasOrig != 0 {
		p.ReplyPre = invert(r.orig)
	}
	if p.Reply.Src.IsValid() {
		p.NATChange = p.Reply != p.ReplyPre
		p.PortMoved = r.have&hasOrig != 0 && sourceMoved(r.orig, p.Reply)
	}
	p.Timeline = timeline(r)
}

func timeline(r rec) []Stage {
	st := make([]Stage, 0, 5)
	if r.have&hasIn != 0 {
		st = append(st, Stage{Kind: event.CTIn, Time: r.inTime, CPU: r.in.cpu, Hook: r.in.hook, Manip: -1, Before: r.orig, After: r.in.reply})
	}
	for m := range r.nat {
		if r.have&(hasNATSrc<<m) == 0 {
			continue
		}
		n := &r.nat[m]
		st = append(st, Stage{Kind: event.NAT, Time: n.time, CPU: n.cpu, Hook: event.HookNone, Manip: m,
			Change: n.flags&event.FlagNATChanged != 0 || n.before != n.after, Before: n.before, After: n.after})
	}
	if r.have&hasClash != 0 {
		st = append(st, Stage{Kind: event.Clash, Time: r.clash.time, CPU: r.clash.cpu, Hook: event.HookNone, Manip: -1, Before: r.clash.orig, After: r.clash.reply})
	}
	if r.have&hasConfirm != 0 {
		st = append(st, Stage{Kind: event.Confirm, Time: r.confTime, CPU: r.conf.cpu, Hook: event.HookNone, Manip: -1, Before: r.conf.orig, After: r.conf.reply, Result: r.conf.verdict})
	}
	// Replays come in manip order, not time order: sort (at most 5).
	for i := 1; i < len(st); i++ {
		for j := i; j > 0 && st[j].Time < st[j-1].Time; j-- {
			st[j], st[j-1] = st[j-1], st[j]
		}
	}
	return st
}

func dnsQuery(b []byte) DNSQuery {
	q, err := dnsmsg.Parse(b)
	if err != nil {
		return DNSQuery{}
	}
	return DNSQuery{ID: q.ID, Type: q.Type, Name: q.Name, Valid: true, Response: q.Response, Truncated: q.Truncated}
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
