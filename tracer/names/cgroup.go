package names

import (
	"bufio"
	"bytes"
	"strings"
)

// Cgroup is what a process's cgroup path says of the pod and container it
// runs in.
type Cgroup struct {
	PodUID      string // empty outside a kubepods cgroup
	ContainerID string // the runtime's 64-hex id; empty if the path names none
}

// ParseCgroupFile reads the content of /proc/PID/cgroup: one line per
// hierarchy, "ID:CONTROLLERS:PATH" (cgroup v1), or the single "0::PATH" of
// cgroup v2 (docs/kernel-notes.md, Namespaces, cgroups and pods). The first line whose path names a pod or a container decides;
// on a v1 host every controller's path names the same one.
func ParseCgroupFile(b []byte) Cgroup {
	var found Cgroup
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		// The path is after the second colon; it may itself hold colons.
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			continue
		}
		j := bytes.IndexByte(line[i+1:], ':')
		if j < 0 {
			continue
		}
		c := ParseCgroupPath(string(line[i+1+j+1:]))
		if c.PodUID != "" {
			return c
		}
		if found.ContainerID == "" {
			found = c
		}
	}
	return found
}

// ParseCgroupPath reads the pod UID and container id from one cgroup path.
// The kubelet's two cgroup drivers give these shapes (QoS class besteffort,
// burstable, or none for guaranteed pods):
//
//	cgroupfs: /kubepods/besteffort/pod<UID>/<ID>
//	          /kubepods/pod<UID>/crio-<ID>            (CRI-O)
//	systemd:  /kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<UID with _>.slice/cri-containerd-<ID>.scope
//	          .../crio-<ID>.scope, .../docker-<ID>.scope (cri-dockerd)
//
// anywhere in the path (a node inside a container has its own prefix). A
// container outside Kubernetes has an id and no UID: /k8s.io/<ID>
// (containerd's default), /docker/<ID>, /system.slice/docker-<ID>.scope.
// CRI-O's monitor (crio-conmon-<ID>.scope) is not the container.
func ParseCgroupPath(path string) Cgroup {
	var c Cgroup
	parts := strings.Split(strings.Trim(path, "/"), "/")
	pod := -1
	for i, p := range parts {
		if uid, ok := podUID(p); ok {
			c.PodUID, pod = uid, i
		}
	}
	// The container is the component after the pod's, else the last one
	// that looks like an id (a runtime may nest one more level below it).
	if pod >= 0 {
		if pod+1 < len(parts) {
			c.ContainerID = containerID(parts[pod+1])
		}
		return c
	}
	for i := len(parts) - 1; i >= 0; i-- {
		if id := containerID(parts[i]); id != "" {
			c.ContainerID = id
			break
		}
	}
	return c
}

// podUID reads the UID from a pod's cgroup directory: "pod<UID>"
// (cgroupfs) or "kubepods[-<qos>]-pod<UID>.slice" (systemd, where the
// UID's dashes are underscores, systemd's unit-name escaping).
func podUID(p string) (string, bool) {
	var uid string
	switch {
	case strings.HasPrefix(p, "pod"):
		uid = p[len("pod"):]
	case strings.HasPrefix(p, "kubepods-") && strings.HasSuffix(p, ".slice"):
		s := strings.TrimSuffix(p, ".slice")
		i := strings.LastIndex(s, "-pod")
		if i < 0 {
			return "", false
		}
		uid = strings.ReplaceAll(s[i+len("-pod"):], "_", "-")
	default:
		return "", false
	}
	if !isUID(uid) {
		return "", false
	}
	return uid, true
}

// isUID accepts an API server's UID (8-4-4-4-12 hex) and a static pod's (a
// 32-hex hash of its manifest, kubelet's config source).
func isUID(s string) bool {
	if len(s) != 36 && len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c == '-' && len(s) == 36 && (i == 8 || i == 13 || i == 18 || i == 23):
		default:
			return false
		}
	}
	return true
}

// containerScopes are the prefixes runtimes give a container's cgroup
// (systemd scope units, and CRI-O's cgroupfs directories).
var containerScopes = []string{"cri-containerd-", "crio-", "docker-", "libpod-"}

// containerID reads a container id from a cgroup directory name: the id
// itself (cgroupfs), or a runtime's scope "cri-containerd-<ID>.scope".
func containerID(p string) string {
	p = strings.TrimSuffix(p, ".scope")
	for _, pre := range containerScopes {
		if strings.HasPrefix(p, pre) {
			p = p[len(pre):]
			break
		}
	}
	if len(p) != 64 {
		return "" // crio-conmon-<ID> lands here too
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return ""
		}
	}
	return p
}
