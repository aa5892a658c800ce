// Package kstat reads the kernel's conntrack statistics from
// /proc/net/stat/nf_conntrack, in the current network namespace or in another
// one.
//
// The file has one header line and then one row of hexadecimal numbers per
// possible CPU. The counters are per-CPU and per-netns, so a caller that wants
// to know what happened in a netns reads the file inside that netns, sums the
// rows and takes the difference of two readings (Sub).
//
// The header changed over time (docs/kernel-notes.md, Conntrack counters and other kernel evidence): column 2 is "searched"
// (always 0) before 5.10 and "clashres" from 5.10 on; column 8 is
// "delete_list" (0) before 5.15 and "chainlength" (the chaintoolong counter)
// from 5.15 on. Columns are therefore mapped by name, never by position, and
// HasClashResolve / HasChainTooLong say whether the kernel has the column.
package kstat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ctprobe/ctprobe/tracer/netns"
)

// Counters is one reading of the conntrack statistics of one netns, summed over
// CPUs (except Entries, a gauge printed identically on every row).
type Counters struct {
	// Entries is the number of conntrack entries in the netns (a gauge; it
	// includes the hidden IPS_NAT_CLASH reply-only entries).
	Entries uint64 `json:"entries"`

	// ClashResolve counts clashes at __nf_conntrack_confirm that were settled
	// (merged into the winner, or inserted reply-only). 5.10+ only.
	ClashResolve    uint64 `json:"clash_resolve"`
	HasClashResolve bool   `json:"has_clash_resolve"`

	// InsertFailed counts failed confirms. Before 5.10 it also counts every
	// resolved clash (4.19 to 5.9: docs/kernel-notes.md, What confirm returns, per era); from 5.10 only unresolved
	// ones and the dying / chain-too-long / ext-invalid paths.
	InsertFailed uint64 `json:"insert_failed"`
	// Drop counts packets dropped by conntrack: unresolved clashes, but also a
	// full table and protocol-tracker drops.
	Drop uint64 `json:"drop"`
	// ChainTooLong (5.15+) counts inserts refused because a hash chain was too
	// long.
	ChainTooLong    uint64 `json:"chain_too_long"`
	HasChainTooLong bool   `json:"has_chain_too_long"`

	Found         uint64 `json:"found"`
	New           uint64 `json:"new"`
	Invalid       uint64 `json:"invalid"`
	Ignore        uint64 `json:"ignore"`
	Delete        uint64 `json:"delete"`
	DeleteList    uint64 `json:"delete_list"`
	Insert        uint64 `json:"insert"`
	EarlyDrop     uint64 `json:"early_drop"`
	ICMPError     uint64 `json:"icmp_error"`
	ExpectNew     uint64 `json:"expect_new"`
	ExpectCreate  uint64 `json:"expect_create"`
	ExpectDelete  uint64 `json:"expect_delete"`
	SearchRestart uint64 `json:"search_restart"`

	// CPUs is the number of per-CPU rows that were summed.
	CPUs int `json:"cpus"`
}

// field returns where the summed value of a named column goes; nil for a
// column this package does not know (future kernels may add some: they are
// skipped, not an error).
func (c *Counters) field(name string) *uint64 {
	switch name {
	case "entries":
		return &c.Entries
	case "clashres":
		return &c.ClashResolve
	case "found":
		return &c.Found
	case "new":
		return &c.New
	case "invalid":
		return &c.Invalid
	case "ignore":
		return &c.Ignore
	case "delete":
		return &c.Delete
	case "delete_list":
		return &c.DeleteList
	case "chainlength":
		return &c.ChainTooLong
	case "insert":
		return &c.Insert
	case "insert_failed":
		return &c.InsertFailed
	case "drop":
		return &c.Drop
	case "early_drop":
		return &c.EarlyDrop
	case "icmp_error":
		return &c.ICMPError
	case "expect_new":
		return &c.ExpectNew
	case "expect_create":
		return &c.ExpectCreate
	case "expect_delete":
		return &c.ExpectDelete
	case "search_restart":
		return &c.SearchRestart
	}
	return nil // includes "searched": always 0 where it exists
}

