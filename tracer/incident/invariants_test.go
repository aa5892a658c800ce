package incident

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/tracer/event"
)

// consistent checks the correlator's internal links: the LRU list holds
// exactly the records in use, byCT points at current generations, the
// generation links are symmetric, and every index entry names a live
// record that indexed it and is found by a lookup of its key.
func consistent(t *testing.T, c *Correlator) {
	t.Helper()
	inUse := len(c.heads) - len(c.free)
	n := 0
	prev := int32(-1)
	onList := make(map[int32]bool)
	for s := c.head; s >= 0; s = c.lru[s].next {
		if c.lru[s].prev != prev {
			t.Fatalf("LRU prev link broken at %d", s)
		}
		if onList[s] {
			t.Fatalf("LRU loop at %d", s)
		}
		onList[s] = true
		prev = s
		n++
	}
	if prev != c.tail || n != inUse {
		t.Fatalf("LRU has %d records, %d in use (tail %d, last %d)", n, inUse, c.tail, prev)
	}
	for _, f := range c.free {
		if onList[f] {
			t.Fatalf("slot %d both free and in use", f)
		}
	}
	for ct, s := range c.ctAll() {
		r := &c.heads[s]
		if !onList[s] || r.ct != ct || r.newer != -1 {
			t.Fatalf("byCT[%#x] = %d: ct %#x newer %d listed %v", ct, s, r.ct, r.newer, onList[s])
		}
		if o := r.older; o >= 0 && (!onList[o] || c.heads[o].newer != s || c.heads[o].ct != ct || c.heads[o].older != -1) {
			t.Fatalf("older generation of %#x broken", ct)
		}
	}
	current, open := 0, 0
	for s := range onList {
		r := &c.heads[s]
		if r.clashOpen() {
			open++
		}
		if r.newer >= 0 && c.heads[r.newer].older != s {
			t.Fatalf("newer link of %d broken", s)
		}
		if r.newer < 0 {
			current++
			if cur, ok := c.ctGet(r.ct); !ok || cur != s {
				t.Fatalf("current generation %d of %#x not in byCT", s, r.ct)
			}
		}
	}
	if open != c.openClashes {
		t.Fatalf("%d records have a clash and no confirm, counted %d", open, c.openClashes)
	}
	if c.byCT.len() != current {
		t.Fatalf("byCT has %d entries for %d current generations", c.byCT.len(), current)
	}
	for bit, s := range c.tupleAll() {
		if !onList[s] || c.heads[s].indexed&bit == 0 {
			t.Fatalf("index entry for slot %d that did not index", s)
		}
		// Every entry is where a lookup of its key finds it (without
		// entering the queue, which lookupTuple does).
		k := c.entryKey(tupleVal(s, bit))
		if got := c.byTuple.e[c.findTuple(&k, c.byTuple.hash(&k))].val >> 1; got != s {
			t.Fatalf("index entry %d/%d: its key finds %d", s, bit, got)
		}
	}
	// The queue holds each queued record once, and only records in use
	// that are not indexed.
	queued := 0
	seen := make(map[int32]bool)
	for i := range c.idxQLen {
		s := c.idxQ[(c.idxQHead+i)%len(c.idxQ)]
		if r := &c.heads[s]; !onList[s] || seen[s] || r.queued == 0 || r.indexed != 0 {
			t.Fatalf("queue place %d: slot %d queued %d indexed %d, twice %v", i, s, r.queued, r.indexed, seen[s])
		}
		seen[s] = true
		queued++
	}
	for s := range onList {
		if c.heads[s].queued != 0 {
			queued--
		}
	}
	if queued != 0 {
		t.Fatalf("%d more queue entries than queued records", queued)
	}
	if c.byTuple.len() > 2*inUse {
		t.Fatalf("index %d entries for %d records", c.byTuple.len(), inUse)
	}
}

