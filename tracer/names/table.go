package names

import (
	"context"
	"net/netip"
)

// Sandbox is a pod sandbox as a runtime lists it.
type Sandbox struct {
	ID  string
	Pod Pod
	// IPs are the pod's addresses; a pod on the host's network has the
	// node's, which name no pod.
	IPs         []netip.Addr
	HostNetwork bool
}

// Container is a container as a runtime lists it.
type Container struct {
	ID, Name, SandboxID string
}

// State is what a runtime reported at one time.
type State struct {
	Sandboxes  []Sandbox
	Containers []Container
}

// Runtime is a container runtime that lists its pods and containers (the
// CRI client of package names/cri). List must return when ctx ends.
type Runtime interface {
	List(ctx context.Context) (State, error)
	// String says which runtime answers where, for messages:
	// "containerd 1.6.20 at /run/containerd/containerd.sock".
	String() string
	Close() error
}

// netnsInfo is what is known of one network namespace.
type netnsInfo struct {
	name string // in /run/netns
	pod  Pod
	pid  string // the process the pod was found by
}

// containerInfo is one container of the runtime.
type containerInfo struct {
	name string
	pod  Pod
}

// table is one refresh's view of the node. It is never changed once built:
// lookups read it without a lock.
type table struct {
	runtime    bool // the runtime answered
	host       uint32
	byUID      map[string]Pod
	sandboxes  map[string]Pod
	containers map[string]containerInfo
	byAddr     map[netip.Addr]Pod
	netns      map[uint32]netnsInfo
	// truncated: a limit was reached (a runtime or a node with more than
	// the limits allow); some names are missing.
	truncated bool
}

// newTable builds a table from the runtime's state (nil: no runtime), the
// /run/netns names and the namespaces of pod processes.
func newTable(st *State, host uint32, netnsNames map[uint32]string, pods map[uint32]podProcess) *table {
	t := &table{
		runtime: st != nil, host: host,
		byUID: map[string]Pod{}, sandboxes: map[string]Pod{}, containers: map[string]containerInfo{},
		byAddr: map[netip.Addr]Pod{}, netns: map[uint32]netnsInfo{},
	}
	if st != nil {
		t.addRuntime(st)
	}
	for ino, name := range netnsNames {
		t.netns[ino] = netnsInfo{name: name}
	}
	for ino, pp := range pods {
		if len(t.netns) >= MaxNetns {
			t.truncated = true
			break
		}
		ni := t.netns[ino]
		ni.pod, ni.pid = t.podOf(pp.cg), pp.pid
		t.netns[ino] = ni
	}
	return t
}

func (t *table) addRuntime(st *State) {
	for i := range st.Sandboxes {
		s := &st.Sandboxes[i]
		if len(t.sandboxes) >= MaxPods {
			t.truncated = true
			break
		}
		if s.ID == "" || !s.Pod.Known() {
			continue // garbage: nothing to name it by
		}
		p := Pod{Namespace: Clip(s.Pod.Namespace), Name: Clip(s.Pod.Name), UID: Clip(s.Pod.UID)}
		t.sandboxes[Clip(s.ID)] = p
		if p.UID != "" {
			t.byUID[p.UID] = p
		}
		if s.HostNetwork {
			continue
		}
		for _, a := range s.IPs {
			if len(t.byAddr) >= MaxAddrs {
				t.truncated = true
				break
			}
			if a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() {
				t.byAddr[a.Unmap()] = p
			}
		}
	}
	for _, c := range st.Containers {
		if len(t.containers) >= MaxContainers {
			t.truncated = true
			break
		}
		p, ok := t.sandboxes[Clip(c.SandboxID)]
		if c.ID == "" || !ok {
			continue
		}
		t.containers[Clip(c.ID)] = containerInfo{name: Clip(c.Name), pod: p}
	}
}

// podOf is the pod a cgroup path names: by UID, or by container id (the
// sandbox's own, for the pause process, or one of its containers'), else
// the UID alone.
func (t *table) podOf(cg Cgroup) Pod {
	if p, ok := t.byUID[cg.PodUID]; ok && cg.PodUID != "" {
		return p
	}
	if cg.ContainerID != "" {
		if p, ok := t.sandboxes[cg.ContainerID]; ok {
			return p
		}
		if c, ok := t.containers[cg.ContainerID]; ok {
			return c.pod
		}
	}
	return Pod{UID: cg.PodUID}
}

// lookup names a packet. cg is the sending process's cgroup (zero when
// the sender is unknown). The pod is the sender's, else the namespace's,
// else, where the namespace is no pod's (forwarded traffic in the node's),
// the one whose address the packet came from. holds checks that the
// process a pod's namespace was found by is still in it. miss says that
// the table did not know something it should: a refresh may.
func (t *table) lookup(k Key, cg Cgroup, holds func(pid string, ino uint32) bool) (n Names, miss bool) {
	ni, nsKnown := t.netns[k.Netns]
	if ni.pid != "" && !holds(ni.pid, k.Netns) {
		ni.pod, nsKnown = Pod{}, false // gone; the inode may be another pod's now
	}
	n.Netns = ni.name
	if cg.ContainerID != "" {
		n.ContainerID = cg.ContainerID
		if c, ok := t.containers[cg.ContainerID]; ok {
			n.Container, n.Pod = c.name, c.pod
		} else if _, sandbox := t.sandboxes[cg.ContainerID]; !sandbox {
			miss = miss || t.runtime
		}
	}
	if !n.Pod.Known() && (cg.PodUID != "" || cg.ContainerID != "") {
		n.Pod = t.podOf(cg)
		miss = miss || t.runtime && n.Pod.Name == "" && cg.PodUID != ""
	}
	if !n.Pod.Known() {
		n.Pod = ni.pod
	}
	if !n.Pod.Known() && k.Addr.IsValid() {
		n.Pod = t.byAddr[k.Addr.Unmap()]
	}
	if !nsKnown && k.Netns != t.host && k.Netns != 0 {
		miss = true
	}
	return n, miss
}
