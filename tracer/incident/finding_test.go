package incident

import (
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/event"
)

// confirmsOnly is the --all stream of the default BPF pipeline: confirm
// records of every new ct, and the clash path's records.
func confirmsOnly(evs []event.Event) []event.Event {
	var out []event.Event
	for _, ev := range evs {
		if ev.Kind == event.Confirm || ev.Kind == event.Clash {
			out = append(out, ev)
		}
	}
	return out
}

// The in-kernel lookup (no clash probe) names the loser's tuple that
// matched; clash_dir is still the winner's node, as nf_ct_resolve_clash
// reports it: REPLY for a reverse collision, whose loser matched by its
// ORIGINAL tuple.
func TestLookupClashDir(t *testing.T) {
	sc := scenarioR5Merged()
	var evs []event.Event
	for _, ev := range sc.all {
		if ev.Kind == event.Clash {
			ev.Flags |= event.FlagLookup
			ev.Aux = 0 // the loser's ORIGINAL matched
		}
		evs = append(evs, ev)
	}
	if inc := only(t, feed(t, New(Options{}), evs)); inc.ClashDir != 1 || inc.Race != RaceReverse {
		t.Errorf("reverse collision by lookup: clash_dir %d race %d, want 1 and 5", inc.ClashDir, inc.Race)
	}
	// R4: the loser's REPLY matched W's REPLY node: 1 either way.
	r4 := scenarioR4Dropped()
	evs = nil
	for _, ev := range r4.all {
		if ev.Kind == event.Clash {
			ev.Flags |= event.FlagLookup
		}
		evs = append(evs, ev)
	}
	if inc := only(t, feed(t, New(Options{}), evs)); inc.ClashDir != 1 {
		t.Errorf("R4 by lookup: clash_dir %d, want 1", inc.ClashDir)
	}
}

// Before 6.12 with nf_nat loaded, a reverse collision whose winner was
// confirmed before the loser's SRC binding never reaches confirm: the
// binding moves the loser's port. --all sees it in the loser's tuples.
func TestReversePortMoved(t *testing.T) {
	w := &flow{ct: ctW, cpu: 0, comm: "peer-a", hook: event.HookPreRouting, netns: netnsHost,
		orig: tuple(udp, "10.244.1.2:5001", "10.244.2.1:5002")}
	l := &flow{ct: ctL, cpu: 1, comm: "peer-b", hook: event.HookPreRouting, netns: netnsHost,
		orig: tuple(udp, "10.244.2.1:5002", "10.244.1.2:5001"), snat: ap("10.244.2.1:6002")}
	lSrc := l.natSrcMoved(1300, 6002)
	lSrc.Range = event.NATRange{MinAddr: addr("10.244.2.1"), MaxAddr: addr("10.244.2.1"), Flags: event.RangeMapIPs}
	all := []event.Event{l.in(1000), w.in(1010), w.natDst(1020), w.natSrc(1030), w.inserted(1100),
		l.natDst(1200), lSrc, l.inserted(1400)}
	for name, evs := range map[string][]event.Event{"all+timeline": all, "all": confirmsOnly(all)} {
		t.Run(name, func(t *testing.T) {
			inc := only(t, feed(t, New(Options{}), evs))
			wt := want{race: RaceReverse, outcome: OutcomePortMoved, clashDir: -1, loser: ctL, winner: ctW,
				reason: []string{"reverse collision without a clash", "5002→6002", "peer saw the packet come from port 6002"}}
			if name == "all+timeline" {
				wt.window = 10 // both CT_INs seen
			}
			check(t, inc, wt)
			if !strings.Contains(inc.Mitigation, "NOTRACK") {
				t.Errorf("mitigation %q", inc.Mitigation)
			}
			if name == "all+timeline" && !strings.Contains(inc.Reason, "null binding") {
				t.Errorf("the NAT event shows a null binding: %q", inc.Reason)
			}
		})
	}
	// The same move without the reverse entry is no incident.
	if incs := feed(t, New(Options{}), []event.Event{l.in(1000), l.natDst(1200), l.natSrc(1300), l.inserted(1400)}); len(incs) != 0 {
		t.Errorf("port moved without a reverse entry: %+v", incs)
	}
}

