package cri

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/ctprobe/ctprobe/tracer/names"
)

// fakeCRI is a CRI server with a few pods; its answers can be slowed or
// made garbage.
type fakeCRI struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	delay    time.Duration
	garbage  bool
	statuses atomic.Int32 // PodSandboxStatus calls
}

func (f *fakeCRI) wait(ctx context.Context) error {
	select {
	case <-time.After(f.delay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakeCRI) Version(ctx context.Context, _ *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	if err := f.wait(ctx); err != nil {
		return nil, err
	}
	return &runtimeapi.VersionResponse{RuntimeName: "fakerd", RuntimeVersion: "1.2.3", RuntimeApiVersion: "v1"}, nil
}

func (f *fakeCRI) ListPodSandbox(ctx context.Context, _ *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	if f.garbage {
		return &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{
			nil, {}, {Id: "no-metadata"}, {Id: "sb-bad-ip", Metadata: &runtimeapi.PodSandboxMetadata{Name: "x", Uid: "u"}},
		}}, nil
	}
	return &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{
		{Id: "sb-a", Metadata: &runtimeapi.PodSandboxMetadata{Name: "coredns-5d78c9869d-abcde", Namespace: "kube-system", Uid: "uid-a"}},
		{Id: "sb-h", Metadata: &runtimeapi.PodSandboxMetadata{Name: "agent", Namespace: "kube-system", Uid: "uid-h"}},
	}}, nil
}

func (f *fakeCRI) PodSandboxStatus(ctx context.Context, r *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	f.statuses.Add(1)
	switch r.PodSandboxId {
	case "sb-a":
		return &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{Id: "sb-a",
			Network: &runtimeapi.PodSandboxNetworkStatus{Ip: "10.88.0.2", AdditionalIps: []*runtimeapi.PodIP{{Ip: "fd00::2"}, nil}}}}, nil
	case "sb-h":
		return &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{Id: "sb-h",
			Network: &runtimeapi.PodSandboxNetworkStatus{Ip: "192.168.1.5"},
			Linux:   &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}}}}}, nil
	case "sb-bad-ip":
		return &runtimeapi.PodSandboxStatusResponse{Status: &runtimeapi.PodSandboxStatus{Network: &runtimeapi.PodSandboxNetworkStatus{Ip: "not an address"}}}, nil
	}
	return &runtimeapi.PodSandboxStatusResponse{}, nil
}

func (f *fakeCRI) ListContainers(ctx context.Context, _ *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	if f.garbage {
		return &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{nil, {}, {Id: "c", PodSandboxId: "nowhere"}}}, nil
	}
	return &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{
		{Id: "ctr-a", PodSandboxId: "sb-a", Metadata: &runtimeapi.ContainerMetadata{Name: "coredns"}},
	}}, nil
}

// serve starts srv on a unix socket at path.
func serve(t *testing.T, path string, srv runtimeapi.RuntimeServiceServer) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(g, srv)
	go g.Serve(l)
	t.Cleanup(g.Stop)
}

func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

