package incident

import (
	"fmt"
	"strings"

	"github.com/ctprobe/ctprobe/tracer/event"
)

// NATStep is one nf_nat_setup_info (or get_unique_tuple) binding of a ct,
// with both tuples in REPLY direction.
type NATStep struct {
	Seen          bool
	Time          uint64
	Before, After event.Tuple // REPLY tuple before and after the binding
	Range         event.NATRange
}

// Evidence is everything classification looks at for one clash, however
// it was collected (live --all stream, incident-mode replay, tuple lookup).
type Evidence struct {
	// The loser's __nf_conntrack_confirm (HaveConfirm false: it was lost,
	// and OL/RL come from the loser's other events, RL possibly zero).
	HaveConfirm bool
	Verdict     uint32
	CT, OtherCT uint64      // L, and the ct on the skb afterwards
	Status      uint64      // status of OtherCT afterwards
	OL, RL      event.Tuple // L's ORIGINAL and REPLY (after NAT)
	LSrcNAT     NATStep     // L's SRC manip binding, if seen

	// The winner. W is 0 when unknown; WTuples says whether OW and RW
	// (REPLY after NAT) are known, WFrom where they came from.
	W          uint64
	WTuples    bool
	OW, RW     event.Tuple
	WFrom      string
	WConfirmed uint64 // time W's confirm returned, 0 if unseen
	// WStale: the history found under W's pointer described an earlier ct
	// (its ORIGINAL tuple is not W's) and was ignored.
	WStale bool

	// nf_ct_resolve_clash: the direction of W's node that matched (0
	// ORIGINAL, 1 REPLY), -1 when not seen; and the winner it named.
	ClashDir    int
	ClashWinner uint64

	// ReverseHeld: L was inserted normally, and W is a confirmed entry
	// whose ORIGINAL tuple is L's REPLY before NAT, so W held L's reply
	// tuple when L's SRC NAT binding ran (a race 5 without a clash).
	ReverseHeld bool
}

// Result is what Classify concludes.
type Result struct {
	Race    RaceType
	Outcome Outcome
	Reason  string
	// Mitigation is the race table's advice for this race, outcome and
	// NAT binding (Race.Mitigation).
	Mitigation string
}

// OutcomeOf reads a confirm's result (docs/kernel-notes.md, What confirm returns, per era): a verdict
// other than NF_ACCEPT is a drop; another ct on the skb afterwards is a merge
// into it; IPS_NAT_CLASH on the same ct is a reply-only insert. race is
// false for a normal insert.
func OutcomeOf(verdict uint32, ct, after, status uint64) (o Outcome, race bool) {
	switch {
	case verdict != event.VerdictAccept:
		return OutcomeDropped, true
	case after != ct && after != 0:
		return OutcomeMerged, true
	case status&event.StatusNATClash != 0:
		return OutcomeNATClash, true
	}
	return "", false
}

// Classify names the race of one clash (docs/kernel-notes.md, The race types). "moved":
// L's final source port (ICMP: id) differs from its original one; "W holds
// it": W's reply still has L's original port; "apart": both were moved, to
// different ports; "endpoint": REPLY source. Rows are tried top to bottom
// within an outcome:
//
//	outcome     evidence                                  race
//	any         W unknown, or W's / L's tuples unknown    0, Reason says what is missing
//	port-moved  normal insert, moved, O_W == R_L before   5 (L's SRC binding found its reply
//	            NAT (ReverseHeld)                           tuple held by W)
//	merged      O_L == O_W, R_L == R_W                    1; Reason notes a race-2 ordering
//	                                                      (W confirmed before L's SRC binding,
//	                                                      port kept: the same-origin rule)
//	merged      O_L == R_W, R_L == O_W                    5
//	merged      O equal, R differ (pre-6.12 merge of a    2 if moved, else 3 if the endpoint
//	            winner without NAT)                       differs, else 2
//	nat-clash   O equal, endpoint differs                 3
//	nat-clash   O equal, same endpoint, R differ          2 (ports apart: random ports)
//	dropped     O equal, R equal                          1 (pre-4.19 with NAT; no allow_clash)
//	dropped     O equal, moved and W holds it             2 (no same-origin rule)
//	dropped     O equal, endpoint differs                 3 (≤5.5)
//	dropped     O equal, same endpoint, R differ          2 (ports apart: ≤5.5)
//	dropped     O_L == R_W, R_L == O_W                    5 (UDP ≤6.11; TCP always)
//	dropped     O differ, R_L == R_W                      4 (CLASH dir 1 is direct evidence)
//	unknown     (confirm lost) by tuples: 1, 5, 3, 2, 4 in that order
//	any other combination                                 0
func Classify(e *Evidence) Result {
	res := Result{Outcome: OutcomeUnknown}
	why := classify(e, &res)
	res.Reason = why.String()
	res.Mitigation = res.Race.Mitigation(Facts{Outcome: res.Outcome, Proto: e.OL.Proto, RandomPorts: bindingOf(e).randomPorts(res.Outcome)})
	return res
}

