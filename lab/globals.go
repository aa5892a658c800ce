package lab

// Global conntrack settings. nf_conntrack_max and the hash table's size are
// one per host, writable only from the initial netns (docs/kernel-notes.md,
// Conntrack counters and other kernel evidence), so a scenario that needs
// them changed (a full table, long hash chains) changes them for everyone
// while it runs. The value found is written down in globalsDir before it is
// changed, and put back when the topology is removed (Close), or by Cleanup
// after a run that died or kept its namespaces.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ctprobe/ctprobe/tracer/kstat"
)

const (
	// globalsDir keeps, per topology (file named by its Prefix), the
	// settings to restore: one "path<TAB>value" line each.
	globalsDir = "/run/ctlab"
	// conntrackMax is nf_conntrack_max; hashSizeParam resizes the hash
	// table (nf_conntrack_set_hashsize; rounded up to whole pages of
	// buckets, so 512 is the least on x86-64).
	conntrackMax  = "/proc/sys/net/netfilter/nf_conntrack_max"
	hashSizeParam = "/sys/module/nf_conntrack/parameters/hashsize"
)

func readSetting(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}

// setGlobal writes value to path, having recorded the value it replaces
// (only the first one, when a topology sets a path twice).
func (t *Topology) setGlobal(path string, value uint64) error {
	old, err := readSetting(path)
	if err != nil {
		return fmt.Errorf("global conntrack setting: %w (is nf_conntrack loaded?)", err)
	}
	if err := os.MkdirAll(globalsDir, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(globalsDir, t.Prefix+"globals"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "%s\t%d\n", path, old)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(strconv.FormatUint(value, 10)), 0o644); err != nil {
		return fmt.Errorf("set %s to %d: %w", path, value, err)
	}
	t.logf("set %s to %d (was %d; restored when the topology is removed)", path, value, old)
	return nil
}

// restoreGlobals puts back what the topology with prefix changed, last
// change first, and forgets it.
func restoreGlobals(prefix string) error {
	file := filepath.Join(globalsDir, prefix+"globals")
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	var errs []error
	for i := len(lines) - 1; i >= 0; i-- {
		path, value, ok := strings.Cut(lines[i], "\t")
		if !ok {
			continue
		}
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore %s to %s: %w", path, value, err))
		}
	}
	if len(errs) == 0 {
		errs = append(errs, os.Remove(file))
	}
	return errors.Join(errs...)
}

// setHashBuckets sizes the hash table for the run: few buckets make long
// chains. nf_conntrack_max is raised too, if it is lower than the flows a
// flood makes, so that the table does not fill up first.
func (t *Topology) setHashBuckets(n int) error {
	if err := t.setGlobal(hashSizeParam, uint64(n)); err != nil {
		return err
	}
	if max, err := readSetting(conntrackMax); err == nil && max < FloodPorts {
		return t.setGlobal(conntrackMax, FloodPorts)
	}
	return nil
}

// limitTable lowers nf_conntrack_max to the node's entries plus room, so
// that the scenario's flows fill the node's table.
func (t *Topology) limitTable(room int) error {
	c, err := kstat.ReadNetns(t.byRole["node"].Path)
	if err != nil {
		return err
	}
	return t.setGlobal(conntrackMax, c.Entries+uint64(room))
}

// globalOwners lists the recorded settings of lab topologies: prefix → the
// pid that made them.
func globalOwners() (map[string]int, error) {
	entries, err := os.ReadDir(globalsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, e := range entries {
		prefix, ok := strings.CutSuffix(e.Name(), "globals")
		m := leftoverRE.FindStringSubmatch(prefix)
		if !ok || m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		out[prefix] = pid
	}
	return out, nil
}
