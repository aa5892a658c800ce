package e2e

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/lab"
)

// checkPackets checks both packets of an incident: tuples always; the sender
// of a DNS query or of a packet between two of ctlab's sockets (a reverse
// collision's peers, UDP or a TCP SYN), ctlab's pid and socket, with
// --timeline, which follows the skb from the sender's netns, and in the
// default mode wherever a sender is named, which must be everywhere when
// the socket is in the netns that clashed (local).
func checkPackets(t *testing.T, inc *incidentLine, stats *lab.Stats, timeline, local bool) {
	if len(stats.Sockets) == 0 {
		t.Fatal("ctlab reported no sockets: senders cannot be checked")
	}
	cookies := map[uint64]bool{}
	ports := map[string]bool{}
	for _, s := range stats.Sockets {
		cookies[s.Cookie] = true
		if s.Port != 0 {
			ports[strconv.Itoa(int(s.Port))] = true
		}
	}
	// Both ends a port of ctlab's: a VXLAN tunnel's outer packets may come
	// from a port that a DNS query also used, never to another such port.
	betweenPeers := func(src, dst string) bool {
		return ports[src[strings.LastIndexByte(src, ':')+1:]] && ports[dst[strings.LastIndexByte(dst, ':')+1:]]
	}
	for role, pk := range map[string]*packet{"loser": inc.Loser, "winner": inc.Winner} {
		if pk == nil || pk.Orig == nil || pk.Reply == nil || pk.Orig.Src == "" || pk.Reply.Src == "" {
			t.Errorf("%s missing or without tuples: %+v", role, inc)
			return
		}
	}
	checkTuples(t, inc)
	for role, pk := range map[string]*packet{"loser": inc.Loser, "winner": inc.Winner} {
		// The DNS queries and the reverse peers' packets come from ctlab's
		// sockets, whether the race happened in the sender's netns or at a
		// node it crossed; other flows (a VXLAN tunnel's outer packets)
		// have no sending process.
		if !strings.HasSuffix(pk.Orig.Dst, ":53") && !betweenPeers(pk.Orig.Src, pk.Orig.Dst) {
			continue
		}
		// The default mode knows the loser's task where the skb was made in
		// the netns that clashed, and the winner's socket when both share
		// one ORIGINAL tuple.
		needTask := timeline || local && role == "loser"
		needSock := timeline || local && (role == "loser" || *pk.Orig == *inc.Loser.Orig)
		if (needTask || pk.Task) && (!pk.Task || pk.PID != uint32(stats.Pid)) {
			t.Errorf("%s sender: task %v pid %d (%s), want ctlab's %d", role, pk.Task, pk.PID, pk.Comm, stats.Pid)
		}
		if (needSock || pk.Socket != nil) && (pk.Socket == nil || !cookies[pk.Socket.Cookie]) {
			t.Errorf("%s socket %+v is not one of ctlab's", role, pk.Socket)
		}
	}
}

// checkTuples checks that the race named fits both packets' tuples, as a
// reader of the incident would: race 1 identical tuples; race 2 and 3 one
// ORIGINAL tuple with different replies (race 3: another endpoint); race 4
// different ORIGINAL tuples sharing the reply.
func checkTuples(t *testing.T, inc *incidentLine) {
	l, w := inc.Loser, inc.Winner
	sameO, sameR := *l.Orig == *w.Orig, *l.Reply == *w.Reply
	var ok bool
	switch inc.Race {
	case 1:
		ok = sameO && sameR
	case 2:
		ok = sameO && !sameR
	case 3:
		ok = sameO && l.Reply.Src != w.Reply.Src
	case 4:
		ok = !sameO && sameR
	case 5:
		ok = l.Orig.Src == w.Reply.Src && l.Orig.Dst == w.Reply.Dst // each sent the other's reply
	default:
		ok = true // race 0 is reported as unclassified elsewhere
	}
	if !ok {
		t.Errorf("race %d does not fit the tuples: loser %+v / %+v, winner %+v / %+v", inc.Race, *l.Orig, *l.Reply, *w.Orig, *w.Reply)
	}
}

