package incident

import (
	"unsafe"

	"github.com/ctprobe/ctprobe/tracer/event"
)

// The record store: a fixed pool of per-ct records, one per generation of
// a ct pointer, found through byCT and kept in an LRU list. Records are
// allocated at a ct's first event and dropped when evicted (MaxCTs), expired
// (MaxAge), released after their loser's incident, or flushed.

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
	time   uint64
	cpu    uint32
	winner uint64
	dir    uint8
	// lookup: found by the in-kernel tuple lookup (event.FlagLookup), whose
	// dir names which of the loser's tuples matched, not W's node.
	lookup      bool
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
// body, which the events fill. A pending incident's copy of a record is a
// rec too.
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
	queued       uint8 // the same bits, waiting in the index queue (queueIndex)
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

// clashOpen: the record has a clash and no confirm yet, an incident in the
// making (Quiet).
func (h *recHead) clashOpen() bool { return h.have&hasClash != 0 && h.have&hasConfirm == 0 }

// setHave changes h's have bits, keeping the count of open clashes: Quiet
// reads it for every record a rotating capture writes once it is due, so
// it must not walk the records.
func (c *Correlator) setHave(h *recHead, set, clear uint16) {
	was := h.clashOpen()
	h.have = h.have&^clear | set
	switch is := h.clashOpen(); {
	case is && !was:
		c.openClashes++
	case was && !is:
		c.openClashes--
	}
}

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

// touch loads what filing an event of ct reads from memory, all at once:
// the index entry of ct and the record it names, and, when the pool is
// full, the record to evict (its head, links, index entries and body, which
// the new record reuses). Each would otherwise be loaded when the code gets
// to it, one cache miss after the other: on a busy node these tables are
// megabytes, and every new flow's events evict the oldest flow.
func (c *Correlator) touch(ct uint64) uint64 {
	e := c.byCT.e[c.byCT.home(ctHash(ct))]
	x := uint64(e.val)
	if e.val >= 0 {
		x ^= c.heads[e.val].ct
	}
	if len(c.free) > 0 || c.head < 0 {
		return x
	}
	old := &c.heads[c.head]
	x ^= c.bodies[c.head].warm()
	x ^= uint64(c.byCT.e[c.byCT.home(ctHash(old.ct))].val)
	for i, bit := range [2]uint8{1, 2} {
		if old.indexed&bit != 0 {
			x ^= uint64(c.byTuple.e[old.idxHome[i]].val)
		}
	}
	if next := c.lru[c.head].next; next >= 0 {
		x ^= uint64(c.lru[next].prev)
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
	c.setHave(r, 0, r.have)
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
	if r.clashOpen() {
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