// randomStream is a stream of plausible and implausible events of 40 ct
// pointers, and how many of them are race confirms.
func randomStream(seed uint64, n int) (evs []event.Event, races int) {
	w, l := glibcPair(0, 0, endpoint1, endpoint2)
	rng := rand.New(rand.NewPCG(seed, 42))
	now := uint64(1000)
	for range n {
		// Time mostly moves forward, sometimes back (other CPUs, replays).
		now += uint64(rng.IntN(100))
		ts := now
		if rng.IntN(8) == 0 {
			ts -= min(ts, uint64(rng.IntN(5000)))
		}
		f := w
		if rng.IntN(2) == 0 {
			f = l
		}
		f.ct = 0xffff888700000000 + uint64(rng.IntN(40))*0x140
		other := 0xffff888700000000 + uint64(rng.IntN(40))*0x140
		var ev event.Event
		switch rng.IntN(7) {
		case 0, 1:
			ev = f.in(ts)
		case 2:
			ev = f.natDst(ts)
		case 3:
			ev = f.natSrc(ts)
		case 4:
			ev = clash(ts, f, &flow{ct: other, orig: w.orig, dnat: w.dnat}, uint8(rng.IntN(2)))
		case 5:
			switch rng.IntN(4) {
			case 0:
				ev = f.inserted(ts)
			case 1:
				ev = f.dropped(ts)
			case 2:
				ev = f.confirm(ts, 1, other, w.status())
			case 3:
				ev = f.natClash(ts)
			}
		case 6:
			ev = f.established(ts)
		}
		if rng.IntN(4) == 0 {
			ev.Flags |= event.FlagHistory
			if rng.IntN(2) == 0 {
				ev.Flags |= event.FlagWinner
			}
		}
		if _, race := OutcomeOf(ev.Verdict, ev.CT, ev.OtherCT, ev.Status); ev.Kind == event.Confirm && race && ev.Flags&event.FlagHistory == 0 {
			races++
		}
		evs = append(evs, ev)
	}
	return evs, races
}

// Random streams: nothing panics, the bounds hold, the links stay
// consistent, and every race confirm yields exactly one incident.
func TestRandomStreams(t *testing.T) {
	for seed := range uint64(30) {
		evs, races := randomStream(seed, 20_000)
		c := New(Options{MaxCTs: 64, MaxPending: 4, MaxAge: 50_000, ReorderWindow: time20k(seed)})
		var incidents int
		for i := range evs {
			incidents += len(c.Add(&evs[i]))
			if i%97 == 0 {
				consistent(t, c)
			}
			if st := c.Stats(); st.Tracked > 64 || st.Pending > 4 {
				t.Fatalf("seed %d: stats %+v", seed, st)
			}
		}
		incidents += len(c.Flush())
		consistent(t, c)
		st := c.Stats()
		if st.Tracked != 0 || c.byCT.len() != 0 || c.byTuple.len() != 0 || c.idxQLen != 0 {
			t.Fatalf("seed %d: state left after flush: %+v", seed, st)
		}
		// Every race confirm that found its generation gives one incident;
		// clashes without a confirm may add orphans.
		if incidents < races-int(st.Stale) {
			t.Fatalf("seed %d: %d incidents for %d race confirms (%d stale)", seed, incidents, races, st.Stale)
		}
	}
}

// The index queue changes no result: a correlator that enters every
// confirm's tuples at once (the queue entered after each event) finds the
// same winners, and so returns the same incidents and findings, event for
// event, as one that enters them only when a lookup needs them.
func TestIndexQueueChangesNoResult(t *testing.T) {
	entered := 0
	for seed := range uint64(30) {
		evs, _ := randomStream(seed, 20_000)
		opts := Options{MaxCTs: 64, MaxPending: 4, MaxAge: 50_000, ReorderWindow: time20k(seed), ClashProbed: seed%3 == 0}
		queued, atOnce := New(opts), New(opts)
		for i := range evs {
			got, want := queued.Add(&evs[i]), atOnce.Add(&evs[i])
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d event %d: incidents\n%+v\nentered at once:\n%+v", seed, i, got, want)
			}
			if got, want := queued.Findings(), atOnce.Findings(); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d event %d: findings\n%+v\nentered at once:\n%+v", seed, i, got, want)
			}
			if queued.byTuple.len() > 0 {
				entered++ // for a lookup, or for a record leaving out of turn
			}
			atOnce.indexQueued()
		}
		if got, want := queued.Flush(), atOnce.Flush(); !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d flush: incidents\n%+v\nentered at once:\n%+v", seed, got, want)
		}
	}
	if entered == 0 {
		t.Fatal("the queue was never entered: the streams test nothing")
	}
}

func time20k(seed uint64) time.Duration {
	if seed%2 == 0 {
		return -1
	}
	return 20_000
}