func classify(e *Evidence, res *Result) reason {
	var why reason
	if e.HaveConfirm {
		o, race := OutcomeOf(e.Verdict, e.CT, e.OtherCT, e.Status)
		switch {
		case race:
			res.Outcome = o
		case e.ReverseHeld && sourceMoved(e.OL, e.RL):
			res.Outcome = OutcomePortMoved
		default:
			why.add("the confirm was a normal insert")
		}
	} else {
		why.add("the loser's confirm event was lost")
	}
	if e.W == 0 {
		why.add("winner unknown")
		switch {
		case res.Outcome == OutcomeDropped && e.ClashDir < 0:
			why.add("no nf_ct_resolve_clash event and no confirmed entry with the loser's tuples: an insert failure without a partner (dying ct, chain too long, extension invalid) or the clash probe is not attached (inlined on ≤5.5)")
		case res.Outcome == OutcomeNATClash:
			why.add("a reply-only insert means O_W == O_L and R_W != R_L (race 2 or 3)")
		}
		return why
	}
	if !e.RL.Src.IsValid() {
		why.add("the loser's reply tuple is unknown")
		return why
	}
	if !e.WTuples {
		why.addf("winner %#x's tuples not seen", e.W)
		if res.Outcome == OutcomeMerged {
			why.add("a merge needs identical tuples (race 1) or, on 6.12+, reversed ones (race 5)")
		}
		return why
	}

	sameO := e.OL == e.OW
	sameR := e.RL == e.RW
	reverse := e.OL == e.RW && e.RL == e.OW
	endpointDiffers := !sameEndpoint(e.RL, e.RW)
	b := bindingOf(e)
	proto := event.ProtoName(e.OL.Proto)

	switch res.Outcome {
	case OutcomeUnknown:
		// Only nf_ct_resolve_clash was seen: name the race by its tuples.
		switch {
		case sameO && sameR:
			res.Race = RaceIdentical
		case reverse:
			res.Race = RaceReverse
		case sameO && endpointDiffers:
			res.Race = RaceEndpoints
		case sameO:
			res.Race = RaceNATPort
		case sameR:
			res.Race = RaceSNATPort
		}
		if res.Race != RaceUnknown {
			why.add("race named from the tuples alone")
		}
	case OutcomePortMoved:
		res.Race = RaceReverse
		why.add(reverseMovedText(e))
	case OutcomeMerged:
		switch {
		case sameO && sameR:
			res.Race = RaceIdentical
			why.add("identical tuples: merged into the winner (clash resolution, 4.19+)")
			if b.lMoved {
				why.addf("NAT moved both to source %s, so the move did not cause the clash", replyDestination(e.RL))
			}
			if e.LSrcNAT.Seen && e.WConfirmed != 0 && e.WConfirmed < e.LSrcNAT.Time && !b.lMoved {
				why.addf("race 2 ordering defused: the winner was confirmed %s before the loser's SRC NAT binding, and the same-origin rule (4e35c1cb9460, 5.0+) kept source port %d", dur(e.LSrcNAT.Time-e.WConfirmed), e.OL.SrcPort)
			}
		case reverse:
			res.Race = RaceReverse
			why.add("reverse collision: the loser's ORIGINAL is the winner's REPLY (both peers sent at once); merged (6.12+ reverse clash resolution, or the pre-6.12 merge of a winner without NAT)")
		case sameO:
			res.Race, why = natOrEndpoint(e, b, endpointDiffers, why)
			why.add("merged although the reply tuples differ: the pre-6.12 merge of a winner without NAT")
		default:
			why.add("merged, but the tuples of loser and winner are unrelated")
		}
	case OutcomeNATClash:
		switch {
		case sameO && !sameR && endpointDiffers:
			res.Race = RaceEndpoints
			why.addf("different DNAT endpoints (loser %s, winner %s): inserted reply-only with IPS_NAT_CLASH (5.6+)", replySource(e.RL), replySource(e.RW))
			if b.lMoved {
				why.addf("NAT also moved the loser's source port %d→%d", e.OL.SrcPort, replySourcePort(e.RL))
			}
		case sameO && !sameR:
			res.Race = RaceNATPort
			why.add(natChangeText(e, b))
			if b.lMoved && !b.wMoved && b.random == "" {
				why.add("a kernel that inserts reply-only (5.6+) has the same-origin rule, which keeps a port its own flow holds, so the rule randomises ports (as MASQUERADE --random-fully does) or the port was held by another flow when the loser's binding ran")
			}
			why.add("inserted reply-only with IPS_NAT_CLASH (5.6+): nothing was lost, but the peer saw the socket's packets from two sources")
		case sameO && sameR:
			why.add("identical tuples should have merged, not been inserted reply-only")
		case e.OL == e.RW && b.lMoved:
			res.Race = RaceReverse
			why.addf("reverse collision: the loser's ORIGINAL is the winner's REPLY (both peers sent at once), and its NAT binding had moved its source port %d→%d, so its REPLY was free: inserted reply-only with IPS_NAT_CLASH (nf_ct_resolve_clash_harder, 5.6 to 6.11); nothing was dropped, but the peer sees the packet from port %d",
				e.OL.SrcPort, replySourcePort(e.RL), replySourcePort(e.RL))
		default:
			why.add("reply-only insert, but the ORIGINAL tuples differ")
		}
	case OutcomeDropped:
		switch {
		case sameO && sameR:
			res.Race = RaceIdentical
			if allowsClash(e.OL.Proto) {
				why.addf("identical tuples, dropped: %s clash resolution needs 4.19+ when NAT is active (or the winner was dying)", proto)
			} else {
				why.addf("identical tuples, dropped: %s conntrack does not resolve clashes", proto)
			}
		case sameO && b.lMoved && !b.wMoved && b.random == "":
			res.Race = RaceNATPort
			why.add(natChangeText(e, b))
			why.add(droppedNAT(e, "this kernel has no reply-only insertion (6a757c07e51f, 5.6), and either no same-origin rule (4e35c1cb9460, 5.0) to keep the port or a rule that randomises ports"))
			if endpointDiffers {
				why.addf("the DNAT endpoints differ too (loser %s, winner %s)", replySource(e.RL), replySource(e.RW))
			}
		case sameO && endpointDiffers:
			res.Race = RaceEndpoints
			why.addf("different DNAT endpoints (loser %s, winner %s), dropped: reply-only insertion needs 5.6+", replySource(e.RL), replySource(e.RW))
			if !allowsClash(e.OL.Proto) {
				why.addf("and %s conntrack does not resolve clashes", proto)
			}
		case sameO:
			res.Race = RaceNATPort
			why.add(natChangeText(e, b))
			why.add(droppedNAT(e, "reply-only insertion needs 5.6+ (6a757c07e51f)"))
		case reverse:
			res.Race = RaceReverse
			if allowsClash(e.OL.Proto) {
				why.addf("reverse collision: the loser's ORIGINAL is the winner's REPLY (both peers sent at once), dropped (%s: the reverse merge needs 6.12+, a4e6a1031e77)", proto)
			} else {
				why.addf("reverse collision: the loser's ORIGINAL is the winner's REPLY (both peers sent at once), dropped: %s conntrack has no clash resolution (allow_clash), which nf_ct_resolve_clash checks before 6.12's reverse merge, so this drops on every kernel", proto)
			}
		case sameR:
			res.Race = RaceSNATPort
			why.addf("different flows with one reply tuple: both were given %s (SNAT port collision); dropped on every kernel", replyDestination(e.RL))
			switch e.ClashDir {
			case 1:
				why.add("nf_ct_resolve_clash matched the winner's REPLY node")
			case 0:
				why.add("but nf_ct_resolve_clash reported the winner's ORIGINAL node")
			}
		default:
			why.add("dropped, but the tuples of loser and winner share nothing")
		}
	}
	if e.WFrom != "" {
		why.addf("winner from %s", e.WFrom)
	}
	if e.WStale {
		why.add("the history under the winner's pointer belonged to an earlier ct and was ignored")
	}
	if e.ClashWinner != 0 && e.ClashWinner != e.W {
		why.addf("nf_ct_resolve_clash named %#x, the merge went to %#x", e.ClashWinner, e.W)
	}
	return why
}

