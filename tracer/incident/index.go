package incident

import (
	"iter"
	"math/bits"
	"math/rand/v2"

	"github.com/ctprobe/ctprobe/tracer/event"
)

// The correlator's two indexes (ct pointer -> current generation, and
// confirmed tuple -> record) are open-addressing hash tables with linear
// probing and backward-shift deletion, of 8-byte entries that hold a
// 32-bit fingerprint of the key's hash and a value naming a record; the
// key itself is compared against the record. Under the steady churn of a
// busy node (every new ct is inserted into both and an old one evicted)
// Go's maps fill with tombstones and their probes grow longer; these stay
// as short as their load allows, are small enough to stay in cache, and
// never allocate after New. Each is sized for at least twice its most
// entries, so an empty entry always ends a probe.

type entry struct {
	fp  uint32 // top 32 bits of the key's hash: fp>>shift is where its probe starts
	val int32  // -1: empty
}

type table struct {
	e     []entry
	mask  uint32
	shift uint8
	n     int
}

func newTable(most int) table {
	size := 16
	for size < 2*most {
		size <<= 1
	}
	t := table{e: make([]entry, size), mask: uint32(size - 1), shift: uint8(32 - bits.TrailingZeros(uint(size)))}
	t.clear()
	return t
}

func (t *table) home(fp uint32) uint32 { return fp >> t.shift }

func (t *table) clear() {
	for i := range t.e {
		t.e[i] = entry{val: -1}
	}
	t.n = 0
}

func (t *table) len() int { return t.n }

// set stores an entry at i, the position find returned for its key.
func (t *table) set(i uint32, fp uint32, val int32) {
	if t.e[i].val < 0 {
		t.n++
	}
	t.e[i] = entry{fp: fp, val: val}
}

// del empties position i and moves later entries of its run back into the
// hole unless their probe starts after it.
func (t *table) del(i uint32) {
	t.n--
	for j := i; ; {
		j = (j + 1) & t.mask
		e := t.e[j]
		if e.val < 0 {
			break
		}
		if between(i, t.home(e.fp), j) {
			continue
		}
		t.e[i] = e
		i = j
	}
	t.e[i] = entry{val: -1}
}

// between: h lies cyclically in (i, j], so the entry at j cannot move to i.
func between(i, h, j uint32) bool {
	if i <= j {
		return i < h && h <= j
	}
	return i < h || h <= j
}

// ---- ct pointer -> slot of the current generation ------------------------

// ctIndex maps a ct pointer to the slot of its current generation; the
// slot's head holds the pointer.
type ctIndex struct{ table }

func newCTIndex(most int) ctIndex { return ctIndex{newTable(most)} }

// ctHash is Fibonacci hashing: the high bits of the product depend on
// every bit of the pointer.
func ctHash(ct uint64) uint32 { return uint32((ct * 0x9e3779b97f4a7c15) >> 32) }

// find returns the position of ct's entry, or of the empty entry that ends
// its probe.
func (x *ctIndex) find(heads []recHead, ct uint64, fp uint32) uint32 {
	for i := x.home(fp); ; i = (i + 1) & x.mask {
		e := x.e[i]
		if e.val < 0 || e.fp == fp && heads[e.val].ct == ct {
			return i
		}
	}
}

func (c *Correlator) ctGet(ct uint64) (int32, bool) {
	v := c.byCT.e[c.byCT.find(c.heads, ct, ctHash(ct))].val
	return v, v >= 0
}

// ctPut makes s, whose head holds ct, the current generation of ct.
func (c *Correlator) ctPut(ct uint64, s int32) {
	fp := ctHash(ct)
	c.byCT.set(c.byCT.find(c.heads, ct, fp), fp, s)
}

func (c *Correlator) ctDel(ct uint64) {
	if i := c.byCT.find(c.heads, ct, ctHash(ct)); c.byCT.e[i].val >= 0 {
		c.byCT.del(i)
	}
}

// all yields every ct pointer and its slot (for tests).
func (c *Correlator) ctAll() iter.Seq2[uint64, int32] {
	return func(yield func(uint64, int32) bool) {
		for _, e := range c.byCT.e {
			if e.val >= 0 && !yield(c.heads[e.val].ct, e.val) {
				return
			}
		}
	}
}

// ---- confirmed tuple -> record --------------------------------------------

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

// tupleIndex maps confirmed tuples (in one netns and zone) to the record
// holding them. An entry's value is slot<<1 | which of the record's confirm
// tuples it is (0 ORIGINAL, 1 REPLY); the key is read back from the record,
// which keeps it unchanged while indexed (the correlator unindexes a record
// before its confirm tuples change).
type tupleIndex struct {
	table
	seed uint64
}

func newTupleIndex(most int) tupleIndex {
	return tupleIndex{table: newTable(most), seed: rand.Uint64() | 1}
}

func tupleVal(s int32, bit uint8) int32 { return s<<1 | int32(bit>>1) }

