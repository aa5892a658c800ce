package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ctprobe/ctprobe/tracer/capture"
)

// crictlVersion is the cri-tools release whose crictl drives the guest's
// containerd (built from its Go module, never committed).
const crictlVersion = "v1.37.0"

// podInfo is what the runtime itself said of a pod the guest made (crictl
// inspectp and inspect): what ctprobe must name, read independently of it.
type podInfo struct {
	namespace, name, uid, ip string
	container, containerID   string
	netns                    uint64
}

// TestVMPods runs a real containerd with its CRI plugin in the VM, pods on a
// CNI bridge and the lab's lookup client in their containers
// (e2e/guest-pods.sh): every incident names the pod (from the packet's
// netns, sender or source address) and the container (from the sender's
// cgroup) of both packets, as the runtime reported them; without the
// runtime the cgroup paths name the pod UID and container id; and a report
// of the capture names them after the pods are gone.
func TestVMPods(t *testing.T) {
	if s := os.Getenv("KERNEL_SERIES"); s != "" || os.Getenv("FLAVOUR") != "" && os.Getenv("FLAVOUR") != "cloud" {
		t.Skip("the pod test runs on the default kernel only")
	}
	root := repoRoot(t)
	if os.Getenv("CTPROBE_E2E") == "" {
		t.Skip("boots a VM: run with CTPROBE_E2E=1 (make e2e)")
	}
	run(t, root, nil, "scripts/deps.sh", "containerd", "runc", "containernetworking-plugins", "curl")
	gobin := filepath.Join(root, ".cache", "crictl-"+crictlVersion)
	crictl := filepath.Join(gobin, "crictl")
	if _, err := os.Stat(crictl); err != nil {
		run(t, root, []string{"CGO_ENABLED=0", "GOBIN=" + gobin}, "go", "install", "sigs.k8s.io/cri-tools/cmd/crictl@"+crictlVersion)
	}
	tmp := t.TempDir()
	static := []string{"CGO_ENABLED=0"}
	run(t, root, static, "go", "build", "-o", filepath.Join(tmp, "pause"), "./e2e/pause")
	run(t, root, static, "go", "build", "-o", filepath.Join(tmp, "ctlab"), "./cmd/ctlab")
	image := filepath.Join(tmp, "image.tar")
	ociImage(t, image, "ctprobe.test/lab:e2e", map[string]string{"pause": filepath.Join(tmp, "pause"), "ctlab": filepath.Join(tmp, "ctlab")}, []string{"/pause"})
	out := bootGuestWith(t, guestImage{
		script: "e2e/guest-pods.sh", suffix: "pods",
		initramfs: []string{
			"--prog", "containerd", "--prog", "containerd-shim-runc-v2", "--prog", "runc", "--prog", "ctr", "--prog", "curl",
			"--add", "/usr/lib/cni:/usr/lib/cni", "--add", crictl + ":/bin/crictl", "--add", image + ":/lab/image.tar",
		},
		env: []string{"VM_EXTRA_MODULES=bridge br_netfilter"},
	}, "--mem", "3072")
	checkPods(t, out)
}

