// Package names says which Kubernetes pod and container sent a packet, and
// what a network namespace is called, from what the node itself knows: the
// container runtime's pods and containers (Runtime, served over the CRI by
// package names/cri), the kubepods cgroup path of the sending process
// (/proc/PID/cgroup: pod UID and container id, both cgroup drivers, v1 and
// v2), the network namespace of every pod's processes (/proc/PID/ns/net),
// and the names of /run/netns.
//
// A Resolver keeps all of it in a bounded table that a background goroutine
// refreshes on a timer and when a lookup misses, so that a lookup never
// waits for the runtime: it reads the table, plus /proc/PID/cgroup of a
// sender it has not seen lately. Lookups happen once per packet of an
// incident, never per event. What a lookup answered is kept (Pending) so
// that a capture file carries the names and a report of it prints them
// without the runtime (Table).
//
// This package has no gRPC dependency: the renderer and the pipeline import
// it for its types.
package names

import (
	"net/netip"
)

// Pod is a Kubernetes pod as its container runtime reports it. Namespace
// and Name are empty where only the cgroup path was read (it carries the
// UID alone).
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

// Known reports whether anything is known of the pod.
func (p Pod) Known() bool { return p.UID != "" || p.Name != "" }

// Names is what is known of where a packet came from.
type Names struct {
	Pod Pod `json:"pod"`
	// Container is the container's name (the runtime's metadata), and
	// ContainerID the runtime's id for it (from the cgroup path); both
	// empty unless the sending process is known.
	Container   string `json:"container,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	// Netns is the name of the packet's network namespace in /run/netns
	// (`ip netns` labs, and the cni-… names some runtimes give pods).
	Netns string `json:"netns,omitempty"`
}

// Empty reports whether nothing is known.
func (n Names) Empty() bool { return n == Names{} }

// Key is what a packet is named by: its network namespace, the sending
// process (0 when the sender is unknown), and its source address before
// NAT (the pod IP of forwarded traffic, whose netns is the node's).
type Key struct {
	Netns uint32     `json:"netns"`
	PID   uint32     `json:"pid,omitempty"`
	Addr  netip.Addr `json:"addr,omitzero"`
}

// Source answers lookups: a live Resolver, or a Table read back from a
// capture.
type Source interface {
	Names(k Key) Names
}

// Entry is one answer a Source gave: what a capture keeps.
type Entry struct {
	Key   Key   `json:"key"`
	Names Names `json:"names"`
}

// Limits on what a lookup table holds: far above a node's pods (the
// kubelet's default is 110), so that only a runtime that answers garbage
// reaches them, and memory stays bounded whatever it answers.
const (
	MaxPods       = 4096
	MaxContainers = 4 * MaxPods
	MaxNetns      = 2 * MaxPods
	MaxAddrs      = 4 * MaxPods
	// maxField bounds a name, UID or id: Kubernetes names are at most 253
	// bytes (a DNS subdomain), ids 64.
	maxField = 253
)

// Clip bounds a string from outside (a runtime's answer) to maxField bytes.
func Clip(s string) string {
	if len(s) > maxField {
		return s[:maxField]
	}
	return s
}
