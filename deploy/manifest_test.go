package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// objects are the manifests' objects, each decoded strictly into its API
// type: a field the type does not have, a misspelt one, fails.
type objects struct {
	namespaces      []corev1.Namespace
	daemonSets      []appsv1.DaemonSet
	services        []corev1.Service
	serviceMonitors []monitoringv1.ServiceMonitor
}

func decodeStrict(t *testing.T, where string, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
}

// appendStrict decodes doc strictly into a new T and appends it.
func appendStrict[T any](t *testing.T, where string, doc []byte, to []T) []T {
	t.Helper()
	var v T
	decodeStrict(t, where, doc, &v)
	return append(to, v)
}

func loadManifests(t *testing.T) objects {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var o objects
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---\n")) {
			where := f + " document " + string(rune('1'+i))
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			switch tm.APIVersion + " " + tm.Kind {
			case "v1 Namespace":
				o.namespaces = appendStrict(t, where, doc, o.namespaces)
			case "apps/v1 DaemonSet":
				o.daemonSets = appendStrict(t, where, doc, o.daemonSets)
			case "v1 Service":
				o.services = appendStrict(t, where, doc, o.services)
			case "monitoring.coreos.com/v1 ServiceMonitor":
				o.serviceMonitors = appendStrict(t, where, doc, o.serviceMonitors)
			default:
				t.Fatalf("%s: %s %s is not an object this test knows", where, tm.APIVersion, tm.Kind)
			}
		}
	}
	if len(o.namespaces) != 1 || len(o.daemonSets) != 1 || len(o.services) != 1 || len(o.serviceMonitors) != 1 {
		t.Fatalf("want one Namespace, DaemonSet, Service and ServiceMonitor, got %d, %d, %d, %d",
			len(o.namespaces), len(o.daemonSets), len(o.services), len(o.serviceMonitors))
	}
	return o
}

// image is what `make image` tags (scripts/image.sh) and the DaemonSet runs.
const image = "ctprobe:latest"

