package main

import (
	"context"
	"errors"
	"fmt"
	"os"

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
