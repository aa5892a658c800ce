package incident

import (
	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/encap"
	"github.com/ctprobe/ctprobe/tracer/event"
)

// Incident assembly: an Incident and its Evidence built from the loser's
// record and the winner's, found by pointer or by tuple.

// lookupWinner finds a confirmed entry, other than loser l, that held one of
// l's tuples when l was confirmed (docs/kernel-notes.md, Probe points: signatures and inlining).
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

func (inc *Incident) classified(r Result) {
	inc.Race, inc.Outcome, inc.Reason, inc.Mitigation = r.Race, r.Outcome, r.Reason, r.Mitigation
}

func (c *Correlator) emit(inc Incident) {
	c.stats.Incidents++
	if inc.Race == RaceUnknown {
		c.stats.Unknown++
	}
	c.out = append(c.out, inc)
}

// loserEvidence is what loser l's confirm (and SRC binding) say.
func loserEvidence(l rec) Evidence {
	e := Evidence{
		HaveConfirm: true, Verdict: l.conf.verdict, CT: l.ct, OtherCT: l.conf.other,
		Status: l.conf.status, OL: l.conf.orig, RL: l.conf.reply, ClashDir: -1,
	}
	if l.have&hasNATSrc != 0 {
		n := &l.nat[event.ManipSrc]
		e.LSrcNAT = NATStep{Seen: true, Time: n.time, Before: n.before, After: n.after, Range: n.rng}
	}
	return e
}

// finish builds the incident of loser l's confirm (record ls, or -1 for a
// pending incident's copy of a record that is gone) and forgets a loser
// that died.
func (c *Correlator) finish(ls int32, l rec) {
	inc := Incident{Time: l.confTime, ClashDir: -1}
	e := loserEvidence(l)
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
		} else if outcome == OutcomeDropped && c.clashProbed {
			c.insertFailed(l)
			if ls >= 0 {
				c.release(ls)
			}
			return
		}
	}
	if l.have&hasClash != 0 {
		e.ClashDir, e.ClashWinner = clashDir(l), l.clash.winner
		inc.ClashDir = e.ClashDir
	}
	if e.W != 0 && ws < 0 {
		ws = c.alive(e.W, l.confTime)
	}
	ws = c.checkWinner(&e, l, ws)
	c.winnerTuples(&e, l, ws)

	inc.classified(Classify(&e))
	c.packet(l, &inc.Loser)
	c.winnerPacket(&inc, &e, l, ws)
	c.emit(inc)
	if ls >= 0 && (outcome == OutcomeDropped || outcome == OutcomeMerged) {
		// The loser is freed with its skb: nothing more will come for it.
		c.release(ls)
	}
}

// clashDir is the direction of the winner's hash node that matched loser
// l at confirm (docs/json-schema.md, clash_dir). nf_ct_resolve_clash is
// handed that node; the in-kernel lookup instead says which of the loser's
// tuples matched, so its direction is taken from the tuples the way
// __nf_conntrack_confirm finds the node: the bucket of the loser's ORIGINAL
// first, then that of its REPLY (docs/kernel-notes.md, What confirm
// returns, per era).
func clashDir(l rec) int {
	if !l.clash.lookup {
		return int(l.clash.dir)
	}
	ow, rw := l.clash.orig, l.clash.reply
	var ol, rl event.Tuple
	switch {
	case l.have&hasConfirm != 0:
		ol, rl = l.conf.orig, l.conf.reply
	case l.have&hasOrig != 0:
		ol = l.orig
	}
	switch {
	case ow == ol:
		return 0
	case rw == ol:
		return 1
	case rl.Src.IsValid() && ow == rl:
		return 0
	case rl.Src.IsValid() && rw == rl:
		return 1
	}
	return int(l.clash.dir)
}

// insertFailed reports loser l, dropped at confirm without a clash.
func (c *Correlator) insertFailed(l rec) {
	f := Finding{Time: l.confTime}
	f.ID, f.Reason, f.Mitigation = insertFailed(l.conf.status)
	c.packet(l, &f.Flow)
	c.found(f)
}

// sourceNATed looks at entry s, inserted normally with its source
// rewritten by SRC NAT: a tunnel flow (a finding; a VXLAN device's packet
// keeps the skb_iif of the packet it encapsulates, so one from this host
// may look forwarded), or a loser whose binding moved its port because the
// reverse flow held its reply tuple (race 5 without a clash).
func (c *Correlator) sourceNATed(s int32, l rec) {
	if k := tunnelOf(&l.conf.orig); k != 0 {
		f := Finding{ID: FindingTunnelDoubleSNAT, Time: l.confTime, Mitigation: mitigationTunnelSNAT}
		if p := c.payload(l); len(p) > 0 {
			f.Inner, _ = encap.Parse(k, p)
		}
		f.Reason = tunnelSNAT(k, l.conf.orig, l.conf.reply, f.Inner, c.local(l))
		c.packet(l, &f.Flow)
		c.found(f)
	}
	if !sourceMoved(l.conf.orig, l.conf.reply) {
		return
	}
	rev := invert(l.conf.orig)
	k := keyOf(&rev, l.netns, l.zone)
	ws, ok := c.lookupTuple(&k)
	if !ok || ws == s {
		return
	}
	w := c.at(ws)
	if w.have&hasConfirm == 0 || w.conf.orig != rev || w.confTime > l.confTime {
		return
	}
	inc := Incident{Time: l.confTime, ClashDir: -1}
	e := loserEvidence(l)
	e.W, e.WFrom, e.WTuples, e.OW, e.RW, e.WConfirmed = w.ct, "a confirmed entry whose ORIGINAL is the loser's reply tuple before NAT", true, w.conf.orig, w.conf.reply, w.confTime
	e.ReverseHeld = true
	inc.classified(Classify(&e))
	c.packet(l, &inc.Loser)
	c.winnerPacket(&inc, &e, l, ws)
	c.emit(inc)
}

// local: entry l's first packet was made on this host (its confirm saw no
// input interface, or conntrack first saw it at LOCAL_OUT); false says
// nothing.
func (c *Correlator) local(l rec) bool {
	return l.conf.flags&event.FlagLocal != 0 || l.have&hasIn != 0 && l.in.hook == event.HookLocalOut
}

// payload is the start of entry l's UDP payload, as its confirm or its
// CT_IN captured it.
func (c *Correlator) payload(l rec) []byte {
	if n := l.conf.payloadLen; n > 0 {
		return l.conf.payload[:min(int(n), len(l.conf.payload))]
	}
	if n := l.in.payloadLen; l.have&hasIn != 0 && n > 0 {
		return l.in.payload[:min(int(n), len(l.in.payload))]
	}
	return nil
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
	inc := Incident{Time: l.clash.time, ClashDir: clashDir(l)}
	e := Evidence{
		CT: l.ct, ClashDir: inc.ClashDir, ClashWinner: l.clash.winner,
		W: l.clash.winner, WTuples: true, OW: l.clash.orig, RW: l.clash.reply, WFrom: "nf_ct_resolve_clash",
	}
	if l.have&hasOrig != 0 {
		e.OL = l.orig
	}
	if l.have&hasNATSrc != 0 {
		e.RL = l.nat[event.ManipSrc].after
	}
	inc.classified(Classify(&e))
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
		p.Task = event.InTask(event.CTIn, in.flags, in.hook)
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
		p.Task = event.InTask(event.Confirm, cf.flags, event.HookNone)
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