// checkFilters checks the tracers that ran beside the main one: filters are
// applied in the kernel, and -c stops after that many incidents.
func checkFilters(t *testing.T, p func(string) string, all int) {
	count := func(lines []map[string]any) (incidents, summaries int) {
		for _, m := range lines {
			switch m["kind"] {
			case "incident":
				incidents++
			case "summary":
				if m["final"] == true {
					summaries++
				}
			}
		}
		return
	}
	read := func(suffix string) []map[string]any {
		_, lines := jsonLines(t, p(suffix))
		return lines
	}
	lines := read(".host.jsonl")
	if n, s := count(lines); n != all || s != 1 {
		t.Errorf("--host 10.96.0.10: %d incidents (want all %d), %d final summaries", n, all, s)
	}
	// --interval 1s: summaries of each interval before the final one, one
	// after the other (each starts where the last ended), counting no more
	// than the run. (How many they count depends on when the lookups ran:
	// a fast kernel may race them all within the final second.)
	var intervals int
	var sum float64
	var lastEnd any
	for _, m := range lines {
		if m["kind"] == "summary" && m["final"] == false {
			if intervals > 0 && m["start"] != lastEnd {
				t.Errorf("--interval 1s: interval %d starts at %v, the previous one ended at %v", intervals, m["start"], lastEnd)
			}
			intervals++
			sum += m["incidents"].(float64)
			lastEnd = m["end"]
		}
	}
	if intervals == 0 || sum > float64(all) {
		t.Errorf("--interval 1s: %d interval summaries counting %v incidents (run: %d)", intervals, sum, all)
	}
	if n, s := count(read(".port9999.jsonl")); n != 0 || s != 1 {
		t.Errorf("--port 9999: %d incidents (want 0), %d summaries", n, s)
	}
	if rc := readFile(t, p(".count2.rc")); rc != "0" {
		t.Errorf("-c 2 did not stop by itself: %s", rc)
	}
	if n, _ := count(read(".count2.jsonl")); n != 2 {
		t.Errorf("-c 2 printed %d incidents", n)
	}
}

// kprobePoints are the points the plan attached through kprobes (a
// kprobe and kretprobe pair, or kprobe.session), by the mode they attached
// with.
func kprobePoints(t *testing.T, line string) map[string]string {
	var plan struct {
		Points []struct{ Point, Mode, Status string } `json:"points"`
	}
	if err := json.Unmarshal([]byte(line), &plan); err != nil {
		t.Fatal(err)
	}
	points := map[string]string{}
	for _, p := range plan.Points {
		if p.Status == "attached" && strings.HasPrefix(p.Mode, "kprobe") {
			points[p.Point] = p.Mode
		}
	}
	return points
}

// planKeysByTask says whether the plan attached a point as a kprobe and
// kretprobe pair, whose entries are keyed by task. (The clash point's pair
// keeps no stack: it cannot nest, bottom halves are off inside confirm.)
func planKeysByTask(points map[string]string) bool {
	for p, mode := range points {
		if mode == "kprobe" && p != "clash" {
			return true
		}
	}
	return false
}

// checkAttachMode checks that every probe point the mode needs attached, in
// the mode asked. The default mode needs only the clash probe, and confirm
// where that is missing (noclash); --all needs both.
func checkAttachMode(t *testing.T, line, attach string, mode traceMode, k guestKernel) {
	var plan struct {
		Points []struct{ Point, Function, Mode, Status, Reason string } `json:"points"`
	}
	if err := json.Unmarshal([]byte(line), &plan); err != nil {
		t.Fatal(err)
	}
	for _, p := range plan.Points {
		want := "attached"
		switch {
		case attach == "noclash" && p.Point == "clash":
			want = "skipped"
		case !mode.timeline && p.Point != "clash" && !(p.Point == "confirm" && (attach == "noclash" || mode.all)):
			want = "unused"
		}
		if p.Status != want {
			t.Errorf("%s (%s) %s, want %s: %s", p.Point, p.Function, p.Status, want, p.Reason)
		}
		// auto picks fentry where the kernel has module BTF, and says why
		// where it fell back to kprobe (6.1 refuses fentry on
		// nf_ct_resolve_clash).
		wantMode := "fentry"
		if strings.HasPrefix(attach, "kprobe") || !k.fentry {
			wantMode = "kprobe"
			// --all's confirm takes kprobe.session on 6.10+, and says why
			// not where it keeps the kretprobe: before 6.10, and with
			// --max-active (kprobe1). (Without the clash probe it takes
			// the entry and exit that index cts by tuple.)
			if p.Point == "confirm" && mode.all && !mode.timeline && attach != "noclash" {
				why := "kprobe.session: not in this kernel"
				switch {
				case attach == "kprobe1":
					why = "kprobe.session: not used: --max-active"
				case k.sessionCtx:
					// ctprobe declares the kfuncs as 6.10-6.19 have
					// them, without the context argument that 7.0
					// added; cilium/ebpf refuses the program
					// (docs/kernel-notes.md, Attaching and detaching).
					why = `kfunc "bpf_session_cookie": function param mismatch`
				case k.session:
					wantMode, why = "kprobe.session", ""
				}
				if !strings.Contains(p.Reason, why) {
					t.Errorf("confirm attached as %s without saying %q: %s", p.Mode, why, p.Reason)
				}
				// The kprobe pair keeps the skb in task storage on 5.13+,
				// in a hash map before.
				keep := "skb waits in a hash map"
				if k.taskStorage {
					keep = "skb waits in task storage"
				}
				if wantMode == "kprobe" && !strings.Contains(p.Reason, keep) {
					t.Errorf("confirm's kprobe pair: want %q: %s", keep, p.Reason)
				}
			}
		}
		fellBack := wantMode == "fentry" && p.Mode == "kprobe" && strings.Contains(p.Reason, p.Function+" fentry: ")
		if want == "attached" && p.Point != "origin" && p.Mode != wantMode && !fellBack {
			t.Errorf("%s attached as %s, want %s: %s", p.Point, p.Mode, wantMode, p.Reason)
		}
		// The origin point is a tracepoint: tp_btf, which reads the skb and
		// its socket with plain loads, wherever the kernel has BTF (every
		// kernel here: ctprobe needs it), and the raw tracepoint with
		// --attach kprobe.
		if want == "attached" && p.Point == "origin" {
			wantOrigin := "tp_btf"
			if strings.HasPrefix(attach, "kprobe") {
				wantOrigin = "raw_tracepoint"
			}
			if p.Mode != wantOrigin {
				t.Errorf("origin attached as %s, want %s: %s", p.Mode, wantOrigin, p.Reason)
			}
		}
	}
}

