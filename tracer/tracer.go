// Package tracer loads ctprobe's BPF programs, attaches each probe point in
// the best mode the running kernel allows, and reads the ring buffer.
package tracer

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/ctprobe/ctprobe/tracer/mode"
	"github.com/ctprobe/ctprobe/tracer/plan"
	"github.com/ctprobe/ctprobe/tracer/probe"
)

// Filter selects flows in the kernel, before anything is recorded.
type Filter struct {
	Proto uint8      // IP protocol number, 0 for any
	Host  netip.Addr // either end of either tuple; invalid for any
	Port  uint16     // either end of either tuple; 0 for any
	Netns uint32     // netns inode; 0 for any
	PID   uint32     // tgid of the task that created the ct; 0 for any
}

// Options configure a Tracer.
type Options struct {
	Filter Filter
	// Mode says what the trace follows (package mode): the probe points,
	// and the pipeline the BPF programs run.
	Mode mode.Mode
	// RingSize is the ring buffer size in bytes (a power of two, >= page size).
	RingSize int
	// History is the number of conntrack entries whose history the kernel
	// keeps when the mode follows every flow.
	History int
	// MaxActive is the number of concurrent kretprobe instances per
	// function; 0 is DefaultMaxActive, and lets kprobe mode use
	// kprobe.session where it can (whose instances the kernel fixes).
	MaxActive int
	// Attach restricts how points attach: "" tries fentry, then kprobe;
	// plan.Fentry or plan.Kprobe uses only that one.
	Attach plan.Attach
	// Skip names optional probe points not to attach ("nat", "clash",
	// "origin").
	Skip []string
}

// Default sizes.
const (
	DefaultRingSize  = 4 << 20
	DefaultHistory   = 8192
	DefaultMaxActive = 1024
)

// Tracer is a set of attached probes and the ring buffer they feed.
type Tracer struct {
	Kernel Kernel
	Plan   []plan.Entry

	spec    *ebpf.CollectionSpec
	maps    *ebpf.Collection
	progs   []loaded
	links   []attached
	reader  *ringbuf.Reader
	lossMap *ebpf.Map
	// causes are the distinct reasons attaching failed, by mode ("fentry:
	// ...", "kprobe: ..."), for a short error when a required point fails.
	causes []string
	// kretMissed keeps the last kretprobe miss counts, which live in the
	// links, so that they are still reported after Detach.
	kretMissed map[string]uint64
}

// loaded is a program and its name in the object, for its statistics.
type loaded struct {
	*ebpf.Program
	name string
}

type attached struct {
	link.Link
	retprobe bool
	fn       string
}

// ErrNotTraceable means no required probe point could be attached. Its
// message names the reason and the fix.
var ErrNotTraceable = errors.New("cannot trace conntrack on this kernel")

// Open plans, loads and attaches the probes. When a required point cannot
// attach it returns an error wrapping ErrNotTraceable, with the plan filled
// in t.Plan of the returned (closed) tracer for reporting.
func Open(opts Options) (*Tracer, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	// Before 5.11 BPF memory is charged to the user's RLIMIT_MEMLOCK
	// (64 KiB by default then), shared by every process of the user: the
	// feature probes below already create maps, and with another tracer's
	// ring buffer charged they are refused (EPERM) unless it is raised
	// first. Memlock is accounted per cgroup on 5.11+, where this is
	// harmless.
	_ = rlimit.RemoveMemlock()
	k, err := ProbeKernel()
	if err != nil {
		return nil, err
	}
	k.TaskStorage = haveTaskStorage()
	t := &Tracer{Kernel: k}
	if !k.Conntrack {
		return t, errNoConntrack
	}
	if err := ringBufferSupported(features.HaveMapType(ebpf.RingBuf), k.Release); err != nil {
		return t, err
	}
	if err := t.load(opts); err != nil {
		t.Close()
		return t, err
	}
	t.attach(opts)
	// The ELF and kernel BTF parsed to load the programs are garbage now:
	// return their memory at once, not through the runtime's background
	// scavenger while the tracer runs beside the traffic it watches.
	t.spec = nil
	debug.FreeOSMemory()
	if err := t.requiredAttached(); err != nil {
		t.Close()
		return t, err
	}
	if err := t.useWinnerLookup(); err != nil {
		t.Close()
		return t, err
	}
	t.reader, err = ringbuf.NewReader(t.maps.Maps[probe.BPFMapEvents])
	if err != nil {
		t.Close()
		return t, fmt.Errorf("open ring buffer: %w", err)
	}
	return t, nil
}

