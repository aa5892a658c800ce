// Package doctor says which conntrack races will drop packets on this node
// before any of them happens, from what can be read now: the kernel (which
// races it settles), the NAT rules, the conntrack table and how each pod
// resolves names. It loads no BPF program, so it runs where probes cannot
// attach. docs/doctor.md says what is read how, and each finding.
package doctor

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/incident"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/netns"
)

// Severity says what a finding means for packets.
type Severity string

const (
	// SeverityDrops: packets will be lost on this node.
	SeverityDrops Severity = "drops"
	// SeveritySettled: the races happen, and this kernel settles them.
	SeveritySettled Severity = "settled"
	// SeverityInfo: worth knowing; no race follows from it alone.
	SeverityInfo Severity = "info"
)

// Prediction is how this kernel ends one race that a finding makes
// possible (incident.RaceType.EndsOn); a trace that sees the race should
// see this outcome.
type Prediction struct {
	Race    incident.RaceType `json:"race"`
	Outcome incident.Outcome  `json:"outcome"`
	// When is the condition, set by other traffic, under which the
	// finding's setup gives this race ("" when the setup alone does). A
	// conditional race does not set the finding's severity.
	When string `json:"when,omitempty"`
}

// Finding is one thing doctor concluded about one namespace.
type Finding struct {
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	Summary  string   `json:"summary"`
	// Evidence is what it rests on: the rule, the option, the value.
	Evidence   []string     `json:"evidence"`
	Mitigation string       `json:"mitigation"`
	Races      []Prediction `json:"races"`
}

// Namespace is one network namespace and what was read of it.
type Namespace struct {
	Inode uint64 `json:"netns"`
	Path  string `json:"path"`
	// Name is how the user knows it: a /run/netns name, "pid N (comm)",
	// or a pod name that Options.NameOf supplies.
	Name      string     `json:"name"`
	Conntrack *Conntrack `json:"conntrack"` // nil: conntrack not loaded here
	Rules     []Rule     `json:"rules"`
	Tunnels   []string   `json:"tunnels"`
	Resolvers []Resolver `json:"resolvers"`
	Findings  []Finding  `json:"findings"`
	// Unread says what could not be read, and why.
	Unread []string `json:"unread"`
}

// KernelReport is the kernel and how it ends each race on UDP.
type KernelReport struct {
	Release string `json:"release"`
	// Races: how this kernel ends each race of a UDP flow with NAT.
	Races []Prediction `json:"races"`
	// ClashResolve: the kernel counts settled clashes in clash_resolve
	// (5.10+); before, insert_failed counts them too.
	ClashResolve bool `json:"clash_resolve"`
}

// Report is what doctor found on the node.
type Report struct {
	Kernel     KernelReport `json:"kernel"`
	Namespaces []Namespace  `json:"namespaces"`
}

// Drops says whether any finding says packets will be lost.
func (r *Report) Drops() bool {
	for i := range r.Namespaces {
		for _, f := range r.Namespaces[i].Findings {
			if f.Severity == SeverityDrops {
				return true
			}
		}
	}
	return false
}

// Options choose what doctor reads.
type Options struct {
	// Netns limits the report to these namespaces (paths or inode
	// numbers); empty: every namespace. The host's namespace is read too,
	// for the DNAT its pods' queries go through.
	Netns []string
	// FillThreshold is the share of nf_conntrack_max above which the
	// table counts as filling (conntrack-table-fill); 0: DefaultFillThreshold.
	FillThreshold float64
	// NameOf names a namespace by inode (a pod name from the container
	// runtime); false keeps the default name.
	NameOf func(inode uint64) (string, bool)
}

// DefaultFillThreshold is the share of nf_conntrack_max that
// conntrack-table-fill warns above.
const DefaultFillThreshold = 0.9

