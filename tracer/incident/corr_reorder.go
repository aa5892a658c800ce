package incident

// The reorder queue. In --all mode the events of one race come from
// several CPUs' rings, so a winner's may arrive after its loser's confirm:
// that incident waits ReorderWindow (kernel time, as Add and Advance move
// it) in a bounded ring before it is built. Incidents whose events the kernel
// sent together never wait.
//
// The wait starts at the newest time the stream had reached when the
// loser's confirm arrived, which may be later than the confirm itself: a
// live reader that idled moved the clock with Advance while the confirm's
// record was still to come, and the winner's record, committed on another
// CPU, can come just after it (seen on Debian sid under QEMU: a loser's
// confirm read 324 ms after its time, 200 ms after an idle, and its
// winner's insert 1 ms later).

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
		if r := &c.heads[s]; r.clashOpen() {
			c.emit(c.orphan(s))
			c.setHave(r, 0, hasClash)
		}
	}
	for c.head >= 0 {
		c.drop(c.head, nil)
	}
	return c.take()
}

// Quiet says that no incident is in the making: none waits for late
// events, and every clash seen has its loser's confirm. A capture that
// ends here and another that starts here split no incident between them.
// It reads two counts: a rotating capture asks it after every record.
func (c *Correlator) Quiet() bool { return c.pendLen == 0 && c.openClashes == 0 }

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

// pending is a loser's confirm whose incident waits for late events until
// deadline. head and body are a copy of the loser's record at its confirm,
// which the incident is built from if the record itself is gone (evicted or
// expired) by then.
type pending struct {
	deadline uint64
	head     recHead
	body     recBody
}

// wait queues the incident of loser r, confirmed just now, until deadline;
// when the queue is full, the oldest incident is completed first.
func (c *Correlator) wait(r rec, deadline uint64) {
	if c.pendLen == len(c.pend) {
		c.finishOldest()
	}
	p := &c.pend[(c.pendHead+c.pendLen)%len(c.pend)]
	p.deadline = deadline
	p.head, p.body = *r.recHead, *r.recBody
	c.pendLen++
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
