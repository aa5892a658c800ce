package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctprobe/ctprobe/tracer/dnsmsg"
	"github.com/ctprobe/ctprobe/tracer/kstat"
)

// Addresses of the lab's cluster. Pods are 10.244.1.x, DNS endpoints
// 10.244.2.N, the ClusterIP 10.96.0.10 (IPv6: fd00:244::x, fd00:244:2::N,
// fd00:96::10).
var (
	ClusterIP4   = netip.MustParseAddr("10.96.0.10")
	ClusterIP6   = netip.MustParseAddr("fd00:96::10")
	clusterCIDR4 = netip.MustParsePrefix("10.244.0.0/16")
	clusterCIDR6 = netip.MustParsePrefix("fd00:244::/32")
	serviceNet4  = netip.MustParsePrefix("10.96.0.0/12")
	// The node's address on its links to the DNS endpoints: their gateway,
	// the source of the local scenario and the SNAT address of race 4.
	nodeDNSAddr4 = netip.MustParseAddr("10.244.2.254")
	nodePodAddr4 = netip.MustParseAddr("10.244.1.1")
	// IPv6 gateways are link-local, like Calico's, so one address serves
	// every veth.
	gwLinkLocal6 = netip.MustParseAddr("fe80::1")
	// SNATTarget is where snat-one-port maps every flow (one port: race 4).
	SNATTarget = netip.AddrPortFrom(nodeDNSAddr4, 40000)
)

func podAddr(family, i int) netip.Addr {
	if family == 6 {
		return netip.MustParseAddr(fmt.Sprintf("fd00:244::%x", 1+i))
	}
	return netip.AddrFrom4([4]byte{10, 244, 1, byte(1 + i)})
}

func dnsAddr(family, n int) netip.Addr {
	if family == 6 {
		return netip.MustParseAddr(fmt.Sprintf("fd00:244:2::%x", n))
	}
	return netip.AddrFrom4([4]byte{10, 244, 2, byte(n)})
}

// MaxEndpoints bounds --endpoints (addresses 10.244.2.1 .. .N stay below the
// node's .254).
const MaxEndpoints = 32

// Options tune Setup. The zero value is fine.
type Options struct {
	// Endpoints overrides the scenario's number of DNS endpoints (0: keep).
	Endpoints int
	// NAT is "iptables" (default) or "nft": how rules are written.
	NAT string
	// IPTables is the iptables binary (default: iptables-legacy if present,
	// else iptables). The IPv6 one is derived (iptables-nft -> ip6tables-nft).
	IPTables string
	// Timeout is how long a lookup waits for its replies (default 300ms).
	Timeout time.Duration
	// Name is the DNS name queried (default "lab.example.").
	Name string
	// UDPTimeout, if set (whole seconds), replaces the kernel's UDP
	// conntrack timeouts (nf_conntrack_udp_timeout and _stream, 30 s and
	// 120 s by default) in every netns of the topology before its first
	// flow, so that entries expire soon; a Flood then lets its source ports
	// wrap (see FloodFirstPort).
	UDPTimeout time.Duration
	// Comm, if set, names the client threads (prctl(PR_SET_NAME), which
	// keeps at most 15 bytes): what a trace shows as the sending process.
	// Any process may name itself anything, escape sequences included.
	Comm string
	// Logf, if set, gets progress lines.
	Logf func(format string, args ...any)
}

const (
	DefaultTimeout = 300 * time.Millisecond
	DefaultName    = "lab.example."
)

// Topology is a running lab: namespaces, links, rules, responders and client
// threads. Close removes all of it.
type Topology struct {
	Scenario Scenario
	Options  Options
	// Prefix starts every netns name of this topology (ctl<pid>-<n>-).
	Prefix string
	// Namespaces in creation order.
	Namespaces []*Netns
	// Target is what the clients query: the ClusterIP, or for nonat and
	// snat-one-port the DNS pod itself.
	Target netip.AddrPort
	// Tools used, for the report.
	IPBin, RuleBin string

	endpoints  int
	byRole     map[string]*Netns
	senders    []*sender
	responders []*responder
	flusher    *ctnetlinkSocket

	mu        sync.Mutex // serialises Lookups and Close
	closed    bool
	closeErr  error
	closeOnce sync.Once
}

var topoSeq atomic.Int32

func (t *Topology) logf(format string, args ...any) {
	if t.Options.Logf != nil {
		t.Options.Logf(format, args...)
	}
}

// NetnsByRole returns the namespace with a role (node, node2, pod, pod2,
// dns1, ...), or nil.
func (t *Topology) NetnsByRole(role string) *Netns { return t.byRole[role] }

// Endpoints is the number of DNS endpoints.
func (t *Topology) Endpoints() int { return t.endpoints }

// lookTool finds a binary or says what to install.
func lookTool(name, pkg string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: install %s", name, pkg)
	}
	return p, nil
}

