// Package selector picks, after the fact, what a report of captures prints:
// the flow filters a live trace applies in the kernel (tracer.Filter), here
// applied to recorded events, incidents and findings, and what only a
// correlated incident has (its race, outcome and pod) or a report can ask
// (a time window). The summary then counts what was selected.
package selector

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ctprobe/ctprobe/tracer"
	"github.com/ctprobe/ctprobe/tracer/event"
	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/names"
)

// Selector selects events, incidents and findings; every field left at its
// zero value selects everything. A nil *Selector selects everything too.
type Selector struct {
	// Flow selects by protocol, address and port (either end of the
	// original or reply tuple, before or after NAT), netns, and the
	// sending process. An incident is selected when either of its packets
	// is; an event by its own tuples and netns, and by process only where
	// its task is the sender (event.InTask: ct_in and confirm).
	Flow tracer.Filter
	// Races, if not empty, selects incidents of these races. Events and
	// findings have no race: a selection by race leaves them out.
	Races []incident.RaceType
	// Outcomes, if not empty, selects incidents with these outcomes; like
	// Races, it leaves out events and findings.
	Outcomes []incident.Outcome
	// Pod selects incidents and findings whose packets were sent from this
	// pod: "namespace/name", a name in any namespace, or a UID. Events carry no
	// pod names (they are looked up per incident), so it leaves them out.
	Pod string
	// Since and Until bound the time of what is selected: an event's or a
	// finding's kernel time, an incident's loser's confirm. Zero: open.
	Since, Until time.Time

	// since and until are Since and Until in kernel time of one boot
	// (ForBoot); until 0: open.
	since, until uint64
}

// Empty says that s selects everything.
func (s *Selector) Empty() bool {
	return s == nil || s.Flow == (tracer.Filter{}) && len(s.Races) == 0 && len(s.Outcomes) == 0 && s.Pod == "" &&
		s.Since.IsZero() && s.Until.IsZero()
}

// ForBoot is s for the records of one boot of a node, whose kernel time 0
// was bootUnixNano (capture.Header.BootTimeUnixNano): kernel times are
// compared with Since and Until through it.
func (s *Selector) ForBoot(bootUnixNano int64) *Selector {
	if s == nil {
		return nil
	}
	c := *s
	c.since, c.until = 0, 0
	if !s.Since.IsZero() {
		c.since = ktime(s.Since, bootUnixNano)
	}
	if !s.Until.IsZero() {
		c.until = max(ktime(s.Until, bootUnixNano), 1) // 0 would mean open
	}
	return &c
}

// ktime is t in kernel time since boot, 0 before it.
func ktime(t time.Time, bootUnixNano int64) uint64 {
	if d := t.UnixNano() - bootUnixNano; d > 0 {
		return uint64(d)
	}
	return 0
}

// inWindow says whether kernel time t is within Since and Until (both
// included).
func (s *Selector) inWindow(t uint64) bool {
	return t >= s.since && (s.until == 0 || t <= s.until)
}

// Event says whether ev is selected.
func (s *Selector) Event(ev *event.Event) bool {
	if s == nil {
		return true
	}
	if len(s.Races) > 0 || len(s.Outcomes) > 0 || s.Pod != "" {
		return false
	}
	f := &s.Flow
	if f.Netns != 0 && ev.Netns != f.Netns || f.PID != 0 && (!event.InTask(ev.Kind, ev.Flags, ev.Hook) || ev.PID != f.PID) {
		return false
	}
	return s.inWindow(ev.Time) && s.tuples(ev.Orig, ev.Reply, ev.Before)
}

// Incident says whether inc is selected.
func (s *Selector) Incident(inc *incident.Incident) bool {
	if s == nil {
		return true
	}
	if len(s.Races) > 0 && !slices.Contains(s.Races, inc.Race) ||
		len(s.Outcomes) > 0 && !slices.Contains(s.Outcomes, inc.Outcome) || !s.inWindow(inc.Time) {
		return false
	}
	return s.packet(&inc.Loser) || inc.HasWinner && s.packet(&inc.Winner)
}

// Finding says whether f is selected.
func (s *Selector) Finding(f *incident.Finding) bool {
	if s == nil {
		return true
	}
	if len(s.Races) > 0 || len(s.Outcomes) > 0 {
		return false
	}
	return s.inWindow(f.Time) && s.packet(&f.Flow)
}

// packet says whether one packet of an incident or finding is selected by
// the flow filters and the pod.
func (s *Selector) packet(p *incident.Packet) bool {
	f := &s.Flow
	if f.Netns != 0 && p.Netns != f.Netns || f.PID != 0 && (!p.Task || p.PID != f.PID) {
		return false
	}
	if s.Pod != "" && !podIs(p.Names.Pod, s.Pod) {
		return false
	}
	return s.tuples(p.Orig, p.Reply, p.ReplyPre)
}

// podIs says whether pod is the one named: "namespace/name", "name", or
// its UID (what a trace named from cgroup paths alone knows).
func podIs(pod names.Pod, name string) bool {
	if ns, n, ok := strings.Cut(name, "/"); ok {
		return pod.Namespace == ns && pod.Name == n
	}
	return pod.Name == name || pod.UID == name
}

