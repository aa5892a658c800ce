package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"
)

// ownNetns stands for the network namespace ctlab already runs in: a pod's,
// when ctlab is a container's process (ctlab lookup, ctlab serve), where
// the lab builds no topology and may not switch namespaces (a container has
// no CAP_SYS_ADMIN).
var ownNetns = &Netns{Name: "own", Role: "pod"}

// Client sends the lab's racing lookups from ctlab's own network namespace.
type Client struct {
	senders [2]*sender
	target  netip.AddrPort
	o       Options
}

// NewClient starts the two sending threads (on two CPUs where it may).
// Only o.Timeout and o.Name are used.
func NewClient(target netip.AddrPort, o Options) (*Client, error) {
	if _, err := o.resolve(Scenario{Endpoints: 1}); err != nil {
		return nil, err
	}
	c := &Client{target: target, o: o}
	cpu0, cpu1 := racingCPUs()
	for i, cpu := range []int{cpu0, cpu1} {
		s, err := startSender(ownNetns, cpu, o.Comm)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.senders[i] = s
	}
	return c, nil
}

// Close stops the threads.
func (c *Client) Close() {
	for _, s := range c.senders {
		if s != nil {
			s.stop()
		}
	}
}

// Lookups performs k racing lookups (as Topology.Lookups does); the stats
// hold no namespace counters. It stops early when ctx ends.
func (c *Client) Lookups(ctx context.Context, k int) (Stats, error) {
	st := Stats{
		Setting: Setting{Path: PathLocal, Family: 4, Target: c.target, Kernel: kernelRelease()},
		Timeout: c.o.Timeout, Requested: k, Racing: true,
		Pid: os.Getpid(), Comm: processComm(), Pids: []int{os.Getpid()},
	}
	if c.target.Addr().Is6() {
		st.Family = 6
	}
	for _, s := range c.senders {
		st.TIDs = append(st.TIDs, s.tid)
	}
	start := time.Now()
	var err error
	for i := 0; i < k; i++ {
		if err = ctx.Err(); err != nil {
			break
		}
		if err = racingLookup(c.senders[0], c.senders[1], c.target, &c.o, &st); err != nil {
			err = fmt.Errorf("lookup %d: %w", i+1, err)
			break
		}
		st.Lookups++
	}
	st.Duration = time.Since(start)
	if st.Duration > 0 {
		st.Rate = float64(st.Lookups) / st.Duration.Seconds()
	}
	return st, err
}

// Serve answers DNS queries on port 53 of ctlab's own network namespace
// until ctx ends, each answer's TTL carrying index (the endpoint number)
// and the query's source port (AnswerTTL).
// It returns how many it answered.
func Serve(ctx context.Context, index int) (uint64, error) {
	r, err := startResponder(ownNetns, index)
	if err != nil {
		return 0, err
	}
	<-ctx.Done()
	r.Close()
	if errors.Is(ctx.Err(), context.Canceled) {
		return r.answered.Load(), nil
	}
	return r.answered.Load(), ctx.Err()
}