// checkRaces checks which race types a scenario must (not) produce, with
// which outcome and why.
func checkRaces(t *testing.T, name string, mode traceMode, incs []incidentLine, races map[int]int, incidents int, kernelDrops uint64, stats *lab.Stats, k guestKernel) {
	switch name {
	case "endpoints-1", "nonat":
		// One endpoint gives identical tuples (race 1), unless another
		// entry held the socket's port towards it, so that NAT gave the two
		// packets different ports (race 2; checked against the endpoint's
		// view below).
		if races[1]+races[2] != incidents {
			t.Errorf("one endpoint gives identical tuples (race 1), or ports moved apart (race 2) only: %v", races)
		}
	case "endpoints-2", "ipv6":
		// DNAT alone, to two endpoints: a clash whose packets went to
		// different endpoints is race 3, one whose packets went to the same
		// endpoint race 1, or race 2 where NAT then gave them different
		// source ports (the socket's port towards that endpoint was held by
		// another entry, such as an earlier query's sent to the endpoint
		// directly). Which it is depends on the endpoints chosen and the
		// ports free.
		for _, inc := range incs {
			if inc.Loser == nil || inc.Winner == nil || inc.Loser.Reply == nil || inc.Winner.Reply == nil {
				continue
			}
			want := 1
			switch {
			case inc.Loser.Reply.Src != inc.Winner.Reply.Src:
				want = 3
			case inc.Loser.Reply.Dst != inc.Winner.Reply.Dst:
				want = 2
			}
			if inc.Race != want {
				t.Errorf("replies from %s and %s, to %s and %s: race %d, want %d", inc.Loser.Reply.Src, inc.Winner.Reply.Src, inc.Loser.Reply.Dst, inc.Winner.Reply.Dst, inc.Race, want)
			}
		}
	case "snat-one-port", "snat-one-port-held":
		if races[4] != incidents || kernelDrops == 0 {
			t.Errorf("SNAT to one port must give only race 4 drops: %v, drops %d", races, kernelDrops)
		}
	case "masq-random-fully":
		// One socket's two packets, masqueraded with random ports: apart
		// (race 2, inserted reply-only on 5.6+), or by chance on one port
		// (race 1, merged).
		for _, inc := range incs {
			if inc.Loser == nil || inc.Winner == nil || inc.Loser.Reply == nil || inc.Winner.Reply == nil {
				continue
			}
			if *inc.Loser.Reply == *inc.Winner.Reply {
				if inc.Race != 1 || inc.Outcome != "merged" {
					t.Errorf("one source port for both: race %d %s", inc.Race, inc.Outcome)
				}
				continue
			}
			if inc.Race != 2 || inc.Outcome != "nat-clash" || !strings.Contains(inc.Reason, "randomises ports") || !strings.Contains(inc.Mitigation, "nothing was lost") {
				t.Errorf("--random-fully: race %d %s, reason %q, mitigation %q", inc.Race, inc.Outcome, inc.Reason, inc.Mitigation)
			}
		}
	case "reverse-udp":
		// 6.12 keeps the port and merges; before, a clash at confirm is
		// dropped, and a binding after the peer's confirm moves the port,
		// which only --all (every insert) shows, once for each port the
		// peers saw moved.
		moved, insertedMoved := 0, 0
		for _, inc := range incs {
			ok := inc.Race == 5
			switch {
			case k.reverseMerge:
				ok = ok && inc.Outcome == "merged"
			case inc.Outcome == "dropped":
				ok = ok && strings.Contains(inc.Reason, "the reverse merge needs 6.12+")
			case inc.Outcome == "port-moved":
				moved++
				ok = ok && mode.all && strings.Contains(inc.Reason, "reverse collision without a clash") && inc.Loser.Orig.Src != inc.Loser.Reply.Dst
			case inc.Outcome == "nat-clash":
				// The binding moved the port, then confirm found the
				// clash and inserted the free REPLY alone (5.6 to 6.11).
				insertedMoved++
				ok = ok && strings.Contains(inc.Reason, "so its REPLY was free") && inc.Loser.Orig.Src != inc.Loser.Reply.Dst
			default:
				ok = false
			}
			if !ok {
				t.Errorf("reverse collision (UDP, NAT loaded) on %s: race %d %s: %s", k.release, inc.Race, inc.Outcome, inc.Reason)
			}
		}
		// Each port the peers saw moved is a port-moved incident; a moved
		// datagram that came after ctlab's timeout counts as missed, not
		// moved, so there may be up to that many more incidents.
		late := stats.PeerLost - int(kernelDrops)
		if seen := stats.PortMoved; mode.all && (moved+insertedMoved < seen || moved+insertedMoved > seen+late) || !mode.all && (moved != 0 || insertedMoved > seen+late) {
			t.Errorf("%d port-moved and %d reply-only incidents with the port moved; the peers saw %d ports moved and missed %d datagrams not dropped", moved, insertedMoved, seen, late)
		}
		if k.reverseMerge && stats.PortMoved != 0 {
			t.Errorf("%s moved %d ports of reverse collisions: 6.12 keeps them", k.release, stats.PortMoved)
		}
	case "reverse-tcp":
		for _, inc := range incs {
			if inc.Race != 5 || inc.Outcome != "dropped" || !strings.Contains(inc.Reason, "tcp conntrack has no clash resolution") || !strings.Contains(inc.Mitigation, "dropped on every kernel") {
				t.Errorf("reverse collision (TCP): race %d %s: %s / %s", inc.Race, inc.Outcome, inc.Reason, inc.Mitigation)
			}
		}
	case "table-full", "chain-too-long":
		if incidents != 0 {
			t.Errorf("%d incidents where no clash happened: %v", incidents, races)
		}
	}
	// Race 2 against the endpoints' own view: the two queries of a lookup
	// reach one endpoint from two source ports only when both got entries
	// of their own, that is when they clashed with their ports apart and
	// the kernel inserted the loser reply-only (5.6+; before, the loser
	// was dropped and never arrived). Only the lookups' flows count: a
	// tunnel's own packets (vxlan-masq) race too.
	if stats.Racing {
		apart := 0
		for _, inc := range incs {
			if inc.Race == 2 && inc.Outcome == "nat-clash" && inc.Loser != nil && inc.Loser.Orig != nil && inc.Loser.Orig.Dst == stats.Target.String() {
				apart++
			}
		}
		if apart != stats.PortsApart {
			t.Errorf("%d race-2 incidents inserted reply-only; the endpoints saw %d lookups whose queries came from two source ports", apart, stats.PortsApart)
		}
	}
	if races[0] != 0 {
		t.Errorf("%d incidents unclassified", races[0])
	}
}