// ringBufferSupported turns the kernel's answer to "is there a BPF ring
// buffer?" (Linux 5.8+, or a backport) into the error a user can act on:
// every record travels through it.
func ringBufferSupported(probe error, release string) error {
	switch {
	case probe == nil:
		return nil
	case errors.Is(probe, ebpf.ErrNotSupported):
		return fmt.Errorf("%w: kernel %s has no BPF ring buffer (Linux 5.8+, or a distribution kernel that backports it): run ctprobe on a newer kernel", ErrNotTraceable, release)
	}
	return fmt.Errorf("probe for the BPF ring buffer: %w", probe)
}

// load creates the maps (with the filters frozen into .rodata); programs are
// loaded per attach attempt, sharing these maps.
func (t *Tracer) load(opts Options) error {
	spec, err := probe.LoadBPF()
	if err != nil {
		return fmt.Errorf("load BPF spec: %w", err)
	}
	if err := setFilter(spec, opts); err != nil {
		return err
	}
	spec.Maps[probe.BPFMapEvents].MaxEntries = uint32(orDefault(opts.RingSize, DefaultRingSize))
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("count possible CPUs: %w", err)
	}
	sizeLRUMaps(spec, opts, cpus)
	if err := sizeHistory(spec, opts); err != nil {
		return err
	}
	// Before 5.11 a task storage map cannot be made either; no program
	// that uses it is planned then.
	if !t.Kernel.TaskStorage {
		delete(spec.Maps, probe.BPFMapConfirmSkb)
	}
	mapsOnly := spec.Copy()
	mapsOnly.Programs = nil
	t.maps, err = ebpf.NewCollection(mapsOnly)
	if err != nil {
		return fmt.Errorf("create BPF maps: %w", err)
	}
	t.lossMap = t.maps.Maps[probe.BPFMapLosses]
	t.spec = spec
	return nil
}

func orDefault(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

// setFilter freezes the filters and the mode's pipeline into the
// programs' read-only data, so that the verifier prunes what they turn off.
func setFilter(spec *ebpf.CollectionSpec, opts Options) error {
	f := opts.Filter
	set := func(name string, v any) error {
		if err := spec.Variables[name].Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
		return nil
	}
	var host [16]byte
	family := uint16(0)
	if f.Host.IsValid() {
		if f.Host.Is4() || f.Host.Is4In6() {
			a := f.Host.Unmap().As4()
			copy(host[:], a[:])
			family = unix.AF_INET
		} else {
			host = f.Host.As16()
			family = unix.AF_INET6
		}
	}
	port := f.Port<<8 | f.Port>>8 // the kernel compares __be16 values
	return errors.Join(
		set(probe.BPFVarFilterProto, f.Proto),
		set(probe.BPFVarFilterPort, port),
		set(probe.BPFVarFilterHostFamily, family),
		set(probe.BPFVarFilterHost, host),
		set(probe.BPFVarFilterNetns, f.Netns),
		set(probe.BPFVarFilterPid, f.PID),
		set(probe.BPFVarStreamConfirms, opts.Mode.StreamConfirms()),
		set(probe.BPFVarStreamAll, opts.Mode.StreamAll()),
		set(probe.BPFVarKeepHistory, opts.Mode.KeepHistory()),
	)
}

// Read blocks for the next ring buffer record, reusing rec's buffer.
// It returns os.ErrDeadlineExceeded after a deadline and ringbuf.ErrClosed
// after Close.
func (t *Tracer) Read(rec *ringbuf.Record) error { return t.reader.ReadInto(rec) }

// Buffered is the number of bytes the ring buffer holds, not yet read.
func (t *Tracer) Buffered() int { return t.reader.AvailableBytes() }

// SetDeadline makes a blocked Read return at d (zero: no deadline).
func (t *Tracer) SetDeadline(d time.Time) { t.reader.SetDeadline(d) }

// Detach removes every probe; records already in the ring buffer can still
// be read. Call it before draining, so that the drain ends.
func (t *Tracer) Detach() {
	t.readKretMissed()
	closeLinks(t.links)
	t.links = nil
}

// Close detaches every probe and frees the maps. Records still in the ring
// buffer should be drained with Read before Close.
func (t *Tracer) Close() error {
	closeLinks(t.links)
	t.links = nil
	if t.reader != nil {
		t.reader.Close()
	}
	for _, p := range t.progs {
		p.Close()
	}
	t.progs = nil
	if t.maps != nil {
		t.maps.Close()
	}
	return nil
}
