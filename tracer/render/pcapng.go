package render

import (
	"fmt"
	"io"
	"sync"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/loss"
	"github.com/ctprobe/ctprobe/tracer/pcapng"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// The pcapng interfaces: the same packets as they were sent and as NAT
// rewrote them.
const (
	ifBeforeNAT = iota
	ifAfterNAT
)

// PCAPNG writes what a trace knows of each packet as packets (package
// pcapng): both packets of every incident, before and after NAT, commented
// with the race, the outcome and which side lost; with --all also every
// new conntrack entry that did not clash. Plans, losses, warnings and
// summaries are not packets and are left out.
type PCAPNG struct {
	mu  sync.Mutex
	w   io.Writer
	pw  *pcapng.Writer
	opt Options
}

// NewPCAPNG returns a pcapng renderer writing to w; its section header is
// written with the capture's header, or else with the first packet.
func NewPCAPNG(w io.Writer, opt Options) *PCAPNG { return &PCAPNG{w: w, opt: opt} }

func (p *PCAPNG) writer() (*pcapng.Writer, error) {
	if p.pw == nil {
		pw, err := pcapng.NewWriter(p.w, "ctprobe", "before NAT", "after NAT")
		if err != nil {
			return nil, err
		}
		p.pw = pw
	}
	return p.pw, nil
}

// write writes one packet's two views, before and after NAT.
func (p *PCAPNG) write(ktime uint64, orig, reply event.Tuple, payload []byte, comment string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	pw, err := p.writer()
	if err != nil {
		return err
	}
	t := p.opt.Clock.Time(ktime)
	before := pcapng.Packet{Src: orig.Src, Dst: orig.Dst, SrcPort: orig.SrcPort, DstPort: orig.DstPort, Proto: orig.Proto, Payload: payload}
	if err := pw.WritePacket(ifBeforeNAT, t, before.Bytes(), comment); err != nil {
		return err
	}
	if !reply.Src.IsValid() {
		return nil
	}
	// After NAT the packet goes to where the reply comes from, from where
	// the reply goes to.
	after := before
	after.Src, after.SrcPort, after.Dst, after.DstPort = reply.Dst, reply.DstPort, reply.Src, reply.SrcPort
	return pw.WritePacket(ifAfterNAT, t, after.Bytes(), comment)
}

// Event writes a new conntrack entry that did not clash (--all); a clash's
// records are written with its incident.
func (p *PCAPNG) Event(ev *event.Event) error {
	if ev.Kind != event.Confirm || confirmResult(ev) != "inserted" {
		return nil
	}
	comment := fmt.Sprintf("ctprobe: new conntrack entry %#x, verdict %s", ev.CT, verdictJSON(ev.Verdict))
	return p.write(ev.Time, ev.Orig, ev.Reply, dnsPayload(ev.Payload[:ev.PayloadLen]), comment)
}

// Incident writes both packets of a clash, the loser's first.
func (p *PCAPNG) Incident(inc *incident.Incident) error {
	for _, side := range []struct {
		pk   *incident.Packet
		role string
	}{{&inc.Loser, "loser"}, {&inc.Winner, "winner"}} {
		if side.role == "winner" && !inc.HasWinner {
			continue
		}
		if !side.pk.Orig.Src.IsValid() {
			continue
		}
		comment := fmt.Sprintf("ctprobe: race %d (%s), outcome %s, %s, ct %#x", inc.Race, inc.Race.Name(), inc.Outcome, side.role, side.pk.CT)
		if n := appendNames(nil, &side.pk.Names); len(n) > 0 {
			comment += ", " + string(n)
		}
		t := side.pk.Born
		if t == 0 {
			t = inc.Time
		}
		if err := p.write(t, side.pk.Orig, side.pk.Reply, dnsQueryPayload(&side.pk.DNS), comment); err != nil {
			return err
		}
	}
	return nil
}

// Finding writes the packet of the entry a finding is about.
func (p *PCAPNG) Finding(f *incident.Finding) error {
	if !f.Flow.Orig.Src.IsValid() {
		return nil
	}
	comment := fmt.Sprintf("ctprobe: finding %s, ct %#x", f.ID, f.Flow.CT)
	return p.write(f.Time, f.Flow.Orig, f.Flow.Reply, dnsQueryPayload(&f.Flow.DNS), comment)
}

// dnsPayload is a captured DNS message rebuilt whole from its question (the
// capture holds at most its first 64 bytes), or nothing.
func dnsPayload(captured []byte) []byte {
	if len(captured) == 0 {
		return nil
	}
	q, err := dnsmsg.Parse(captured)
	if err != nil {
		return nil
	}
	return dnsQueryPayload(&incident.DNSQuery{ID: q.ID, Type: q.Type, Name: q.Name, Valid: true, Response: q.Response, Truncated: q.Truncated})
}

// dnsQueryPayload rebuilds a query from its question; a response, or a
// question cut short, is left out rather than made up.
func dnsQueryPayload(q *incident.DNSQuery) []byte {
	if !q.Valid || q.Response || q.Truncated {
		return nil
	}
	b, err := dnsmsg.BuildQuery(q.ID, q.Name, q.Type)
	if err != nil {
		return nil
	}
	return b
}

// Header starts the file: a capture without a packet to write still gives
// a pcapng file, of none (Wireshark's capinfos took an empty file for
// another format).
func (p *PCAPNG) Header(*Header) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := p.writer()
	return err
}

func (p *PCAPNG) Lost(loss.Count) error          { return nil }
func (p *PCAPNG) Summary(*summary.Summary) error { return nil }
func (p *PCAPNG) Plan([]plan.Entry) error        { return nil }
func (p *PCAPNG) Probes(*Probes) error           { return nil }
func (p *PCAPNG) Warning(string) error           { return nil }
func (p *PCAPNG) Flush() error                   { return nil } // packets are written as they come
