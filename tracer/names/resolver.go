package names

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ctprobe/ctprobe/internal/privs"
)

// Options configure a Resolver. The zero value names from the node alone.
type Options struct {
	// HostRoot prefixes every /proc and /run path ("" or "/": this
	// machine's).
	HostRoot string
	// Runtime lists pods and containers; nil: none (NoRuntime says why).
	Runtime   Runtime
	NoRuntime string
	// Refresh is how often the table is rebuilt besides on a miss
	// (DefaultRefresh); MinInterval the least time between two rebuilds
	// (DefaultMinInterval), so that misses do not hammer the runtime.
	Refresh, MinInterval time.Duration
	// Timeout bounds one rebuild's wait for the runtime (DefaultTimeout).
	Timeout time.Duration
	// Record keeps every new answer for Pending (a capture is written).
	Record bool
	// Warn gets a message when the source of names changes: the runtime
	// stops answering, answers again, or a limit is reached. Once each
	// time, from the resolver's goroutine.
	Warn func(msg string)
}

// Defaults of Options.
const (
	DefaultRefresh     = 30 * time.Second
	DefaultMinInterval = time.Second
	DefaultTimeout     = 2 * time.Second
)

// Sources of names (Status.Source).
const (
	SourceRuntime = "cri"  // the container runtime, over the CRI
	SourceNode    = "node" // cgroup paths and /run/netns alone
	SourceOff     = "off"  // not named
)

// Status says where names come from.
type Status struct {
	Source  string `json:"source"`
	Runtime string `json:"runtime"` // which runtime, where
	// Reason is why the runtime is not the source.
	Reason    string `json:"reason"`
	Pods      int    `json:"pods"`
	Netns     int    `json:"netns"` // namespaces named (pods' and /run/netns)
	Truncated bool   `json:"truncated"`
}

func (s Status) String() string {
	switch s.Source {
	case SourceOff:
		return "none: " + s.Reason
	case SourceRuntime:
		return fmt.Sprintf("the container runtime: %s (%d pods, %d named network namespaces)", s.Runtime, s.Pods, s.Netns)
	}
	return fmt.Sprintf("the node: pod UIDs and container ids from cgroup paths, /run/netns names (%d named network namespaces); %s", s.Netns, s.Reason)
}

// pidTTL is how long a sender's cgroup is trusted: a burst of incidents
// from one process reads its cgroup file once, and a PID reused by another
// process is read again soon.
const pidTTL = time.Second

// Bounds of the per-sender cache and of the answers kept for a capture.
const (
	maxPIDs     = 1024
	maxRecorded = 4096
	maxPending  = 4096
)

// Resolver names packets from a table that it rebuilds in the background.
// Names never waits for the runtime. It is safe for concurrent use.
type Resolver struct {
	o    Options
	node node
	cur  atomic.Pointer[table]
	stat atomic.Pointer[Status]
	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	pids       map[uint32]pidCgroup
	recorded   map[Key]Names
	pending    []Entry
	unrecorded uint64
}

type pidCgroup struct {
	cg Cgroup
	at time.Time
}

// Start builds the first table, waiting for it at most twice
// Options.Timeout, and keeps it fresh until Close.
func Start(o Options) *Resolver {
	if o.Refresh <= 0 {
		o.Refresh = DefaultRefresh
	}
	if o.MinInterval <= 0 {
		o.MinInterval = DefaultMinInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Warn == nil {
		o.Warn = func(string) {}
	}
	r := &Resolver{
		o: o, node: node{root: o.HostRoot},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		pids: map[uint32]pidCgroup{}, recorded: map[Key]Names{},
	}
	r.cur.Store(newTable(nil, 0, nil, nil))
	r.stat.Store(&Status{Source: SourceNode, Reason: o.NoRuntime})
	first := make(chan struct{})
	go r.loop(first)
	t := time.NewTimer(2 * o.Timeout)
	defer t.Stop()
	select {
	case <-first:
	case <-t.C:
	}
	return r
}

// Close stops the refreshes and closes the runtime.
func (r *Resolver) Close() error {
	close(r.stop)
	// A runtime that ignores its deadline must not hold up the exit.
	t := time.NewTimer(r.o.Timeout + time.Second)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
	}
	if r.o.Runtime != nil {
		return r.o.Runtime.Close()
	}
	return nil
}

// Status says where the names come from now.
func (r *Resolver) Status() Status { return *r.stat.Load() }

func (r *Resolver) loop(first chan struct{}) {
	defer close(r.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-r.done:
		}
	}()
	r.refresh(ctx)
	close(first)
	tick := time.NewTicker(r.o.Refresh)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
		case <-r.kick:
			if wait := r.o.MinInterval - time.Since(last); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-r.stop:
					t.Stop()
					return
				case <-t.C:
				}
			}
		}
		r.refresh(ctx)
		last = time.Now()
	}
}