// droppedNAT is the drop clause of a race 2: why this kernel dropped it.
func droppedNAT(e *Evidence, because string) string {
	if !allowsClash(e.OL.Proto) {
		return "dropped: " + event.ProtoName(e.OL.Proto) + " conntrack does not resolve clashes"
	}
	return "dropped: " + because
}

// reverseMovedText explains a race 5 settled by NAT before confirm
// (docs/kernel-notes.md, The race types).
func reverseMovedText(e *Evidence) string {
	var b strings.Builder
	fmt.Fprintf(&b, "reverse collision without a clash: the peer's entry (the winner, ORIGINAL %s) held the loser's reply tuple when the loser's SRC NAT binding ran, "+
		"so NAT moved the loser's source port %d→%d; nothing was dropped and no counter moved, but the peer saw the packet come from port %d, not %d",
		e.OW.String(), e.OL.SrcPort, replySourcePort(e.RL), replySourcePort(e.RL), e.OL.SrcPort)
	if s := &e.LSrcNAT; s.Seen && isNullBinding(s.Range) {
		b.WriteString(" (the null binding nf_nat gives every flow once a NAT table is loaded)")
	}
	if allowsClash(e.OL.Proto) {
		b.WriteString("; 6.12 keeps the port when neither entry is NATed (d8f84a9bc7c4) and merges the clash (a4e6a1031e77)")
	} else {
		fmt.Fprintf(&b, "; %s has no clash resolution, so NAT moves the port on every kernel (d8f84a9bc7c4 keeps it for clash-resolving protocols only)", event.ProtoName(e.OL.Proto))
	}
	return b.String()
}

