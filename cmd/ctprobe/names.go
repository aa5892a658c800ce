package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/ctprobe/ctprobe/internal/cli"
	"github.com/ctprobe/ctprobe/tracer/names"
	"github.com/ctprobe/ctprobe/tracer/names/cri"
)

// nameFlags choose where pod and container names come from (trace and
// probes).
type nameFlags struct {
	criSocket, hostRoot *string
	off                 *bool
}

func addNameFlags(fs flagDefiner) nameFlags {
	return nameFlags{
		criSocket: fs.String("cri-socket", "", "the container runtime's CRI socket, a path on the host (default: the first that answers of "+fmt.Sprint(cri.Sockets)+")"),
		hostRoot:  fs.String("host-root", "", "where the host's / is mounted (a DaemonSet's /host): prefixes the /proc, /run and cgroup paths that name pods, and the CRI socket"),
		off:       fs.Bool("no-names", false, "do not name pods and containers (no runtime calls, no /proc reads)"),
	}
}

func (f nameFlags) check() error {
	if *f.hostRoot == "" {
		return nil
	}
	if st, err := os.Stat(*f.hostRoot); err != nil || !st.IsDir() {
		return cli.Usagef("--host-root %s: not a directory (mount the host's / there, e.g. hostPath / at /host)", *f.hostRoot)
	}
	return nil
}

// detectTimeout bounds the wait for the runtime at start.
const detectTimeout = 2 * names.DefaultTimeout

// resolver starts naming pods, or returns nil with --no-names. The runtime
// is found first; when none answers, names come from the node, and warn
// says so once (not when the node simply has no runtime socket and none
// was asked for).
func (f nameFlags) resolver(record bool, warn func(string)) *names.Resolver {
	if *f.off {
		return nil
	}
	o := names.Options{HostRoot: *f.hostRoot, Record: record, Warn: warn}
	ctx, cancel := context.WithTimeout(context.Background(), detectTimeout)
	c, err := cri.Detect(ctx, *f.hostRoot, *f.criSocket)
	cancel()
	if err != nil {
		o.NoRuntime = err.Error()
		if !errors.Is(err, cri.ErrNoSocket) || *f.criSocket != "" {
			warn("names: " + err.Error() + ": pods are named by UID and container id from cgroup paths")
		}
	} else {
		o.Runtime = c
	}
	return names.Start(o)
}

// status is what `ctprobe probes` says of the names a trace would get.
func (f nameFlags) status() names.Status {
	if *f.off {
		return names.Status{Source: names.SourceOff, Reason: "turned off (--no-names)"}
	}
	r := f.resolver(false, func(string) {})
	defer r.Close()
	return r.Status()
}

// netnsPods names the pod of a network namespace for the metrics exporter
// (metrics.PodResolver), from the trace's resolver once it has started.
type netnsPods struct {
	r atomic.Pointer[names.Resolver]
}

// metricsPods is nil with --no-names: the metrics then have no pod labels.
func (f nameFlags) metricsPods() *netnsPods {
	if *f.off {
		return nil
	}
	return &netnsPods{}
}

func (p *netnsPods) set(r *names.Resolver) { p.r.Store(r) }

// Pod is the Kubernetes namespace and name of the pod whose network
// namespace has this inode; "" for one that is no pod's.
func (p *netnsPods) Pod(netns uint64) (namespace, pod string) {
	r := p.r.Load()
	if r == nil {
		return "", ""
	}
	if v, ok := r.PodOfNetns(uint32(netns)); ok {
		return v.Namespace, v.Name
	}
	return "", ""
}
