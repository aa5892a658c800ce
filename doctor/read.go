package doctor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/netns"
)

// Conntrack is one namespace's conntrack table and counters
// (/proc/sys/net/netfilter, /proc/net/stat/nf_conntrack).
type Conntrack struct {
	Count            uint64 `json:"count"`
	Max              uint64 `json:"max"`
	Buckets          uint64 `json:"buckets"`
	UDPTimeout       uint64 `json:"udp_timeout"`
	UDPStreamTimeout uint64 `json:"udp_timeout_stream"`
	// Counters are the race counters since the namespace was made
	// (kstat.Counters.Values: clash_resolve from 5.10, chain_too_long
	// from 5.15).
	Counters  map[string]uint64 `json:"counters"`
	EarlyDrop uint64            `json:"early_drop"`
}

// tools are the programs that print the rules; "" when not installed.
type tools struct {
	nft             string
	legacy, legacy6 string
	iptNft, ip6tNft string
}

func findTools() tools {
	look := func(names ...string) string {
		for _, n := range names {
			if p, err := exec.LookPath(n); err == nil {
				return p
			}
		}
		return ""
	}
	return tools{
		nft:     look("nft"),
		legacy:  look("iptables-legacy-save"),
		legacy6: look("ip6tables-legacy-save"),
		iptNft:  look("iptables-nft-save"),
		ip6tNft: look("ip6tables-nft-save"),
	}
}

// toolTimeout bounds each rule tool's run in one namespace.
const toolTimeout = 10 * time.Second

// readNamespace reads everything doctor needs of one namespace, from one
// thread inside it: conntrack sysctls and counters, the nat rules of every
// tool that wrote some, tunnel devices. Tools run as children of that
// thread, so in the namespace.
func readNamespace(ns *Namespace, tl tools) {
	err := netns.Run(ns.Path, func() error {
		ns.Conntrack = readConntrack()
		var err error
		if ns.Tunnels, err = tunnelDevices(); err != nil {
			ns.Unread = append(ns.Unread, err.Error())
		}
		readRules(ns, tl)
		return nil
	})
	if err != nil {
		ns.Unread = append(ns.Unread, err.Error())
	}
}

// readConntrack reads the calling thread's netns's table; nil when
// conntrack is not loaded (the sysctls exist only then).
func readConntrack() *Conntrack {
	get := func(name string) (uint64, bool) {
		b, err := os.ReadFile("/proc/sys/net/netfilter/" + name)
		if err != nil {
			return 0, false
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return v, err == nil
	}
	count, ok := get("nf_conntrack_count")
	if !ok {
		return nil
	}
	c := &Conntrack{Count: count}
	c.Max, _ = get("nf_conntrack_max")
	c.Buckets, _ = get("nf_conntrack_buckets")
	c.UDPTimeout, _ = get("nf_conntrack_udp_timeout")
	c.UDPStreamTimeout, _ = get("nf_conntrack_udp_timeout_stream")
	if k, err := kstat.Read(); err == nil {
		c.Counters = k.Values()
		c.EarlyDrop = k.EarlyDrop
	}
	return c
}

// readRules reads the nat rules: iptables-legacy where the kernel lists a
// legacy nat table (/proc/net/ip_tables_names), iptables-nft for an nft
// table "ip nat" that iptables-nft made, nft -j for every other nft table.
// A tool that is needed but missing or failing is noted in ns.Unread.
func readRules(ns *Namespace, tl tools) {
	for _, fam := range []struct {
		names, family, tool, path string
	}{
		{"/proc/thread-self/net/ip_tables_names", "ip", "iptables-legacy", tl.legacy},
		{"/proc/thread-self/net/ip6_tables_names", "ip6", "ip6tables-legacy", tl.legacy6},
	} {
		b, err := os.ReadFile(fam.names)
		if err != nil || !slicesContainsLine(b, "nat") {
			continue
		}
		ns.readTool(fam.tool, fam.family, fam.path, "-t", "nat")
	}
	tables, err := nftTables()
	if err != nil {
		ns.Unread = append(ns.Unread, "nftables tables: "+err.Error())
		return
	}
	if len(tables) == 0 {
		return
	}
	skip := map[string]bool{}
	for _, t := range []struct{ table, family, tool, path string }{
		{"ip nat", "ip", "iptables-nft", tl.iptNft},
		{"ip6 nat", "ip6", "ip6tables-nft", tl.ip6tNft},
	} {
		if slices.Contains(tables, t.table) && t.path != "" && ns.readTool(t.tool, t.family, t.path, "-t", "nat") {
			skip[t.table] = true
		}
	}
	if len(skip) == len(tables) {
		return
	}
	if tl.nft == "" {
		ns.Unread = append(ns.Unread, fmt.Sprintf("nftables tables %s: nft is not installed (install nftables)", strings.Join(tables, ", ")))
		return
	}
	out, err := runTool(tl.nft, "-j", "list", "ruleset")
	if err != nil {
		ns.Unread = append(ns.Unread, err.Error())
		return
	}
	rules, xt, err := ParseNftJSON(out, skip)
	if err != nil {
		ns.Unread = append(ns.Unread, err.Error())
		return
	}
	ns.Rules = append(ns.Rules, rules...)
	for _, t := range xt {
		ns.Unread = append(ns.Unread, fmt.Sprintf("nftables table %s holds iptables-nft rules that nft cannot show (install iptables)", t))
	}
}

// readTool runs an iptables-save and keeps its rules; false when it could
// not (noted in ns.Unread, except the refusal of an nft table that
// iptables did not make, which nft then reads).
func (ns *Namespace) readTool(name, family, path string, args ...string) bool {
	if path == "" {
		ns.Unread = append(ns.Unread, fmt.Sprintf("%s nat table: %s-save is not installed (install iptables)", family, name))
		return false
	}
	out, err := runTool(path, args...)
	if err != nil {
		if !strings.Contains(err.Error(), "incompatible") {
			ns.Unread = append(ns.Unread, err.Error())
		}
		return false
	}
	rules, err := ParseIptablesSave(string(out), name, family)
	if err != nil {
		ns.Unread = append(ns.Unread, err.Error())
		return false
	}
	ns.Rules = append(ns.Rules, rules...)
	return true
}

// runTool runs a rule tool with a timeout; its error carries stderr.
func runTool(path string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.IndexByte(msg, '\n'); i > 0 {
			msg = msg[:i]
		}
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return nil, fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

func slicesContainsLine(b []byte, want string) bool {
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == want {
			return true
		}
	}
	return false
}