// tuples applies the protocol, host and port filters to a packet's
// tuples, as the kernel side does (bpf/filter.bpf.h): the protocol of the
// first; the host and port at either end of any. Unset tuples (a NAT
// event's Before on another kind) hold no address and port 0, so they
// match neither.
func (s *Selector) tuples(ts ...event.Tuple) bool {
	f := &s.Flow
	if f.Proto != 0 && ts[0].Proto != f.Proto {
		return false
	}
	if f.Host.IsValid() && !slices.ContainsFunc(ts, func(t event.Tuple) bool {
		return t.Src.Unmap() == f.Host || t.Dst.Unmap() == f.Host
	}) {
		return false
	}
	return f.Port == 0 || slices.ContainsFunc(ts, func(t event.Tuple) bool { return t.SrcPort == f.Port || t.DstPort == f.Port })
}

// CountersComparable says whether the kernel's counters of the selected
// namespaces can stand beside what s selects: the kernel counts every flow
// of a netns over the whole capture, so only a selection of whole
// namespaces (or of nothing) keeps them comparable.
func (s *Selector) CountersComparable() bool {
	return s.Empty() || s.withoutNetns().Empty()
}

func (s *Selector) withoutNetns() *Selector {
	c := *s
	c.Flow.Netns = 0
	return &c
}

// Counters are the kernel's counters to report beside what s selects:
// all of them for an empty selection, the selected netns's for a
// selection of one netns, none otherwise (CountersComparable).
func (s *Selector) Counters(c []kstat.NetnsCounters) []kstat.NetnsCounters {
	switch {
	case s.Empty():
		return c
	case !s.CountersComparable():
		return nil
	}
	return slices.DeleteFunc(slices.Clone(c), func(n kstat.NetnsCounters) bool { return n.Netns != uint64(s.Flow.Netns) })
}

// String says what s selects, for the summary ("" when everything): the
// flow filters as their names and values (tracer.Filter.Strings), then
// race, outcome, pod, since and until.
func (s *Selector) String() string {
	if s.Empty() {
		return ""
	}
	var parts []string
	flow := s.Flow.Strings()
	for _, k := range []string{"proto", "host", "port", "netns", "pid"} {
		if v, ok := flow[k]; ok {
			parts = append(parts, k+" "+v)
		}
	}
	if len(s.Races) > 0 {
		rs := make([]string, len(s.Races))
		for i, r := range s.Races {
			rs[i] = strconv.Itoa(int(r))
		}
		parts = append(parts, "race "+strings.Join(rs, ","))
	}
	if len(s.Outcomes) > 0 {
		os := make([]string, len(s.Outcomes))
		for i, o := range s.Outcomes {
			os[i] = string(o)
		}
		parts = append(parts, "outcome "+strings.Join(os, ","))
	}
	if s.Pod != "" {
		parts = append(parts, "pod "+s.Pod)
	}
	if !s.Since.IsZero() {
		parts = append(parts, "since "+s.Since.Format(time.RFC3339Nano))
	}
	if !s.Until.IsZero() {
		parts = append(parts, "until "+s.Until.Format(time.RFC3339Nano))
	}
	return strings.Join(parts, ", ")
}

// ParseRaces parses a comma-separated list of race numbers (0-5).
func ParseRaces(s string) ([]incident.RaceType, error) {
	var out []incident.RaceType
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || n >= len(incident.Races) {
			return nil, fmt.Errorf("race %q: want race numbers 0-%d, comma-separated (the summary's race table lists them)", f, len(incident.Races)-1)
		}
		out = append(out, incident.RaceType(n))
	}
	return out, nil
}

// Outcomes are the outcomes an incident can have, in table order.
var Outcomes = []incident.Outcome{incident.OutcomeMerged, incident.OutcomeNATClash, incident.OutcomeDropped, incident.OutcomePortMoved, incident.OutcomeUnknown}

// ParseOutcomes parses a comma-separated list of outcomes.
func ParseOutcomes(s string) ([]incident.Outcome, error) {
	var out []incident.Outcome
	for _, f := range strings.Split(s, ",") {
		o := incident.Outcome(strings.TrimSpace(f))
		if !slices.Contains(Outcomes, o) {
			want := make([]string, len(Outcomes))
			for i, o := range Outcomes {
				want[i] = string(o)
			}
			return nil, fmt.Errorf("outcome %q: want %s, comma-separated", f, strings.Join(want, ", "))
		}
		out = append(out, o)
	}
	return out, nil
}

// ParseTime parses a time bound as a report's reader gives it: an RFC 3339
// time (JSON's "time"); a date and time of day, "2006-01-02 15:04:05" (or
// with a T), in loc; a time of day as text lines print it, "15:04:05" with
// an optional fraction, on the first day at or after start on which it
// falls after start (in loc); or "+DURATION" after start (e.g. +90s).
// start is when the earliest capture starts.
func ParseTime(s string, start time.Time, loc *time.Location) (time.Time, error) {
	if d, ok := strings.CutPrefix(s, "+"); ok {
		dur, err := time.ParseDuration(d)
		if err != nil || dur < 0 {
			return time.Time{}, fmt.Errorf("time %q: want +DURATION after the capture's start, such as +90s or +2m30s", s)
		}
		return start.Add(dur), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	if clock, err := time.ParseInLocation("15:04:05.999999999", s, loc); err == nil {
		first := start.In(loc)
		y, m, d := first.Date()
		t := time.Date(y, m, d, clock.Hour(), clock.Minute(), clock.Second(), clock.Nanosecond(), loc)
		if t.Before(first) {
			t = time.Date(y, m, d+1, clock.Hour(), clock.Minute(), clock.Second(), clock.Nanosecond(), loc)
		}
		return t, nil
	}
	return time.Time{}, fmt.Errorf("time %q: want an RFC 3339 time (2006-01-02T15:04:05Z), a local \"2006-01-02 15:04:05\", a time of day 15:04:05[.000001] (the first after the capture's start), or +DURATION after the start", s)
}
