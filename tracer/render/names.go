package render

import (
	"github.com/ctprobe/ctprobe/tracer/names"
)

// shortID is how many characters of a container id text output shows
// (as docker ps and crictl ps do).
const shortID = 12

// appendNames writes what is known of a packet's pod and container:
// "default/client-a/lookup" from the runtime, "pod uid 5c2a8e41-… container
// 0123456789ab" from cgroup paths alone, "container 0123456789ab" outside
// Kubernetes; nothing when nothing is known.
func appendNames(dst []byte, n *names.Names) []byte {
	p := &n.Pod
	switch {
	case p.Name != "":
		dst = appendEscaped(dst, p.Namespace)
		dst = append(dst, '/')
		dst = appendEscaped(dst, p.Name)
		if n.Container != "" {
			dst = append(dst, '/')
			return appendEscaped(dst, n.Container)
		}
	case p.UID != "":
		dst = append(dst, "pod uid "...)
		dst = appendEscaped(dst, p.UID)
	}
	if n.Container == "" || p.Name == "" {
		if id := n.ContainerID; id != "" {
			if p.Known() {
				dst = append(dst, ' ')
			}
			dst = append(dst, "container "...)
			dst = appendEscaped(dst, id[:min(len(id), shortID)])
		}
	}
	return dst
}

// podLabel names a pod in a summary row.
func podLabel(p names.Pod) string {
	return string(appendNames(nil, &names.Names{Pod: p}))
}

// jsonPod is a packet's "pod" (docs/json-schema.md).
type jsonPod struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	UID         string `json:"uid"`
	Container   string `json:"container"`
	ContainerID string `json:"container_id"`
}

// jsonPodOf is the "pod" of a packet, nil when neither a pod nor a
// container is known.
func jsonPodOf(n *names.Names) *jsonPod {
	if !n.Pod.Known() && n.ContainerID == "" {
		return nil
	}
	return &jsonPod{Namespace: n.Pod.Namespace, Name: n.Pod.Name, UID: n.Pod.UID, Container: n.Container, ContainerID: n.ContainerID}
}
