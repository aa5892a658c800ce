package doctor_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ctprobe/ctprobe/doctor"
	"github.com/ctprobe/ctprobe/lab"
	"github.com/ctprobe/ctprobe/tracer/incident"
)

// Privileged tests on this machine's kernel: ctlab's topologies are the
// fixtures (their rules written by iptables-legacy or nft, as kube-proxy
// would), pods get real resolver processes (a glibc program and a musl
// one, with a resolv.conf of their own through `ip netns exec`), and
// doctor's findings are checked id by id, negative cases included.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range []string{"ip", "iptables-legacy-save", "nft", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh)", tool)
		}
	}
	if _, err := os.Stat("/proc/net/stat/nf_conntrack"); err != nil {
		t.Skip("conntrack not available")
	}
}

// muslProgram builds a program linked against musl that waits forever.
func muslProgram(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("musl-gcc"); err != nil {
		t.Skip("musl-gcc not installed (scripts/deps.sh installs musl-tools)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "wait.c")
	if err := os.WriteFile(src, []byte("#include <unistd.h>\nint main(void) { pause(); return 0; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "muslwait")
	if out, err := exec.Command("musl-gcc", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("musl-gcc: %v: %s", err, out)
	}
	return bin
}

// startResolvers starts, in the named netns, a glibc process and (when
// musl is set) a musl one, both seeing resolvConf as /etc/resolv.conf (ip
// netns exec bind-mounts /etc/netns/NAME/resolv.conf in a mount namespace
// of their own). They are stopped at the end of the test.
func startResolvers(t *testing.T, name, resolvConf, musl string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(resolvConf), 0o644); err != nil {
		t.Fatal(err)
	}
	progs := [][]string{{"sleep", "300"}}
	if musl != "" {
		progs = append(progs, []string{musl})
	}
	for _, p := range progs {
		cmd := exec.Command("ip", append([]string{"netns", "exec", name}, p...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		waitExec(t, cmd.Process.Pid, p[0])
	}
}

// waitExec waits until pid runs prog (ip netns exec has exec'd it).
func waitExec(t *testing.T, pid int, prog string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && filepath.Base(exe) == filepath.Base(prog) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d never ran %s", pid, prog)
}

func setupLab(t *testing.T, scenario string, opts lab.Options) *lab.Topology {
	t.Helper()
	sc, err := lab.ScenarioByName(scenario)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topo, err := lab.Setup(ctx, sc, opts)
	if err != nil {
		t.Fatalf("lab.Setup %s (%+v): %v", scenario, opts, err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	return topo
}

// run runs doctor on the given namespaces and returns each one's findings
// by namespace name.
func run(t *testing.T, opts doctor.Options, paths ...string) (*doctor.Report, map[string][]doctor.Finding) {
	t.Helper()
	opts.Netns = paths
	rep, err := doctor.Run(opts)
	if err != nil {
		t.Fatalf("doctor: %v", err)
	}
	byName := map[string][]doctor.Finding{}
	for _, ns := range rep.Namespaces {
		if len(ns.Unread) > 0 {
			t.Errorf("netns %s: not read: %v", ns.Name, ns.Unread)
		}
		byName[ns.Name] = ours(ns.Findings)
	}
	return rep, byName
}

// ours leaves out the resolver findings of processes this test did not
// start (the lab runs in this test's process, whose main thread may sit in
// a lab namespace).
func ours(fs []doctor.Finding) []doctor.Finding {
	return slices.DeleteFunc(slices.Clone(fs), func(f doctor.Finding) bool {
		return f.ID == "resolver-parallel-queries" && !strings.HasPrefix(f.Summary, "sleep ") && !strings.HasPrefix(f.Summary, "muslwait ")
	})
}

func ids(fs []doctor.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID)
	}
	sort.Strings(out)
	return out
}

// find returns the findings with an id.
func find(fs []doctor.Finding, id string) []doctor.Finding {
	return slices.DeleteFunc(slices.Clone(fs), func(f doctor.Finding) bool { return f.ID != id })
}

// predicted is the races a finding predicts, as "race/outcome".
func predicted(f doctor.Finding) []string {
	var out []string
	for _, p := range f.Races {
		out = append(out, fmt.Sprintf("%d/%s", p.Race, p.Outcome))
	}
	return out
}

func TestLabScenarios(t *testing.T) {
	needRoot(t)
	musl := muslProgram(t)
	release, err := exec.Command("uname", "-r").Output()
	if err != nil {
		t.Fatal(err)
	}
	k := incident.ParseKernelRelease(strings.TrimSpace(string(release)))
	udpNAT := incident.Path{Proto: 17, NAT: true}
	race3 := fmt.Sprintf("3/%s", incident.RaceEndpoints.EndsOn(k, udpNAT))
	race1 := fmt.Sprintf("1/%s", incident.RaceIdentical.EndsOn(k, udpNAT))
	// Race 2 where another entry holds the port: a path with NAT.
	race2 := fmt.Sprintf("2/%s", incident.RaceNATPort.EndsOn(k, incident.Path{Proto: 17, NAT: true, PortsMove: true}))
	cases := []struct {
		scenario string
		// node: the finding ids in the node's namespace; resolverRaces:
		// what the pods' resolver findings predict.
		node          []string
		resolverRaces []string
	}{
		{"endpoints-1", nil, []string{race1, race2}},
		{"endpoints-2", []string{"dnat-udp-multi-endpoint"}, []string{race1, race3, race2}},
		{"nonat", nil, []string{race1}},
		{"ipv6", []string{"dnat-udp-multi-endpoint"}, []string{race1, race3, race2}},
		{"local", []string{"dnat-udp-multi-endpoint", "resolver-parallel-queries", "resolver-parallel-queries"}, []string{race1, race3, race2}},
		{"snat-one-port", []string{"snat-port-collision"}, []string{race1, race2}},
		{"vxlan-masq", []string{"dnat-udp-multi-endpoint", "random-fully-race2", "tunnel-double-snat"}, []string{race1, race3, race2}},
	}
	// iptables-legacy (the lab's default), iptables-nft, and nft.
	for _, mode := range []lab.Options{{NAT: "iptables"}, {NAT: "iptables", IPTables: "iptables-nft"}, {NAT: "nft"}} {
		for _, c := range cases {
			name := mode.NAT
			if mode.IPTables != "" {
				name = mode.IPTables
			}
			t.Run(c.scenario+"/"+name, func(t *testing.T) {
				topo := setupLab(t, c.scenario, mode)
				clients := []string{"pod", "pod2"}
				if topo.Scenario.Path == lab.PathLocal {
					clients = []string{"node"}
				}
				var paths []string
				for _, ns := range topo.Namespaces {
					paths = append(paths, ns.Path)
				}
				conf := fmt.Sprintf("nameserver %s\noptions ndots:5\n", topo.Target.Addr())
				for _, role := range clients {
					if ns := topo.NetnsByRole(role); ns != nil {
						startResolvers(t, ns.Name, conf, musl)
					}
				}
				rep, got := run(t, doctor.Options{}, paths...)
				node := topo.NetnsByRole("node").Name
				if want := slices.Sorted(slices.Values(c.node)); !slices.Equal(ids(got[node]), want) {
					t.Errorf("node findings %v, want %v: %+v", ids(got[node]), want, got[node])
				}
				for _, role := range clients {
					ns := topo.NetnsByRole(role)
					if ns == nil {
						continue
					}
					rs := find(got[ns.Name], "resolver-parallel-queries")
					if len(rs) != 2 {
						t.Errorf("%s: %d resolver findings, want 2 (glibc and musl): %+v", role, len(rs), got[ns.Name])
					}
					for _, f := range rs {
						if !slices.Equal(predicted(f), c.resolverRaces) {
							t.Errorf("%s: resolver finding predicts %v, want %v: %+v", role, predicted(f), c.resolverRaces, f)
						}
					}
				}
				for _, f := range got[node] {
					checkFinding(t, f)
				}
				// The rules were read with the tool that wrote them.
				tool := map[string]string{"iptables": "tables-legacy", "iptables-nft": "tables-nft", "nft": "nft"}[name]
				for _, ns := range rep.Namespaces {
					if ns.Name != node {
						continue
					}
					if len(ns.Rules) == 0 && c.scenario != "nonat" { // nonat has no nat table
						t.Error("no rule read in the node")
					}
					for _, r := range ns.Rules {
						if !strings.HasSuffix(r.Tool, tool) {
							t.Errorf("rule read by %s, want *%s: %s", r.Tool, tool, r.Text)
						}
					}
				}
				wantDrops := slices.Contains(c.node, "snat-port-collision")
				if rep.Drops() != wantDrops {
					t.Errorf("Drops() = %v, want %v", rep.Drops(), wantDrops)
				}
			})
		}
	}
}

// checkFinding checks what every finding must carry, and that the race
// table names it for each race it predicts (so a trace's summary names it).
func checkFinding(t *testing.T, f doctor.Finding) {
	t.Helper()
	if len(f.Evidence) == 0 || f.Mitigation == "" || f.Summary == "" {
		t.Errorf("finding %s without evidence, summary or mitigation: %+v", f.ID, f)
	}
	drops := false
	for _, p := range f.Races {
		if !slices.Contains(p.Race.Race().Findings, f.ID) {
			t.Errorf("finding %s predicts race %d, whose row does not name it", f.ID, p.Race)
		}
		drops = drops || p.Outcome == incident.OutcomeDropped && p.When == ""
	}
	if drops && f.Severity != doctor.SeverityDrops {
		t.Errorf("finding %s predicts a drop but says %s", f.ID, f.Severity)
	}
	switch f.ID {
	case "snat-port-collision":
		if f.Severity != doctor.SeverityDrops || !strings.Contains(strings.Join(f.Evidence, "\n"), "40000") {
			t.Errorf("snat-port-collision must drop and name the port: %+v", f)
		}
	case "tunnel-double-snat":
		// The lab's node has a VXLAN device; this kernel has ea64d8d6c675.
		if f.Severity != doctor.SeveritySettled || !strings.Contains(strings.Join(f.Evidence, "\n"), "vx0 (vxlan)") {
			t.Errorf("tunnel-double-snat: %+v", f)
		}
	}
}

// addNetns makes a named namespace for one test.
func addNetns(t *testing.T, name string) string {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return "/run/netns/" + name
}

// Resolvers that do not send A and AAAA at once from one socket get no
// finding (glibc with use-vc, single-request or single-request-reopen); musl
// reads none of these options and still does.
func TestResolverOptions(t *testing.T) {
	needRoot(t)
	musl := muslProgram(t)
	for _, c := range []struct {
		options string
		want    []string // comm of the processes with a finding
	}{
		{"use-vc", []string{"muslwait"}},
		{"single-request", []string{"muslwait"}},
		{"single-request-reopen", []string{"muslwait"}},
	} {
		t.Run(c.options, func(t *testing.T) {
			name := fmt.Sprintf("ctdoc%d-%s", os.Getpid(), c.options)
			path := addNetns(t, name)
			startResolvers(t, name, "nameserver 192.0.2.53\noptions "+c.options+"\n", musl)
			_, got := run(t, doctor.Options{}, path)
			var comms []string
			for _, f := range find(got[name], "resolver-parallel-queries") {
				comm, _, _ := strings.Cut(f.Summary, " ")
				comms = append(comms, comm)
				checkFinding(t, f)
			}
			sort.Strings(comms)
			if !slices.Equal(comms, c.want) {
				t.Errorf("resolver findings for %v, want %v: %+v", comms, c.want, got[name])
			}
		})
	}
}

// conntrack-table-fill compares the namespace's own count with
// nf_conntrack_max: entries made with conntrack -I push one namespace over
// a threshold that an empty one stays under.
func TestTableFill(t *testing.T) {
	needRoot(t)
	full := addNetns(t, fmt.Sprintf("ctdoc%d-full", os.Getpid()))
	empty := addNetns(t, fmt.Sprintf("ctdoc%d-empty", os.Getpid()))
	for i := 0; i < 10; i++ {
		out, err := exec.Command("ip", "netns", "exec", filepath.Base(full), "conntrack", "-I", "-p", "udp",
			"-s", "192.0.2.1", "-d", "192.0.2.2", "--sport", fmt.Sprint(1000+i), "--dport", "53", "--timeout", "120").CombinedOutput()
		if err != nil {
			t.Fatalf("conntrack -I: %v: %s", err, out)
		}
	}
	maxb, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_max")
	if err != nil {
		t.Fatal(err)
	}
	var max float64
	fmt.Sscan(string(maxb), &max)
	// Five entries' worth of the table: the full namespace holds ten.
	rep, got := run(t, doctor.Options{FillThreshold: 5 / max}, full, empty)
	if f := find(got[filepath.Base(full)], "conntrack-table-fill"); len(f) != 1 || f[0].Severity != doctor.SeverityDrops {
		t.Errorf("10 entries over a threshold of 5: %+v", got[filepath.Base(full)])
	} else {
		checkFinding(t, f[0])
	}
	if f := find(got[filepath.Base(empty)], "conntrack-table-fill"); len(f) != 0 {
		t.Errorf("an empty table is filling: %+v", f)
	}
	for _, ns := range rep.Namespaces {
		if ns.Path == full && (ns.Conntrack == nil || ns.Conntrack.Count != 10) {
			t.Errorf("full namespace's table: %+v", ns.Conntrack)
		}
	}
}

// BenchmarkRunNode reads a node of 200 namespaces (pods), a quarter with
// iptables-legacy nat rules and a quarter with nftables ones, each with a
// resolver process: the case doctor must finish in seconds.
func BenchmarkRunNode(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	const n = 200
	var paths []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("ctdocb%d-%d", os.Getpid(), i)
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			b.Fatalf("ip netns add: %v: %s", err, out)
		}
		b.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		paths = append(paths, "/run/netns/"+name)
		var cmd *exec.Cmd
		switch i % 4 {
		case 0:
			cmd = exec.Command("ip", "netns", "exec", name, "iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-p", "udp", "-j", "MASQUERADE", "--random-fully")
		case 1:
			cmd = exec.Command("ip", "netns", "exec", name, "nft", "add table ip t; add chain ip t p { type nat hook postrouting priority srcnat; }; add rule ip t p masquerade fully-random")
		}
		if cmd != nil {
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %v: %s", cmd.Args, err, out)
			}
		}
		sleep := exec.Command("ip", "netns", "exec", name, "sleep", "600")
		if err := sleep.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { sleep.Process.Kill(); sleep.Wait() })
	}
	for b.Loop() {
		rep, err := doctor.Run(doctor.Options{Netns: paths})
		if err != nil || len(rep.Namespaces) != n {
			b.Fatalf("doctor: %v, %d namespaces", err, len(rep.Namespaces))
		}
	}
}