// isNullBinding: the range nf_nat_alloc_null_binding passes (one address,
// no port range, no random flags).
func isNullBinding(r event.NATRange) bool {
	return r.Flags == event.RangeMapIPs && r.MinAddr == r.MaxAddr
}

// natOrEndpoint handles the merged case whose reply tuples differ.
func natOrEndpoint(e *Evidence, b binding, endpointDiffers bool, why reason) (RaceType, reason) {
	if !b.lMoved && endpointDiffers {
		why.addf("different DNAT endpoints (loser %s, winner %s)", replySource(e.RL), replySource(e.RW))
		return RaceEndpoints, why
	}
	why.add(natChangeText(e, b))
	return RaceNATPort, why
}

// binding is what SRC NAT did to the source port (ICMP: id) of two entries
// with one ORIGINAL tuple.
type binding struct {
	lMoved, wMoved bool
	lPort, wPort   uint16 // after NAT
	random         string // the loser's NAT event shows a rule with random ports: its option
}

func bindingOf(e *Evidence) binding {
	b := binding{lPort: replySourcePort(e.RL), wPort: replySourcePort(e.RW)}
	b.lMoved = e.RL.Src.IsValid() && b.lPort != e.OL.SrcPort
	b.wMoved = e.WTuples && e.OW == e.OL && b.wPort != e.OL.SrcPort
	if s := &e.LSrcNAT; s.Seen {
		switch {
		case s.Range.Flags&event.RangeProtoRandomFull != 0:
			b.random = "--random-fully (NF_NAT_RANGE_PROTO_RANDOM_FULLY)"
		case s.Range.Flags&event.RangeProtoRandom != 0:
			b.random = "--random (NF_NAT_RANGE_PROTO_RANDOM)"
		}
	}
	return b
}

// apart: both entries of one ORIGINAL tuple were moved, to different ports.
func (b binding) apart() bool { return b.lMoved && b.wMoved && b.lPort != b.wPort }

// randomPorts: the loser's port was picked at random, not kept
// (Facts.RandomPorts): the ports moved apart, or the NAT event shows random
// ports, or a reply-only insert (5.6+, so the kernel has the same-origin
// rule, which would have kept the port) still found it moved.
func (b binding) randomPorts(o Outcome) bool {
	return b.apart() || b.lMoved && (b.random != "" || o == OutcomeNATClash)
}