// ParseError says which line and column of the stat file could not be read.
// Line and Column count from 1; Column is 0 when the whole line is at fault.
type ParseError struct {
	Line   int
	Column int
	Name   string // header name of the column, when known
	Msg    string
}

func (e *ParseError) Error() string {
	switch {
	case e.Column > 0 && e.Name != "":
		return fmt.Sprintf("nf_conntrack stat: line %d, column %d (%s): %s", e.Line, e.Column, e.Name, e.Msg)
	case e.Column > 0:
		return fmt.Sprintf("nf_conntrack stat: line %d, column %d: %s", e.Line, e.Column, e.Msg)
	default:
		return fmt.Sprintf("nf_conntrack stat: line %d: %s", e.Line, e.Msg)
	}
}

// maxColumns bounds the header: the kernel prints 17 names; anything far
// beyond that is not the stat file.
const maxColumns = 64

// Parse reads the text of /proc/net/stat/nf_conntrack.
func Parse(data []byte) (Counters, error) {
	var c Counters
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64*1024)
	var (
		names   []string
		targets []*uint64
		lineNo  int
	)
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		fields := strings.Fields(line)
		if names == nil {
			if len(fields) == 0 {
				return c, &ParseError{Line: lineNo, Msg: "empty header line"}
			}
			if len(fields) > maxColumns {
				return c, &ParseError{Line: lineNo, Msg: fmt.Sprintf("header has %d columns, more than %d", len(fields), maxColumns)}
			}
			seen := make(map[string]bool, len(fields))
			for i, f := range fields {
				if seen[f] {
					return c, &ParseError{Line: lineNo, Column: i + 1, Name: f, Msg: "column name repeated"}
				}
				seen[f] = true
			}
			if fields[0] != "entries" {
				return c, &ParseError{Line: lineNo, Column: 1, Name: fields[0], Msg: `header does not start with "entries"`}
			}
			names = fields
			targets = make([]*uint64, len(fields))
			for i, f := range fields {
				targets[i] = c.field(f)
				switch f {
				case "clashres":
					c.HasClashResolve = true
				case "chainlength":
					c.HasChainTooLong = true
				}
			}
			continue
		}
		if len(fields) == 0 {
			continue // tolerate a trailing blank line
		}
		if len(fields) != len(names) {
			return c, &ParseError{Line: lineNo, Msg: fmt.Sprintf("row has %d columns, header has %d", len(fields), len(names))}
		}
		for i, f := range fields {
			// The kernel prints each per-CPU counter as %08x of an unsigned
			// int: more than 8 hex digits means this is not that file.
			if len(f) > 8 {
				return c, &ParseError{Line: lineNo, Column: i + 1, Name: names[i], Msg: fmt.Sprintf("%q is longer than 8 hex digits", f)}
			}
			v, err := strconv.ParseUint(f, 16, 32)
			if err != nil {
				return c, &ParseError{Line: lineNo, Column: i + 1, Name: names[i], Msg: fmt.Sprintf("%q is not a hex number", f)}
			}
			if targets[i] == nil {
				continue
			}
			if i == 0 {
				// entries is nf_conntrack_count(net), the same on every row:
				// take it once.
				if c.CPUs == 0 {
					c.Entries = v
				}
				continue
			}
			*targets[i] += v
		}
		c.CPUs++
	}
	if err := sc.Err(); err != nil {
		return c, &ParseError{Line: lineNo + 1, Msg: err.Error()}
	}
	if names == nil {
		return c, &ParseError{Line: 1, Msg: "no header line (empty input)"}
	}
	if c.CPUs == 0 {
		return c, &ParseError{Line: lineNo + 1, Msg: "no per-CPU rows after the header"}
	}
	return c, nil
}