// Run reads the node and returns its report.
func Run(opts Options) (*Report, error) {
	if opts.FillThreshold == 0 {
		opts.FillThreshold = DefaultFillThreshold
	}
	if opts.FillThreshold < 0 || opts.FillThreshold > 1 {
		return nil, fmt.Errorf("fill threshold %v: want a share between 0 and 1", opts.FillThreshold)
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	release := unix.ByteSliceToString(uts.Release[:])

	nss, focus, err := namespaces(opts.Netns)
	if err != nil {
		return nil, err
	}
	procs, err := scanProcesses()
	if err != nil {
		return nil, err
	}
	byNetns := map[uint64][]process{}
	for _, p := range procs {
		byNetns[p.netns] = append(byNetns[p.netns], p)
	}
	tl := findTools()
	// Each namespace is read once, on its own thread; reading waits
	// mostly on the rule tools, so a few per CPU.
	sem := make(chan struct{}, 4*runtime.NumCPU())
	var wg sync.WaitGroup
	libcs := map[fileKey][2]string{}
	var libMu sync.Mutex
	for i := range nss {
		if opts.NameOf != nil {
			if n, ok := opts.NameOf(nss[i].Inode); ok {
				nss[i].Name = n
			}
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(ns *Namespace) {
			defer func() { <-sem; wg.Done() }()
			readNamespace(ns, tl)
			libMu.Lock()
			ns.Resolvers = resolversOf(byNetns[ns.Inode], libcs)
			libMu.Unlock()
		}(&nss[i])
	}
	wg.Wait()

	k := incident.ParseKernelRelease(release)
	rep := &Report{Kernel: kernelReport(release, k, nss)}
	node := analyzeNode(nss)
	for i := range nss {
		nss[i].Findings = node.findings(&nss[i], k, opts.FillThreshold)
	}
	if focus != nil {
		nss = slices.DeleteFunc(nss, func(n Namespace) bool { return !focus[n.Inode] })
	}
	rep.Namespaces = nss
	return rep, nil
}

// namespaces lists the namespaces to read: all, or those asked for and the
// host's. focus holds the inodes asked for; nil for all.
func namespaces(want []string) (out []Namespace, focus map[uint64]bool, err error) {
	all, err := kstat.Namespaces()
	if err != nil {
		return nil, nil, err
	}
	// The host's namespace is named for what it is, not for whichever of
	// its thousand processes was listed first.
	host := hostNetns()
	for i := range all {
		if all[i].Inode == host && !strings.HasPrefix(all[i].Path, "/run/netns/") {
			all[i].Name = "host"
		}
	}
	if len(want) == 0 {
		for _, n := range all {
			out = append(out, Namespace{Inode: n.Inode, Path: n.Path, Name: n.Name})
		}
		return out, nil, nil
	}
	focus = map[uint64]bool{}
	paths := map[uint64]string{}
	for _, w := range want {
		ino, err := strconv.ParseUint(w, 10, 64)
		if err != nil {
			if ino, err = netns.Inode(w); err != nil {
				return nil, nil, fmt.Errorf("netns %q: not an inode number, and %w", w, err)
			}
			paths[ino] = w
		}
		focus[ino] = true
	}
	seen := map[uint64]bool{}
	for _, n := range all {
		if focus[n.Inode] || n.Inode == host {
			out = append(out, Namespace{Inode: n.Inode, Path: n.Path, Name: n.Name})
			seen[n.Inode] = true
		}
	}
	for ino := range focus {
		if seen[ino] {
			continue
		}
		p, ok := paths[ino]
		if !ok {
			return nil, nil, fmt.Errorf("netns %d: no process or /run/netns name holds it (list them with lsns -t net)", ino)
		}
		out = append(out, Namespace{Inode: ino, Path: p, Name: p})
	}
	return out, focus, nil
}

// hostNetns is the inode of the initial namespace: PID 1's, or, where a
// sandbox hides PID 1, kthreadd's (PID 2), a kernel thread in init_net.
func hostNetns() uint64 {
	for _, p := range []string{"/proc/1/ns/net", "/proc/2/ns/net"} {
		if ino, err := netns.Inode(p); err == nil {
			return ino
		}
	}
	return 0
}

// kernelReport says how this kernel ends each race on a UDP flow with NAT.
func kernelReport(release string, k incident.KernelVersion, nss []Namespace) KernelReport {
	kr := KernelReport{Release: release}
	for r := incident.RaceIdentical; r <= incident.RaceReverse; r++ {
		p := incident.Path{Proto: 17, NAT: true, PortsMove: r == incident.RaceNATPort}
		kr.Races = append(kr.Races, Prediction{Race: r, Outcome: r.EndsOn(k, p)})
	}
	// The stat file says whether the column exists; without conntrack
	// loaded anywhere, the version does (bc92470413f3, 5.10).
	kr.ClashResolve = k.AtLeast(5, 10)
	for _, n := range nss {
		if n.Conntrack != nil && n.Conntrack.Counters != nil {
			_, kr.ClashResolve = n.Conntrack.Counters["clash_resolve"]
			break
		}
	}
	return kr
}