func TestDetectAndList(t *testing.T) {
	root := t.TempDir()
	f := &fakeCRI{}
	serve(t, filepath.Join(root, "run/crio/crio.sock"), f)
	c, err := Detect(ctx(t, 5*time.Second), root, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if want := "fakerd 1.2.3 at " + filepath.Join(root, "run/crio/crio.sock"); c.String() != want {
		t.Errorf("String %q, want %q", c, want)
	}
	st, err := c.List(ctx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	want := names.State{
		Sandboxes: []names.Sandbox{
			{ID: "sb-a", Pod: names.Pod{Namespace: "kube-system", Name: "coredns-5d78c9869d-abcde", UID: "uid-a"}, IPs: []netip.Addr{netip.MustParseAddr("10.88.0.2"), netip.MustParseAddr("fd00::2")}},
			{ID: "sb-h", Pod: names.Pod{Namespace: "kube-system", Name: "agent", UID: "uid-h"}, IPs: []netip.Addr{netip.MustParseAddr("192.168.1.5")}, HostNetwork: true},
		},
		Containers: []names.Container{{ID: "ctr-a", Name: "coredns", SandboxID: "sb-a"}},
	}
	if !equalState(st, want) {
		t.Errorf("List:\n%+v\nwant\n%+v", st, want)
	}
	// A second List asks about no sandbox again.
	if _, err := c.List(ctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := f.statuses.Load(); n != 2 {
		t.Errorf("%d PodSandboxStatus calls over two Lists, want 2", n)
	}
}

func equalState(a, b names.State) bool {
	if len(a.Sandboxes) != len(b.Sandboxes) || len(a.Containers) != len(b.Containers) {
		return false
	}
	for i := range a.Sandboxes {
		x, y := a.Sandboxes[i], b.Sandboxes[i]
		if x.ID != y.ID || x.Pod != y.Pod || x.HostNetwork != y.HostNetwork || len(x.IPs) != len(y.IPs) {
			return false
		}
		for j := range x.IPs {
			if x.IPs[j] != y.IPs[j] {
				return false
			}
		}
	}
	for i := range a.Containers {
		if a.Containers[i] != b.Containers[i] {
			return false
		}
	}
	return true
}

func TestDetectNoSocket(t *testing.T) {
	root := t.TempDir()
	_, err := Detect(ctx(t, time.Second), root, "")
	if !errors.Is(err, ErrNoSocket) || !strings.Contains(err.Error(), filepath.Join(root, Sockets[0])) {
		t.Errorf("Detect on a node without a runtime: %v", err)
	}
}

// A socket that exists but whose server does not answer in time, speaks
// something else, or does not serve the CRI: Detect returns by its
// deadline, with an error that names the socket and the fault.
func TestDetectBadServers(t *testing.T) {
	cases := []struct {
		name  string
		start func(t *testing.T, path string)
		says  string
	}{
		{"slow", func(t *testing.T, p string) { serve(t, p, &fakeCRI{delay: time.Minute}) }, "DeadlineExceeded"},
		{"not the CRI", func(t *testing.T, p string) { serve(t, p, runtimeapi.UnimplementedRuntimeServiceServer{}) }, "does not serve the CRI"},
		{"not gRPC", func(t *testing.T, p string) {
			l, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n\x00\xff garbage"))
					c.Close()
				}
			}()
		}, "does not answer the CRI"},
		{"a stale socket file", func(t *testing.T, p string) {
			l, err := net.Listen("unix", p)
			if err != nil {
				t.Fatal(err)
			}
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			l.Close()
		}, "does not answer the CRI"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "cri.sock")
			c.start(t, p)
			began := time.Now()
			_, err := Detect(ctx(t, 500*time.Millisecond), "", p)
			if err == nil || !strings.Contains(err.Error(), c.says) || !strings.Contains(err.Error(), p) {
				t.Errorf("Detect: %v; want an error with %q and the socket", err, c.says)
			}
			if d := time.Since(began); d > 3*time.Second {
				t.Errorf("Detect took %v past a 500ms deadline", d)
			}
		})
	}
}

// A runtime that answers garbage: List keeps what can name something, and
// the resolver names from it without failing.
func TestListGarbage(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cri.sock")
	serve(t, p, &fakeCRI{garbage: true})
	c, err := Dial(ctx(t, 5*time.Second), p)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.List(ctx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Sandboxes) != 2 || len(st.Sandboxes[1].IPs) != 0 {
		t.Errorf("garbage sandboxes: %+v", st.Sandboxes)
	}
	r := names.Start(names.Options{HostRoot: t.TempDir(), Runtime: c})
	defer r.Close()
	if got := r.Names(names.Key{Netns: 1, Addr: netip.MustParseAddr("10.88.0.2")}); !got.Empty() {
		t.Errorf("names from garbage: %+v", got)
	}
	if s := r.Status(); s.Source != names.SourceRuntime {
		t.Errorf("status %+v", s)
	}
}