// ruleTool picks the binary that writes the rules.
func ruleTool(sc Scenario, o Options) (string, error) {
	if o.NAT == "nft" {
		return lookTool("nft", "nftables")
	}
	ipt := o.IPTables
	if ipt != "" {
		if sc.Family == 6 {
			dir, base := filepath.Split(ipt)
			if !strings.HasPrefix(base, "iptables") {
				return "", fmt.Errorf("cannot derive the IPv6 tool from --iptables %s: name it iptables-legacy, iptables-nft or iptables", ipt)
			}
			ipt = dir + "ip6" + base[len("ip"):]
		}
		return lookTool(ipt, "iptables")
	}
	legacy, plain := "iptables-legacy", "iptables"
	if sc.Family == 6 {
		legacy, plain = "ip6tables-legacy", "ip6tables"
	}
	// Prefer legacy (what kube-proxy traditionally drives and what every
	// kernel in scope has); fall back to whatever `iptables` is.
	if p, err := exec.LookPath(legacy); err == nil {
		return p, nil
	}
	if p, err := exec.LookPath(plain); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s not found: install iptables (or use --nat nft)", legacy)
}

func (o *Options) resolve(sc Scenario) (int, error) {
	if o.NAT == "" {
		o.NAT = "iptables"
	}
	if o.NAT != "iptables" && o.NAT != "nft" {
		return 0, fmt.Errorf("nat mode %q: use iptables or nft", o.NAT)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Timeout < 0 || o.Timeout > time.Minute {
		return 0, fmt.Errorf("timeout %v: use a value between 1ms and 1m", o.Timeout)
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.UDPTimeout < 0 || o.UDPTimeout%time.Second != 0 {
		return 0, fmt.Errorf("udp timeout %v: use whole seconds", o.UDPTimeout)
	}
	if _, err := dnsmsg.BuildQuery(0, o.Name, dnsmsg.TypeA); err != nil {
		return 0, err
	}
	n := sc.Endpoints
	if o.Endpoints != 0 {
		if sc.FixedEndpoints && o.Endpoints != sc.Endpoints {
			return 0, fmt.Errorf("scenario %s always has %d endpoint(s)", sc.Name, sc.Endpoints)
		}
		if o.Endpoints < 1 || o.Endpoints > MaxEndpoints {
			return 0, fmt.Errorf("endpoints %d: use 1 to %d", o.Endpoints, MaxEndpoints)
		}
		n = o.Endpoints
	}
	return n, nil
}

// Setup builds the scenario's topology. On error everything built so far is
// removed. ctx bounds the setup (every command also has its own deadline).
func Setup(ctx context.Context, sc Scenario, o Options) (*Topology, error) {
	n, err := o.resolve(sc)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the lab needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces: run it as root")
	}
	ipBin, err := lookTool("ip", "iproute2")
	if err != nil {
		return nil, err
	}
	ruleBin, err := ruleTool(sc, o)
	if err != nil {
		return nil, err
	}
	t := &Topology{
		Scenario:  sc,
		Options:   o,
		Prefix:    fmt.Sprintf("ctl%d-%d-", os.Getpid(), topoSeq.Add(1)),
		IPBin:     ipBin,
		RuleBin:   ruleBin,
		endpoints: n,
		byRole:    map[string]*Netns{},
	}
	if err := t.build(ctx); err != nil {
		if cerr := t.Close(); cerr != nil {
			err = fmt.Errorf("%w (cleanup: %v)", err, cerr)
		}
		return nil, err
	}
	return t, nil
}

func (t *Topology) addNetns(role string) (*Netns, error) {
	ns, err := createNetns(t.Prefix + role)
	if err != nil {
		return nil, err
	}
	ns.Role = role
	t.Namespaces = append(t.Namespaces, ns)
	t.byRole[role] = ns
	return ns, nil
}

// clientRoles are the netns the client threads live in.
func (t *Topology) clientRoles() []string {
	switch {
	case t.Scenario.Path == PathLocal:
		return []string{"node", "node"}
	case t.Scenario.sequential():
		return []string{"pod", "pod2"}
	case t.Scenario.lookup == lookupReverse:
		return []string{"pod", "dns1"} // the two peers
	default:
		return []string{"pod", "pod"}
	}
}

// nftTable is the lab's nftables table name.
const nftTable = "ctlab"

// netnsReading is one netns's counters (kstat.Counters) at one moment.
type netnsReading struct {
	Netns    *Netns         `json:"netns"`
	Counters kstat.Counters `json:"counters"`
}

// readCounters reads the conntrack counters of every netns of the topology.
func (t *Topology) readCounters() ([]netnsReading, error) {
	out := make([]netnsReading, 0, len(t.Namespaces))
	for _, ns := range t.Namespaces {
		c, err := kstat.ReadNetns(ns.Path)
		if err != nil {
			return nil, err
		}
		out = append(out, netnsReading{Netns: ns, Counters: c})
	}
	return out, nil
}

// deltas pairs two readings of Counters into the report of each netns.
func deltas(before, after []netnsReading) []NetnsStats {
	out := make([]NetnsStats, 0, len(before))
	for i := range before {
		out = append(out, NetnsStats{
			Netns:  *before[i].Netns,
			Before: before[i].Counters,
			After:  after[i].Counters,
			Delta:  after[i].Counters.Sub(before[i].Counters),
		})
	}
	return out
}

// Close stops the responders and client threads and removes every namespace
// (and with them the links and rules). It is safe to call more than once. It
// waits for a Lookups in progress: cancel that call's context first.
func (t *Topology) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		t.closed = true
		for _, s := range t.senders {
			s.stop()
		}
		for _, r := range t.responders {
			r.Close()
		}
		t.flusher.Close()
		errs := []error{restoreGlobals(t.Prefix)}
		for i := len(t.Namespaces) - 1; i >= 0; i-- {
			if err := deleteNetns(t.Namespaces[i].Path); err != nil {
				errs = append(errs, err)
			}
		}
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}