// port is the port of "ip:port".
func port(ep string) string { return ep[strings.LastIndexByte(ep, ':')+1:] }

// checkFindings checks the findings of a scenario, and what the final
// summary says of the counts no incident explains.
func checkFindings(t *testing.T, name string, mode traceMode, fs []findingLine, inserted []map[string]any, final *summaryLine, stats *lab.Stats, k guestKernel) {
	node := stats.NetnsByRole("node")
	if node == nil {
		t.Fatal("the lab reported no node netns")
	}
	var unexplained struct {
		InsertFailed, Drop uint64
		Reasons            string
	}
	for _, n := range final.Netns {
		if n.Netns == node.Inode && n.Unexplained != nil {
			unexplained.InsertFailed, unexplained.Drop = n.Unexplained.InsertFailed, n.Unexplained.Drop
			unexplained.Reasons = strings.Join(n.Unexplained.Reasons, "\n")
		}
	}
	byID := map[string]int{}
	for _, f := range fs {
		byID[f.ID]++
	}
	for _, f := range final.Findings {
		if int(f.Count) != byID[f.ID] && f.Netns == node.Inode {
			t.Errorf("summary counts %d %s findings in the node, the trace printed %d", f.Count, f.ID, byID[f.ID])
		}
	}
	// The tunnel flows that --all saw inserted, and of those the ones whose
	// source NAT rewrote.
	var tunnels, natted int
	for _, m := range inserted {
		o, r := m["orig"].(map[string]any), m["reply"].(map[string]any)
		if port(o["dst"].(string)) == "4789" {
			tunnels++
			if o["src"] != r["dst"] {
				natted++
			}
		}
	}
	d := node.Delta
	switch name {
	case "vxlan-masq":
		// Masqueraded twice: the pod's packet, then (mark kept) its VXLAN
		// packet, with random ports.
		if mode.all && (byID["tunnel-double-snat"] == 0 || byID["tunnel-double-snat"] != natted) {
			t.Errorf("%d tunnel-double-snat findings; --all saw %d VXLAN flows, %d of them source-NATed", byID["tunnel-double-snat"], tunnels, natted)
		}
		for _, f := range fs {
			if f.ID == "tunnel-double-snat" && (port(f.Flow.Orig.Dst) != "4789" || port(f.Flow.Orig.Src) == port(f.Flow.Reply.Dst) || !strings.Contains(f.Reason, "rewrote the tunnel's source port")) {
				t.Errorf("tunnel finding: %+v %+v: %s", f.Flow.Orig, f.Flow.Reply, f.Reason)
			}
		}
	case "vxlan-masq-fixed":
		if mode.all && (tunnels == 0 || natted != 0) {
			t.Errorf("kube-proxy's fix: --all saw %d VXLAN flows, %d source-NATed; want some, none NATed", tunnels, natted)
		}
	case "table-full":
		// Every packet nf_conntrack_in dropped into the full table is a
		// lost query, and the summary says so.
		// (ctlab may also give up on a reply that is only late.)
		if lost := uint64(stats.Lost.A); lost < d.Drop || unexplained.Drop != d.Drop || !strings.Contains(unexplained.Reasons, "the table was full") {
			t.Errorf("ctlab lost %d queries, node drop +%d, summary: %d unexplained because %q", lost, d.Drop, unexplained.Drop, unexplained.Reasons)
		}
	case "chain-too-long":
		// Where confirm is traced each refused insert is a finding; the
		// default mode has the counter only, which the summary names.
		if mode.all || mode.timeline {
			if uint64(byID["conntrack-chain-too-long"]) != d.ChainTooLong || unexplained.InsertFailed != 0 {
				t.Errorf("%d chain-too-long findings, chaintoolong +%d, %d insert_failed unexplained", byID["conntrack-chain-too-long"], d.ChainTooLong, unexplained.InsertFailed)
			}
		} else if unexplained.InsertFailed != d.ChainTooLong || !strings.Contains(unexplained.Reasons, fmt.Sprintf("hash chains too long explain %d (chain_too_long +%d)", d.ChainTooLong, d.ChainTooLong)) {
			t.Errorf("default mode: %d insert_failed unexplained, chaintoolong +%d: %q", unexplained.InsertFailed, d.ChainTooLong, unexplained.Reasons)
		}
	}
	if name != "chain-too-long" && name != "vxlan-masq" {
		for _, f := range fs {
			t.Errorf("%s: unexpected finding %s: %s", name, f.ID, f.Reason)
		}
	}
}

// comparable keeps the lines a report of the capture must print as the
// live run printed them, in the same order: events, incidents, findings
// and summaries. (An incident that waits out the reorder window ends at an
// idle of the live reader, which the capture keeps, or at the same record
// in both: docs/capture-format.md, Idle.)
func comparable(raw []string, lines []map[string]any) []string {
	var kept []string
	for i, m := range lines {
		switch m["kind"] {
		case "event", "incident", "finding", "summary":
			kept = append(kept, raw[i])
		}
	}
	return kept
}

// sameOutput fails unless a report printed the live run's comparable lines,
// naming the first that differs.
func sameOutput(t *testing.T, live, report []string) {
	t.Helper()
	for i := range min(len(live), len(report)) {
		if live[i] != report[i] {
			t.Errorf("report differs from the live run at its line %d of %d compared:\nlive:   %s\nreport: %s", i+1, len(live), live[i], report[i])
			return
		}
	}
	if len(live) != len(report) {
		t.Errorf("report printed %d event/incident/finding/summary lines, the live run %d", len(report), len(live))
	}
}