// checkPods checks what e2e/guest-pods.sh wrote to out.
func checkPods(t *testing.T, out string) {
	p := func(name string) string { return filepath.Join(out, name) }
	if rc := readFile(t, p("rc")); rc != "0" {
		t.Fatalf("guest script exit %s:\n%s", rc, readFile(t, p("console.log")))
	}
	pods := map[string]podInfo{} // by IP
	for _, name := range []string{"coredns-e2e", "client-a", "client-b"} {
		pi := readPod(t, out, name)
		pods[pi.ip] = pi
	}
	byName := func(name string) podInfo {
		for _, pi := range pods {
			if pi.name == name {
				return pi
			}
		}
		t.Fatalf("no pod %s", name)
		return podInfo{}
	}
	host := parseUint(t, readFile(t, p("host.netns")))

	t.Run("source", func(t *testing.T) {
		rd, err := capture.Open(p("pods.ctp"))
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		if src := rd.Header().Extra["names"]; !strings.Contains(src, "the container runtime: containerd") || !strings.Contains(src, "/run/containerd/containerd.sock") {
			t.Errorf("the trace's names came from %q, want containerd's CRI", src)
		}
	})

	// checkNames checks one packet of an incident: the pod whose address
	// the packet came from, and where its sender is known, the container.
	checkNames := func(t *testing.T, raw string, pkt map[string]any, full bool) (podInfo, bool) {
		t.Helper()
		src := nested(pkt, "orig", "src")
		ap, err := netip.ParseAddrPort(src)
		if err != nil {
			t.Errorf("orig.src %q: %v: %s", src, err, raw)
			return podInfo{}, false
		}
		want, ok := pods[ap.Addr().String()]
		if !ok {
			t.Errorf("a packet from %s, no pod's address: %s", src, raw)
			return podInfo{}, false
		}
		pod, _ := pkt["pod"].(map[string]any)
		if pod == nil {
			t.Errorf("no pod for a packet from %s (%s): %s", want.name, src, raw)
			return want, false
		}
		get := func(k string) string { s, _ := pod[k].(string); return s }
		if get("uid") != want.uid {
			t.Errorf("pod uid %q, want %s's %s: %s", get("uid"), want.name, want.uid, raw)
		}
		wantNS, wantName, wantContainer := want.namespace, want.name, want.container
		if !full {
			wantNS, wantName, wantContainer = "", "", ""
		}
		if get("namespace") != wantNS || get("name") != wantName {
			t.Errorf("pod %s/%s, want %q/%q: %s", get("namespace"), get("name"), wantNS, wantName, raw)
		}
		if pkt["task"] == true {
			if get("container") != wantContainer || get("container_id") != want.containerID {
				t.Errorf("container %q (%s), want %q (%s): %s", get("container"), get("container_id"), wantContainer, want.containerID, raw)
			}
		}
		return want, true
	}

	var live []map[string]any
	t.Run("live", func(t *testing.T) {
		if rc := readFile(t, p("pods.rc")); rc != "0" {
			t.Fatalf("ctprobe trace exit %s: %s", rc, readFile(t, p("pods.err")))
		}
		raw, lines := jsonLines(t, p("pods.jsonl"))
		forwarded, inPod := 0, 0
		var summary map[string]any
		byLoser := map[string]float64{}
		for i, l := range lines {
			switch l["kind"] {
			case "summary":
				summary = l
			case "incident":
				live = append(live, l)
				loser, _ := l["loser"].(map[string]any)
				want, ok := checkNames(t, raw[i], loser, true)
				if w, _ := l["winner"].(map[string]any); w != nil {
					checkNames(t, raw[i], w, true)
				}
				if !ok {
					continue
				}
				byLoser[want.name]++
				netns := uint64(loser["netns"].(float64))
				switch {
				case netns == host && want.name == "client-a":
					forwarded++
				case netns == want.netns && want.name == "client-b":
					inPod++
				}
			}
		}
		if forwarded == 0 || inPod == 0 {
			t.Errorf("%d incidents of client-a in the node's netns (forwarded), %d of client-b in its own: want both", forwarded, inPod)
		}
		if summary == nil {
			t.Fatal("no summary")
		}
		rows, _ := summary["by_pod"].([]any)
		got := map[string]float64{}
		for _, r := range rows {
			m := r.(map[string]any)
			got[m["name"].(string)] = m["count"].(float64)
		}
		for name, n := range byLoser {
			if got[name] != n {
				t.Errorf("summary by pod: %s %v incidents, want %v (the losers')", name, got[name], n)
			}
		}
	})

	// The exporter labels a namespace's incidents with its pod: client-b's
	// clash in its own netns.
	t.Run("metrics", func(t *testing.T) {
		b := byName("client-b")
		want := []string{fmt.Sprintf(`namespace="%s"`, b.namespace), fmt.Sprintf(`netns="%d"`, b.netns), fmt.Sprintf(`pod="%s"`, b.name)}
		found := false
		for _, l := range strings.Split(readFile(t, p("metrics.txt")), "\n") {
			if strings.HasPrefix(l, "ctprobe_incidents_total{") && strings.Contains(l, want[0]+",") && strings.Contains(l, want[1]+",") && strings.Contains(l, want[2]+",") {
				found = true
			}
		}
		if !found {
			t.Errorf("no ctprobe_incidents_total series with %s in /metrics:\n%s", want, readFile(t, p("metrics.txt")))
		}
	})

	t.Run("fallback", func(t *testing.T) {
		if rc := readFile(t, p("fallback.rc")); rc != "0" {
			t.Fatalf("ctprobe trace exit %s: %s", rc, readFile(t, p("fallback.err")))
		}
		raw, lines := jsonLines(t, p("fallback.jsonl"))
		incidents, warnings := 0, 0
		for i, l := range lines {
			switch l["kind"] {
			case "warning":
				if strings.Contains(l["message"].(string), "/run/none.sock") {
					warnings++
				}
			case "incident":
				// Without the runtime only a known sender's cgroup names a
				// forwarded packet (its address names no pod).
				for _, side := range []string{"loser", "winner"} {
					if pkt, _ := l[side].(map[string]any); pkt != nil && pkt["task"] == true {
						checkNames(t, raw[i], pkt, false)
						if side == "loser" {
							incidents++
						}
					}
				}
			}
		}
		if incidents == 0 {
			t.Error("no incident with a known sender without the runtime")
		}
		if warnings != 1 {
			t.Errorf("%d warnings naming the socket that did not answer, want 1", warnings)
		}
	})

	t.Run("report after the pods are gone", func(t *testing.T) {
		if after := readFile(t, p("pods-after.txt")); strings.Contains(after, "client-") {
			t.Fatalf("the pods were not removed:\n%s", after)
		}
		raw, lines := jsonLines(t, p("report.jsonl"))
		var replayed []map[string]any
		for _, l := range lines {
			if l["kind"] == "incident" {
				replayed = append(replayed, l)
			}
		}
		if len(replayed) != len(live) || len(live) == 0 {
			t.Fatalf("report: %d incidents, live %d", len(replayed), len(live))
		}
		for i := range live {
			for _, side := range []string{"loser", "winner"} {
				lp, _ := live[i][side].(map[string]any)
				rp, _ := replayed[i][side].(map[string]any)
				if lp == nil {
					continue
				}
				if !equalJSON(lp["pod"], rp["pod"]) {
					t.Errorf("incident %d %s: report names %v, live %v: %s", i, side, rp["pod"], lp["pod"], raw[i])
				}
			}
		}
		txt := readFile(t, p("report.txt"))
		a := byName("client-a")
		if !strings.Contains(txt, a.namespace+"/"+a.name+"/"+a.container) {
			t.Errorf("the text report does not name %s/%s/%s:\n%s", a.namespace, a.name, a.container, txt)
		}
	})
}

func readPod(t *testing.T, out, name string) podInfo {
	var inspect struct {
		Status struct {
			Metadata struct{ Name, Namespace, UID string }
			Network  struct{ IP string }
		}
	}
	readJSON(t, filepath.Join(out, "pod."+name+".inspect.json"), &inspect)
	var ctr struct {
		Status struct {
			ID       string
			Metadata struct{ Name string }
		}
	}
	readJSON(t, filepath.Join(out, "pod."+name+".ctr.json"), &ctr)
	s := inspect.Status
	return podInfo{
		namespace: s.Metadata.Namespace, name: s.Metadata.Name, uid: s.Metadata.UID, ip: s.Network.IP,
		container: ctr.Status.Metadata.Name, containerID: ctr.Status.ID,
		netns: parseUint(t, readFile(t, filepath.Join(out, "pod."+name+".netns"))),
	}
}

// nested is the string at a path of keys in decoded JSON ("" if absent).
func nested(m map[string]any, keys ...string) string {
	var v any = m
	for _, k := range keys {
		mm, _ := v.(map[string]any)
		v = mm[k]
	}
	s, _ := v.(string)
	return s
}

func parseUint(t *testing.T, s string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
