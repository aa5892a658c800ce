// Package cri lists a node's pods and containers from its container runtime
// over the CRI (k8s.io/cri-api's RuntimeService, gRPC on a unix socket):
// containerd, CRI-O and cri-dockerd serve it. It is the only place in
// ctprobe that talks gRPC; package names keeps what it answers.
package cri

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/ctprobe/ctprobe/tracer/names"
)

// Sockets are where runtimes serve the CRI by default, in the order
// Detect tries them: containerd, CRI-O, cri-dockerd.
var Sockets = []string{"/run/containerd/containerd.sock", "/run/crio/crio.sock", "/run/cri-dockerd.sock"}

// maxMessage bounds one answer (the kubelet's own limit is 16 MiB).
const maxMessage = 16 << 20

// ErrNoSocket: none of the sockets exists.
var ErrNoSocket = errors.New("no container runtime socket")

// Client is a connection to one runtime. It implements names.Runtime.
type Client struct {
	conn   *grpc.ClientConn
	rt     runtimeapi.RuntimeServiceClient
	path   string
	runner string // "containerd 1.6.20"

	mu sync.Mutex
	// sandboxes keeps what PodSandboxStatus said of each sandbox (its
	// addresses do not change), so that a refresh asks only about new ones.
	sandboxes map[string]sandboxNet
}

type sandboxNet struct {
	ips         []netip.Addr
	hostNetwork bool
}

// Dial connects to the CRI at path and asks for the runtime's version; ctx
// bounds the wait. An error says what answered and how.
func Dial(ctx context.Context, path string) (*Client, error) {
	conn, err := grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c := &Client{conn: conn, rt: runtimeapi.NewRuntimeServiceClient(conn), path: path, sandboxes: map[string]sandboxNet{}}
	v, err := c.rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		conn.Close()
		if status.Code(err) == codes.Unimplemented {
			return nil, fmt.Errorf("%s does not serve the CRI (runtime.v1): for containerd, enable its cri plugin", path)
		}
		return nil, fmt.Errorf("%s does not answer the CRI: %w", path, err)
	}
	c.runner = strings.TrimSpace(names.Clip(v.GetRuntimeName()) + " " + names.Clip(v.GetRuntimeVersion()))
	return c, nil
}

// Detect connects to the runtime at socket, or where socket is empty to
// the first of Sockets that exists and answers; every path is under
// hostRoot. ErrNoSocket says that none exists; other errors say why each
// that does failed.
func Detect(ctx context.Context, hostRoot, socket string) (*Client, error) {
	if socket != "" {
		p := filepath.Join("/", hostRoot, socket)
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w at %s", ErrNoSocket, p)
		}
		return Dial(ctx, p)
	}
	var errs []error
	var tried []string
	for _, s := range Sockets {
		p := filepath.Join("/", hostRoot, s)
		tried = append(tried, p)
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		c, err := Dial(ctx, p)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%w at %s", ErrNoSocket, strings.Join(tried, ", "))
	}
	return nil, errors.Join(errs...)
}

// String names the runtime and its socket.
func (c *Client) String() string { return c.runner + " at " + c.path }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// List returns the ready pod sandboxes and the containers. It asks
// PodSandboxStatus only about sandboxes it has not seen, and at most
// names.MaxPods of them; a sandbox that vanished meanwhile is listed
// without addresses.
func (c *Client) List(ctx context.Context) (names.State, error) {
	var st names.State
	sbs, err := c.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}},
	})
	if err != nil {
		return st, fmt.Errorf("list pod sandboxes: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	known := make(map[string]sandboxNet, len(sbs.GetItems()))
	for _, sb := range sbs.GetItems() {
		if len(st.Sandboxes) >= names.MaxPods {
			break
		}
		id, md := sb.GetId(), sb.GetMetadata()
		if id == "" {
			continue
		}
		net, ok := c.sandboxes[id]
		if !ok {
			if net, err = c.sandboxNet(ctx, id); err != nil {
				if ctx.Err() != nil {
					return st, err
				}
			} else {
				ok = true
			}
		}
		if ok {
			known[id] = net
		}
		st.Sandboxes = append(st.Sandboxes, names.Sandbox{
			ID:  id,
			Pod: names.Pod{Namespace: md.GetNamespace(), Name: md.GetName(), UID: md.GetUid()},
			IPs: net.ips, HostNetwork: net.hostNetwork,
		})
	}
	c.sandboxes = known // sandboxes gone are forgotten
	ctrs, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return st, fmt.Errorf("list containers: %w", err)
	}
	for _, ct := range ctrs.GetContainers() {
		if len(st.Containers) >= names.MaxContainers {
			break
		}
		st.Containers = append(st.Containers, names.Container{ID: ct.GetId(), Name: ct.GetMetadata().GetName(), SandboxID: ct.GetPodSandboxId()})
	}
	return st, nil
}

// sandboxNet asks for a sandbox's addresses and network mode.
func (c *Client) sandboxNet(ctx context.Context, id string) (sandboxNet, error) {
	r, err := c.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		return sandboxNet{}, fmt.Errorf("pod sandbox %s status: %w", id, err)
	}
	s := r.GetStatus()
	net := sandboxNet{hostNetwork: s.GetLinux().GetNamespaces().GetOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE}
	ips := []string{s.GetNetwork().GetIp()}
	for _, a := range s.GetNetwork().GetAdditionalIps() {
		ips = append(ips, a.GetIp())
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil && len(net.ips) < 8 {
			net.ips = append(net.ips, a)
		}
	}
	return net, nil
}