func natChangeText(e *Evidence, b binding) string {
	var s strings.Builder
	switch {
	case b.apart():
		fmt.Fprintf(&s, "NAT gave the two packets of one socket different source ports (%d→%d for the loser, →%d for the winner)", e.OL.SrcPort, b.lPort, b.wPort)
		if b.random != "" {
			fmt.Fprintf(&s, ": the SNAT rule randomises ports (%s), so get_unique_tuple never tries to keep the port and the same-origin rule (4e35c1cb9460) cannot make the entries equal", b.random)
		} else {
			fmt.Fprintf(&s, ": the SNAT rule randomises ports (as MASQUERADE --random-fully does), or port %d was held by another flow; either way get_unique_tuple did not keep it, and the same-origin rule (4e35c1cb9460) cannot make the entries equal", e.OL.SrcPort)
		}
	case b.lMoved:
		fmt.Fprintf(&s, "NAT moved the loser's source port %d→%d", e.OL.SrcPort, b.lPort)
		if !b.wMoved {
			fmt.Fprintf(&s, " while the winner holds %d", e.OL.SrcPort)
		}
		if b.random != "" {
			fmt.Fprintf(&s, "; the SNAT rule randomises ports (%s)", b.random)
		}
	default:
		fmt.Fprintf(&s, "NAT gave the loser source %s, the winner %s", replyDestination(e.RL), replyDestination(e.RW))
	}
	if st := &e.LSrcNAT; st.Seen {
		if e.WConfirmed != 0 && e.WConfirmed < st.Time {
			fmt.Fprintf(&s, "; the winner was confirmed %s before the loser's SRC binding", dur(st.Time-e.WConfirmed))
		}
	} else {
		s.WriteString(" (seen in the tuples, without a SRC NAT event)")
	}
	return s.String()
}

// allowsClash: the l4 trackers that resolve clashes on every supported
// kernel (docs/kernel-notes.md, What confirm returns, per era; GRE since 6.5, ICMP and generic only later).
func allowsClash(proto uint8) bool { return proto == 17 || proto == 136 }

func isICMP(proto uint8) bool { return proto == 1 || proto == 58 }

// replySourcePort is, in a REPLY tuple, the port (ICMP: echo id) that the
// ORIGINAL direction's sender uses after NAT: reply.dst.u.all, or for ICMP
// reply.src.u.icmp.id.
func replySourcePort(r event.Tuple) uint16 {
	if isICMP(r.Proto) {
		return r.SrcPort
	}
	return r.DstPort
}

// sourceMoved: NAT changed the sender's port (or ICMP id).
func sourceMoved(o, r event.Tuple) bool { return replySourcePort(r) != o.SrcPort }

// sameEndpoint compares the REPLY tuples' sources: the endpoint DNAT chose.
func sameEndpoint(a, b event.Tuple) bool {
	if a.Src != b.Src {
		return false
	}
	return isICMP(a.Proto) || a.SrcPort == b.SrcPort
}

func replySource(r event.Tuple) string {
	if isICMP(r.Proto) {
		return r.Src.String()
	}
	return r.SrcString()
}

// replyDestination is where replies go: the sender's address and port after NAT.
func replyDestination(r event.Tuple) string {
	return event.Endpoint(r.Dst, replySourcePort(r))
}

// invert is nf_ct_invert_tuple: the tuple of the other direction. For ICMP
// the id stays in the source and echo types swap with their replies.
func invert(t event.Tuple) event.Tuple {
	r := event.Tuple{Src: t.Dst, Dst: t.Src, SrcPort: t.DstPort, DstPort: t.SrcPort, Proto: t.Proto}
	if isICMP(t.Proto) {
		r.SrcPort = t.SrcPort
		r.DstPort = icmpInverse(t.Proto, uint8(t.DstPort>>8))<<8 | t.DstPort&0xff
	}
	return r
}

func icmpInverse(proto, typ uint8) uint16 {
	pairs := [][2]uint8{{8, 0}, {13, 14}, {15, 16}, {17, 18}}
	if proto == 58 {
		pairs = [][2]uint8{{128, 129}, {139, 140}}
	}
	for _, p := range pairs {
		switch typ {
		case p[0]:
			return uint16(p[1])
		case p[1]:
			return uint16(p[0])
		}
	}
	return uint16(typ)
}

func dur(ns uint64) string {
	switch {
	case ns >= 1e9:
		return fmt.Sprintf("%.3fs", float64(ns)/1e9)
	case ns >= 1e6:
		return fmt.Sprintf("%.3fms", float64(ns)/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.1fµs", float64(ns)/1e3)
	}
	return fmt.Sprintf("%dns", ns)
}

// reason joins clauses with "; ".
type reason struct{ parts []string }

func (r *reason) add(s string) { r.parts = append(r.parts, s) }

func (r *reason) addf(format string, args ...any) { r.add(fmt.Sprintf(format, args...)) }

func (r *reason) String() string { return strings.Join(r.parts, "; ") }