// The namespace admits privileged pods, and the DaemonSet asks for no more
// than ctprobe needs: the host's PID namespace, five capabilities and not
// privileged, read-only mounts of BTF, /run/netns, /proc and the runtime's
// socket, a liveness probe on /healthz at the metrics port, which the
// scrape annotations, the Service and the ServiceMonitor name too.
func TestDaemonSet(t *testing.T) {
	o := loadManifests(t)
	ns := o.namespaces[0]
	for _, mode := range []string{"enforce", "audit", "warn"} {
		if ns.Labels["pod-security.kubernetes.io/"+mode] != "privileged" {
			t.Errorf("namespace %s: pod-security.kubernetes.io/%s is %q, want privileged", ns.Name, mode, ns.Labels["pod-security.kubernetes.io/"+mode])
		}
	}
	ds := o.daemonSets[0]
	if ds.Namespace != ns.Name {
		t.Errorf("DaemonSet in namespace %q, want %q", ds.Namespace, ns.Name)
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostPID || spec.HostNetwork {
		t.Errorf("hostPID %v, hostNetwork %v: want the host's PID namespace only", spec.HostPID, spec.HostNetwork)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.Image != image || c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("image %q (%s), want %q, IfNotPresent", c.Image, c.ImagePullPolicy, image)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext capabilities")
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("the container is privileged: it needs five capabilities, not all")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("the root filesystem is writable")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("drops %v, want ALL", sc.Capabilities.Drop)
	}
	add := slices.Sorted(slices.Values(sc.Capabilities.Add))
	if want := []corev1.Capability{"BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE", "SYS_RESOURCE"}; !slices.Equal(add, want) {
		t.Errorf("adds %v, want %v", add, want)
	}

	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[hostPaths[m.Name]] = m
	}
	for _, host := range []string{"/sys/kernel/btf", "/run/netns", "/proc", "/run/containerd/containerd.sock"} {
		m, ok := mounts[host]
		if !ok || !m.ReadOnly {
			t.Errorf("host %s: mounted %v, read-only %v: want a read-only mount", host, ok, m.ReadOnly)
		}
	}
	if m := mounts["/run/netns"]; m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationHostToContainer {
		t.Error("/run/netns does not see namespaces named after the pod started (mountPropagation HostToContainer)")
	}
	if m, ok := mounts["/var/lib/ctprobe"]; !ok || m.ReadOnly || !slices.Contains(c.Args, "-w="+m.MountPath+"/ctprobe.ctp") {
		t.Errorf("the capture directory: mount %+v, args %v: want -w into a writable host directory", m, c.Args)
	}

	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 9965 || !slices.Contains(c.Args, "--metrics=:9965") {
		t.Fatalf("ports %v, args %v: want the metrics port 9965 served by --metrics=:9965", c.Ports, c.Args)
	}
	port := c.Ports[0]
	for _, a := range []string{"trace", "-q", "--log-format=json", "--rotate-size=64MiB", "--rotate-count=8"} {
		if !slices.Contains(c.Args, a) {
			t.Errorf("args %v lack %s", c.Args, a)
		}
	}
	lp := c.LivenessProbe
	if lp == nil || lp.HTTPGet == nil || lp.HTTPGet.Path != "/healthz" || lp.HTTPGet.Port.String() != port.Name {
		t.Errorf("liveness probe %+v: want GET /healthz on port %s", lp, port.Name)
	}
	ann := ds.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "9965" || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v", ann)
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
			t.Errorf("no %s request", r)
		}
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok || q.Cmp(resource.MustParse("128Mi")) < 0 {
		t.Errorf("memory limit %v: want one, of at least the ring buffer, maps and heap", q.String())
	}

	svc, sm := o.services[0], o.serviceMonitors[0]
	for k, v := range svc.Spec.Selector {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("the Service selects %s=%s, which the DaemonSet's pods lack", k, v)
		}
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.String() != port.Name {
		t.Errorf("Service ports %v: want one, to %s", svc.Spec.Ports, port.Name)
	}
	for k, v := range sm.Spec.Selector.MatchLabels {
		if svc.Labels[k] != v {
			t.Errorf("the ServiceMonitor selects %s=%s, which the Service lacks", k, v)
		}
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v: want the Service's port, /metrics", sm.Spec.Endpoints)
	}
}

// The one-node recipe's pod, as it would hand it to kubectl, is a Pod on
// that node, in the host's PID namespace, privileged, running `ctprobe
// trace` with the flags given, whatever quotes they hold.
func TestOnNodePod(t *testing.T) {
	out, err := exec.Command("bash", "ctprobe-on-node.sh", "--print", "Worker_7.example", "--port", "53", "-o", `js"on\`).Output()
	if err != nil {
		t.Fatalf("ctprobe-on-node.sh --print: %v", err)
	}
	var pod corev1.Pod
	decodeStrict(t, "ctprobe-on-node.sh --print", out, &pod)
	spec := pod.Spec
	if spec.NodeName != "Worker_7.example" || !spec.HostPID || spec.RestartPolicy != corev1.RestartPolicyNever || len(spec.Containers) != 1 {
		t.Fatalf("pod spec %+v", spec)
	}
	c := spec.Containers[0]
	if want := []string{"trace", "--port", "53", "-o", `js"on\`}; !slices.Equal(c.Args, want) {
		t.Errorf("args %q, want %q", c.Args, want)
	}
	if c.Image != image || c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Errorf("image %q, security %+v: want %s, privileged", c.Image, c.SecurityContext, image)
	}
	if pod.Name != "ctprobe-worker-7-example" || c.Name != pod.Name || pod.Namespace != "ctprobe" {
		t.Errorf("pod %s/%s, container %s", pod.Namespace, pod.Name, c.Name)
	}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		if out, err := exec.Command(sc, "ctprobe-on-node.sh").CombinedOutput(); err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		}
	}
	if out, err := exec.Command("bash", "ctprobe-on-node.sh").CombinedOutput(); err == nil || !strings.Contains(string(out), "ctprobe-on-node.sh NODE") {
		t.Errorf("without a node: %v, %q: want the usage and a failure", err, out)
	}
}