// hash mixes the key's words (wyhash's multiply-fold), seeded per table so
// that tuples chosen by a remote sender cannot be made to collide, and
// returns its top 32 bits.
func (x *tupleIndex) hash(k *tupleKey) uint32 {
	const p0, p1, p2 = 0xa0761d6478bd642f, 0xe7037ed1a0b428db, 0x8ebc6af09c88c6e3
	s := x.seed
	a := mix(le64(k.src[0:8])^p0^s, le64(k.src[8:16])^p1)
	b := mix(le64(k.dst[0:8])^p2^s, le64(k.dst[8:16])^p0)
	w := uint64(k.sport) | uint64(k.dport)<<16 | uint64(k.zone)<<32 | uint64(k.proto)<<48
	if k.v6 {
		w |= 1 << 56
	}
	c := mix(w^p1^s, uint64(k.netns)^p2)
	return uint32(mix(a^c, b^p0) >> 32)
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// remove deletes the entry of slot s and bit, if there is one; home is
// where its probe starts. A key has one entry and an entry one key, so it
// is found by its identity, without reading keys back.
func (x *tupleIndex) remove(home uint32, s int32, bit uint8) {
	v := tupleVal(s, bit)
	for i := home; ; i = (i + 1) & x.mask {
		switch x.e[i].val {
		case -1:
			return
		case v:
			x.del(i)
			return
		}
	}
}

// The index is read only to find a loser's winner that no event named and
// a flow whose source NAT moved its port, while every confirm of a busy
// node would enter its two tuples and every eviction take them out again,
// each a cache miss in a table of half a megabyte: a third of what an
// --all event cost in the pipeline (Processor/all-ordinary; see
// docs/performance.md). So a confirm queues its record instead
// (queueIndex), and the queue is entered in confirm order before any
// lookup: a lookup finds what it would have found had every confirm
// entered its tuples at once, and a record dropped before the next lookup
// (an --all flow's, almost always) never touches the index.

// queueIndex queues tuples bits (1 ORIGINAL, 2 REPLY) of record s's
// confirm for byTuple, in the netns and zone the record has now. The queue
// holds only records in use, each once, so it never overflows.
func (c *Correlator) queueIndex(s int32, bits uint8) {
	r := &c.heads[s]
	r.idxNetns, r.idxZone = r.netns, r.zone
	at := (c.idxQHead + c.idxQLen) % len(c.idxQ)
	c.idxQ[at] = s
	c.idxQLen++
	r.queued = bits
}

// indexQueued enters every queued record: byTuple is then what it would be
// had each confirm entered its tuples at once.
func (c *Correlator) indexQueued() {
	for c.idxQLen > 0 {
		c.indexOldest()
	}
}

// popQueued takes the oldest record off the queue.
func (c *Correlator) popQueued() int32 {
	s := c.idxQ[c.idxQHead]
	c.idxQHead = (c.idxQHead + 1) % len(c.idxQ)
	c.idxQLen--
	return s
}

// indexOldest enters the oldest queued record in byTuple.
func (c *Correlator) indexOldest() {
	s := c.popQueued()
	r, b := &c.heads[s], &c.bodies[s]
	for i, t := range [2]*event.Tuple{&b.conf.orig, &b.conf.reply} {
		if bit := uint8(1) << i; r.queued&bit != 0 {
			k := keyOf(t, r.idxNetns, r.idxZone)
			fp := c.byTuple.hash(&k)
			c.byTuple.set(c.findTuple(&k, fp), fp, tupleVal(s, bit))
			r.idxHome[i] = c.byTuple.home(fp)
			r.indexed |= bit
		}
	}
	r.queued = 0
}

// unindex takes record s out of byTuple, as if its tuples had been entered
// at its confirm. The oldest queued record with nothing in byTuple just
// leaves the queue: no record confirmed before it holds an entry its
// tuples would have replaced, and had they been entered, its removal would
// have left byTuple as it is now. Any other queued record is entered first,
// with those queued before it, and then removed (an entry it replaces is
// gone when it leaves).
func (c *Correlator) unindex(s int32) {
	r := &c.heads[s]
	if r.queued != 0 {
		if c.idxQ[c.idxQHead] == s && c.byTuple.len() == 0 {
			c.popQueued()
			r.queued = 0
			return
		}
		for r.queued != 0 {
			c.indexOldest()
		}
	}
	for i, bit := range [2]uint8{1, 2} {
		if r.indexed&bit != 0 {
			c.byTuple.remove(r.idxHome[i], s, bit)
		}
	}
	r.indexed = 0
}

// findTuple returns the position in byTuple of key k (fingerprint fp), or
// of the empty entry that ends its probe.
func (c *Correlator) findTuple(k *tupleKey, fp uint32) uint32 {
	x := &c.byTuple
	for i := x.home(fp); ; i = (i + 1) & x.mask {
		e := x.e[i]
		if e.val < 0 || e.fp == fp && c.entryKey(e.val) == *k {
			return i
		}
	}
}

// entryKey reads the key of an index entry's value back from its record.
func (c *Correlator) entryKey(v int32) tupleKey {
	h, b := &c.heads[v>>1], &c.bodies[v>>1]
	t := &b.conf.orig
	if v&1 != 0 {
		t = &b.conf.reply
	}
	return keyOf(t, h.idxNetns, h.idxZone)
}

// lookupTuple returns the record indexed under key k, if any, once the
// queue is entered.
func (c *Correlator) lookupTuple(k *tupleKey) (int32, bool) {
	c.indexQueued()
	v := c.byTuple.e[c.findTuple(k, c.byTuple.hash(k))].val
	return v >> 1, v >= 0
}

// tupleAll yields every entry's slot (for tests).
func (c *Correlator) tupleAll() iter.Seq2[uint8, int32] {
	return func(yield func(uint8, int32) bool) {
		for _, e := range c.byTuple.e {
			if e.val >= 0 && !yield(uint8(e.val&1)+1, e.val>>1) {
				return
			}
		}
	}
}