// Sub returns the counters of c minus those of before: what happened between
// the two readings. Entries is not a counter: the result keeps c's Entries.
//
// Each per-CPU counter is a 32-bit value that wraps; a wrap lowers the sum by
// exactly 2^32, so the difference is taken modulo 2^32, which is exact as long
// as fewer than 2^32 events happened in between.
func (c Counters) Sub(before Counters) Counters {
	d := c
	d32 := Delta32
	d.ClashResolve = d32(c.ClashResolve, before.ClashResolve)
	d.InsertFailed = d32(c.InsertFailed, before.InsertFailed)
	d.Drop = d32(c.Drop, before.Drop)
	d.ChainTooLong = d32(c.ChainTooLong, before.ChainTooLong)
	d.Found = d32(c.Found, before.Found)
	d.New = d32(c.New, before.New)
	d.Invalid = d32(c.Invalid, before.Invalid)
	d.Ignore = d32(c.Ignore, before.Ignore)
	d.Delete = d32(c.Delete, before.Delete)
	d.DeleteList = d32(c.DeleteList, before.DeleteList)
	d.Insert = d32(c.Insert, before.Insert)
	d.EarlyDrop = d32(c.EarlyDrop, before.EarlyDrop)
	d.ICMPError = d32(c.ICMPError, before.ICMPError)
	d.ExpectNew = d32(c.ExpectNew, before.ExpectNew)
	d.ExpectCreate = d32(c.ExpectCreate, before.ExpectCreate)
	d.ExpectDelete = d32(c.ExpectDelete, before.ExpectDelete)
	d.SearchRestart = d32(c.SearchRestart, before.SearchRestart)
	return d
}

// Clashes is the number of clashes at __nf_conntrack_confirm: from 5.10
// clash_resolve counts the settled ones and insert_failed the rest; before,
// insert_failed counts them all and clash_resolve is absent (0).
func (c Counters) Clashes() uint64 { return c.ClashResolve + c.InsertFailed }

// Delta32 is after - before for one of the kernel's counters: a sum of
// 32-bit per-CPU values that wrap, so the difference is taken modulo 2^32.
func Delta32(after, before uint64) uint64 { return uint64(uint32(after - before)) }

// ErrNoConntrack is returned (wrapped) when the stat file does not exist:
// conntrack is not built in and its module is not loaded.
var ErrNoConntrack = errors.New("no nf_conntrack stat file: conntrack is not loaded (modprobe nf_conntrack)")

// statPaths: /proc/thread-self/net follows the netns of the calling thread,
// which is what a thread that did setns(2) needs; /proc/self/net would follow
// the process's main thread. /proc/net is the fallback for kernels before
// 3.17, which lack /proc/thread-self.
var statPaths = []string{"/proc/thread-self/net/stat/nf_conntrack", "/proc/net/stat/nf_conntrack"}

// Read reads the counters of the calling thread's netns (in a Go program that
// does not leave threads in other namespaces: the process's netns).
func Read() (Counters, error) {
	for _, p := range statPaths {
		data, err := os.ReadFile(p)
		if err == nil {
			c, perr := Parse(data)
			if perr != nil {
				return c, fmt.Errorf("%s: %w", p, perr)
			}
			return c, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return Counters{}, fmt.Errorf("reading conntrack stats: %w", err)
		}
		if p == statPaths[0] {
			if _, serr := os.Stat("/proc/thread-self"); serr == nil {
				// thread-self exists, so the stat file really is missing.
				return Counters{}, ErrNoConntrack
			}
		}
	}
	return Counters{}, ErrNoConntrack
}

// ReadNetns reads the counters of the netns at path, such as
// /run/netns/NAME or /proc/PID/ns/net. The caller's thread is not touched:
// the read happens on a separate locked OS thread (see netns.Run).
func ReadNetns(path string) (Counters, error) {
	var c Counters
	err := netns.Run(path, func() error {
		var err error
		c, err = Read()
		return err
	})
	if err != nil {
		return Counters{}, fmt.Errorf("netns %s: %w", path, err)
	}
	return c, nil
}
