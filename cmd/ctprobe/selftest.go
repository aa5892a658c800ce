package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ctprobe/ctprobe/internal/cli"
	"github.com/ctprobe/ctprobe/lab"
	"github.com/ctprobe/ctprobe/tracer"
	"github.com/ctprobe/ctprobe/tracer/kstat"
	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/render"
	"github.com/ctprobe/ctprobe/tracer/session"
	"github.com/ctprobe/ctprobe/tracer/summary"
)

// defineSelftest defines selftest's flags; it reproduces races on this
// kernel in throwaway namespaces while tracing, then checks ctprobe's
// incidents against the kernel's counters.
func defineSelftest(fs *flag.FlagSet) func(stdout, stderr io.Writer) error {
	out := addOutputFlags(fs)
	scenario := fs.String("scenario", "endpoints-2", "lab scenario (ctlab scenarios lists them)")
	lookups := cli.Int(fs, "lookups", 200, 1, 1_000_000, "number of parallel A+AAAA lookups")
	minClashes := cli.Int(fs, "min-clashes", 20, 0, 1_000_000, "after --lookups, go on until the kernel counted this many clashes (at most 20 x --lookups)")
	return func(stdout, stderr io.Writer) error {
		sc, err := lab.ScenarioByName(*scenario)
		if err != nil {
			return cli.Usagef("--scenario: %v", err)
		}
		if err := tracer.CheckPrivileges(); err != nil {
			return err
		}
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer cancel()

		topo, err := lab.Setup(ctx, sc, lab.Options{})
		if err != nil {
			return fmt.Errorf("set up the %s lab: %w", sc.Name, err)
		}
		defer topo.Close()
		t, err := tracer.Open(tracer.Options{})
		if err != nil {
			return err
		}
		defer t.Close()
		boot := session.BootTime()
		r, err := out.renderer(stdout, render.Options{Clock: render.Clock{BootTimeUnixNano: boot}})
		if err != nil {
			return err
		}
		stop := make(chan struct{})
		s, err := session.Start(t, session.Config{Options: tracer.Options{Mode: mode.Of(*out.all, false)}, Renderer: r, BootTime: boot, Stop: stop})
		if err != nil {
			return err
		}
		done := make(chan error, 1)
		go func() { done <- s.Run() }()

		stats, lookErr := topo.LookupsUntil(ctx, *lookups, *minClashes, 20**lookups)
		// Let the last confirms reach the ring buffer before detaching.
		time.Sleep(200 * time.Millisecond)
		close(stop)
		runErr := <-done
		if runErr == nil && lookErr != nil {
			runErr = fmt.Errorf("lookups: %w", lookErr)
		}
		// The summary is over the lab's own namespaces, measured around the
		// lookups.
		counters := []kstat.NetnsCounters{}
		max := kstat.ReadMax()
		for _, ns := range stats.Netns {
			counters = append(counters, kstat.NetnsCounters{Netns: ns.Inode, Name: ns.Name, Values: ns.Delta.Values(), Entries: ns.Delta.Entries, Max: max})
		}
		summary, err := s.Finish(runErr, counters)
		if err != nil {
			return err
		}
		return selftestVerdict(stdout, summary, stats)
	}
}

// selftestVerdict compares, per namespace, the clashes ctprobe explained
// with the kernel's own counts over the same lookups.
func selftestVerdict(w io.Writer, s *summary.Summary, stats lab.Stats) error {
	seen := map[uint64]summary.NetnsSummary{}
	for _, ns := range s.Netns {
		seen[ns.Netns] = ns
	}
	ok := true
	var kernelClashes uint64
	for _, ns := range stats.Netns {
		d := ns.Delta
		got := seen[ns.Inode]
		// Before 5.10 there is no clash_resolve: insert_failed counts every
		// clash, settled or not (docs/kernel-notes.md, What confirm returns, per
		// era: 4.19 to 5.9).
		wantResolved, wantDropped := d.ClashResolve, d.InsertFailed
		if !d.HasClashResolve {
			wantResolved, wantDropped = d.InsertFailed-d.Drop, d.Drop
		}
		kernelClashes += wantResolved + wantDropped
		if got.Resolved != wantResolved || got.Dropped != wantDropped {
			ok = false
			fmt.Fprintf(w, "MISMATCH netns %s (%d): ctprobe %d settled, %d dropped; kernel %d settled, %d dropped\n",
				ns.Name, ns.Inode, got.Resolved, got.Dropped, wantResolved, wantDropped)
		}
	}
	switch {
	case !ok:
		return fmt.Errorf("ctprobe does not see what the kernel counts here (details above)")
	case kernelClashes == 0:
		return fmt.Errorf("no race happened in %d lookups, so nothing was checked: rerun with more --lookups", stats.Lookups)
	}
	fmt.Fprintf(w, "ctprobe sees what the kernel counts here: %d clashes in %d lookups, all explained\n", kernelClashes, stats.Lookups)
	return nil
}