// Where the clash probe is attached, a loser dropped at confirm without a
// clash event and without a winner by tuple failed its insert for another
// reason: a finding, named by whether the entry was dying.
func TestInsertFailedWithoutClash(t *testing.T) {
	_, l := glibcPair(ctW, ctL, endpoint1, endpoint2)
	drop := l.dropped(1410)
	dying := drop
	dying.Status |= event.StatusDying
	for _, c := range []struct {
		ev     event.Event
		id     string
		reason string
	}{{drop, FindingChainTooLong, "chain longer than the kernel's random limit"}, {dying, FindingInsertDying, "already dying"}} {
		corr := New(Options{ClashProbed: true})
		if incs := feed(t, corr, []event.Event{c.ev}); len(incs) != 0 {
			t.Errorf("%s: incidents %+v", c.id, incs)
		}
		fs := corr.Findings()
		if len(fs) != 1 || fs[0].ID != c.id || !strings.Contains(fs[0].Reason, c.reason) || fs[0].Flow.CT != ctL || fs[0].Mitigation == "" {
			t.Errorf("%s: findings %+v", c.id, fs)
		}
		if st := corr.Stats(); st.Findings != 1 || st.Tracked != 0 {
			t.Errorf("%s: stats %+v", c.id, st)
		}
	}
	// Without the clash probe it stays an unclassified incident.
	corr := New(Options{})
	if inc := only(t, feed(t, corr, []event.Event{drop})); inc.Race != RaceUnknown || len(corr.Findings()) != 0 {
		t.Errorf("no clash probe: %+v", inc)
	}
}

// vxlanPayload is a VXLAN header (VNI 42) and the inner frame of a UDP
// packet 10.244.255.1:40000 → 10.244.2.1:53, as a probe keeps it: the first
// 64 bytes of the outer UDP payload.
func vxlanPayload() ([64]byte, uint16) {
	var p [64]byte
	b := []byte{0x08, 0, 0, 0, 0, 0, 42, 0, // VXLAN
		2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00, // Ethernet, IPv4
		0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 244, 255, 1, 10, 244, 2, 1, // IPv4, UDP
		0x9c, 0x40, 0, 53, 0, 20, 0, 0} // UDP 40000 → 53
	return p, uint16(copy(p[:], b))
}

// A VXLAN flow from this host, source-NATed (MASQUERADE --random-fully on
// the outer packet, which kept the mark): a finding, with the inner flow
// when the probe captured it; the same flow not NATed is none.
func TestTunnelSNAT(t *testing.T) {
	outer := &flow{ct: ctW, cpu: 0, hook: event.HookLocalOut, netns: netnsHost,
		orig: tuple(udp, "192.168.100.1:41234", "192.168.100.2:4789"), snat: ap("192.168.100.1:61234")}
	conf := outer.inserted(1000)
	conf.Flags |= event.FlagLocal
	withInner := conf
	withInner.Payload, withInner.PayloadLen = vxlanPayload()
	for _, c := range []struct {
		name  string
		ev    event.Event
		inner string
	}{{"tuples only", conf, ""}, {"inner flow", withInner, "VXLAN VNI 42: udp 10.244.255.1:40000 → 10.244.2.1:53"}} {
		corr := New(Options{})
		if incs := feed(t, corr, []event.Event{c.ev}); len(incs) != 0 {
			t.Errorf("%s: incidents %+v", c.name, incs)
		}
		fs := corr.Findings()
		if len(fs) != 1 || fs[0].ID != FindingTunnelDoubleSNAT || !strings.Contains(fs[0].Reason, "source port 41234→61234") ||
			!strings.Contains(fs[0].Mitigation, "kubernetes#92035") || fs[0].Inner.String() != c.inner {
			t.Fatalf("%s: findings %+v", c.name, fs)
		}
		if c.inner != "" && !strings.Contains(fs[0].Reason, c.inner) {
			t.Errorf("%s: reason lacks the inner flow: %q", c.name, fs[0].Reason)
		}
	}
	// Without the local flag (a VXLAN packet keeps the skb_iif of what it
	// encapsulates) still a finding, just not said to come from this host.
	fwd := conf
	fwd.Flags &^= event.FlagLocal
	corr := New(Options{})
	feed(t, corr, []event.Event{fwd})
	if fs := corr.Findings(); len(fs) != 1 || strings.Contains(fs[0].Reason, "from this host") {
		t.Errorf("tunnel flow without the local flag: %+v", fs)
	}
	// Not source-NATed: none.
	plain := (&flow{ct: ctW, hook: event.HookLocalOut, netns: netnsHost, orig: outer.orig}).inserted(1000)
	plain.Flags |= event.FlagLocal
	corr = New(Options{})
	feed(t, corr, []event.Event{plain})
	if fs := corr.Findings(); len(fs) != 0 {
		t.Errorf("finding for a tunnel flow NAT left alone: %+v", fs)
	}
}