// refresh rebuilds the table: the runtime's pods and containers, the node's
// namespaces.
func (r *Resolver) refresh(ctx context.Context) {
	var st *State
	var rtErr error
	if r.o.Runtime != nil {
		c, cancel := context.WithTimeout(ctx, r.o.Timeout)
		s, err := r.o.Runtime.List(c)
		cancel()
		if err == nil {
			st = &s
		} else {
			rtErr = err
		}
	}
	var pods map[uint32]podProcess
	var host uint32
	// One thread with CAP_SYS_PTRACE raised for the whole scan of /proc
	// (Capabilities): every process's namespace link is read.
	_ = privs.Raise(Capabilities, func() error {
		host, _ = r.node.hostNetns()
		pods, _ = r.node.scanPods(host, MaxNetns)
		return nil
	})
	netnsNames, _ := r.node.netnsNames(MaxNetns)
	t := newTable(st, host, netnsNames, pods)
	r.cur.Store(t)

	prev := r.stat.Load()
	s := &Status{Source: SourceNode, Reason: r.o.NoRuntime, Pods: len(t.sandboxes), Netns: len(t.netns), Truncated: t.truncated}
	if r.o.Runtime != nil {
		s.Runtime = r.o.Runtime.String()
		if rtErr == nil {
			s.Source = SourceRuntime
		} else {
			s.Reason = fmt.Sprintf("the container runtime (%s) did not answer: %v", s.Runtime, rtErr)
		}
	}
	if s.Source == SourceNode {
		// Pods the runtime did not name are the namespaces holding one.
		s.Pods = 0
		for _, ni := range t.netns {
			if ni.pod.Known() {
				s.Pods++
			}
		}
	}
	r.stat.Store(s)
	switch {
	case rtErr != nil && (prev.Source != SourceNode || prev.Reason == r.o.NoRuntime):
		r.o.Warn("names: " + s.Reason + ": pods are named by UID and container id from cgroup paths until it does")
	case rtErr == nil && r.o.Runtime != nil && prev.Source == SourceNode && prev.Reason != r.o.NoRuntime:
		r.o.Warn("names: the container runtime (" + s.Runtime + ") answers again")
	}
	if t.truncated && !prev.Truncated {
		r.o.Warn(fmt.Sprintf("names: more pods, containers or namespaces than ctprobe keeps (%d pods, %d containers, %d namespaces, %d addresses): some are not named", MaxPods, MaxContainers, MaxNetns, MaxAddrs))
	}
}

// Names names a packet: table lookups, and the sender's cgroup file unless
// read within pidTTL. A miss asks for a rebuild and does not wait for it.
func (r *Resolver) Names(k Key) Names {
	var cg Cgroup
	if k.PID != 0 {
		cg = r.cgroupOf(k.PID)
	}
	n, miss := r.cur.Load().lookup(k, cg, r.node.holds)
	if miss {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
	if r.o.Record {
		r.record(k, n)
	}
	return n
}

// PodOfNetns is the pod whose network namespace has this inode: the lookup
// a metrics exporter labels a namespace's counters with.
func (r *Resolver) PodOfNetns(ino uint32) (Pod, bool) {
	ni, ok := r.cur.Load().netns[ino]
	if !ok || !ni.pod.Known() || !r.node.holds(ni.pid, ino) {
		return Pod{}, false
	}
	return ni.pod, true
}

func (r *Resolver) cgroupOf(pid uint32) Cgroup {
	now := time.Now()
	r.mu.Lock()
	e, ok := r.pids[pid]
	r.mu.Unlock()
	if ok && now.Sub(e.at) < pidTTL {
		return e.cg
	}
	cg, _ := r.node.cgroup(pid) // gone: nothing known
	r.mu.Lock()
	if len(r.pids) >= maxPIDs {
		clear(r.pids)
	}
	r.pids[pid] = pidCgroup{cg: cg, at: now}
	r.mu.Unlock()
	return cg
}

// record keeps an answer that differs from the last one for its key.
func (r *Resolver) record(k Key, n Names) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.recorded[k]; ok && old == n || !ok && n.Empty() {
		return
	}
	if len(r.pending) >= maxPending {
		r.unrecorded++
		return
	}
	if len(r.recorded) >= maxRecorded {
		clear(r.recorded) // answers recorded again: more bytes, not wrong ones
	}
	r.recorded[k] = n
	r.pending = append(r.pending, Entry{Key: k, Names: n})
}

// Rerecord forgets which answers were kept, so that each is kept again
// when next given: a new capture file needs them all.
func (r *Resolver) Rerecord() {
	r.mu.Lock()
	clear(r.recorded)
	r.mu.Unlock()
}

// Pending appends the answers given since the last call to dst (to be
// written to a capture before the record that produced them) and
// forgets them. Unrecorded counts answers dropped because nobody took them
// in time.
func (r *Resolver) Pending(dst []Entry) (_ []Entry, unrecorded uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	dst = append(dst, r.pending...)
	r.pending = r.pending[:0]
	return dst, r.unrecorded
}
