package kstat

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Header lines as the kernels print them (ct_cpu_seq_show in
// nf_conntrack_standalone.c), including the double spaces; see
// docs/kernel-notes.md, Conntrack counters and other kernel evidence.
const (
	// 4.19 and 5.4: column 2 "searched" (always 0), column 8 "delete_list".
	header54 = "entries  searched found new invalid ignore delete delete_list insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart"
	// 5.10 to 5.14: "clashres" replaces "searched".
	header510 = "entries  clashres found new invalid ignore delete delete_list insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart"
	// 5.15 and later (6.1, 6.6, 6.12, 6.18): "chainlength" replaces "delete_list".
	header515 = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart"
)

// Rows use the kernel's "%08x  %08x %08x ..." layout. Column order is that of
// the headers above:
//
//	entries c2 found new invalid ignore delete c8 insert insert_failed drop early_drop icmp_error expect_new expect_create expect_delete search_restart
const (
	rowCPU0 = "0000002a  00000003 00000010 00000000 00000005 00000000 00000000 00000002 00000000 00000007 00000006 00000001 00000004  00000000 00000000 00000000 0000000b"
	rowCPU1 = "0000002a  000000ff 00000001 00000000 00000001 00000000 00000000 00000001 00000000 00000002 00000001 00000000 00000000  00000000 00000000 00000000 00000001"
)

func sample(header string, rows ...string) []byte {
	return []byte(header + "\n" + strings.Join(rows, "\n") + "\n")
}

func TestParseLayouts(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		header               string
		wantClash, wantChain bool
		clashSum, chainSum   uint64
		deleteList           uint64
	}{
		{"5.4", header54, false, false, 0, 0, 3},
		{"5.10", header510, true, false, 0x102, 0, 3},
		{"5.15+/6.x", header515, true, true, 0x102, 3, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse(sample(tc.header, rowCPU0, rowCPU1))
			if err != nil {
				t.Fatal(err)
			}
			if c.CPUs != 2 {
				t.Errorf("CPUs = %d, want 2", c.CPUs)
			}
			if c.Entries != 0x2a {
				t.Errorf("Entries = %d, want 42 (taken once, not summed)", c.Entries)
			}
			if c.HasClashResolve != tc.wantClash || c.HasChainTooLong != tc.wantChain {
				t.Errorf("Has clash/chain = %v/%v, want %v/%v", c.HasClashResolve, c.HasChainTooLong, tc.wantClash, tc.wantChain)
			}
			if c.ClashResolve != tc.clashSum {
				t.Errorf("ClashResolve = %#x, want %#x", c.ClashResolve, tc.clashSum)
			}
			if c.ChainTooLong != tc.chainSum {
				t.Errorf("ChainTooLong = %d, want %d", c.ChainTooLong, tc.chainSum)
			}
			if c.DeleteList != tc.deleteList {
				t.Errorf("DeleteList = %d, want %d", c.DeleteList, tc.deleteList)
			}
			// Columns that mean the same in every layout.
			for _, f := range []struct {
				name      string
				got, want uint64
			}{
				{"Found", c.Found, 0x11},
				{"Invalid", c.Invalid, 6},
				{"InsertFailed", c.InsertFailed, 9},
				{"Drop", c.Drop, 7},
				{"EarlyDrop", c.EarlyDrop, 1},
				{"ICMPError", c.ICMPError, 4},
				{"SearchRestart", c.SearchRestart, 0xc},
				{"New", c.New, 0},
				{"Insert", c.Insert, 0},
			} {
				if f.got != f.want {
					t.Errorf("%s = %d, want %d", f.name, f.got, f.want)
				}
			}
		})
	}
}

// The real file on a 6.18 machine with idle conntrack.
func TestParseReal618(t *testing.T) {
	data := "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n" +
		"00000000  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000\n" +
		"00000000  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000\n"
	c, err := Parse([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if c != (Counters{HasClashResolve: true, HasChainTooLong: true, CPUs: 2}) {
		t.Errorf("got %+v", c)
	}
}

func TestParseUnknownColumnSkipped(t *testing.T) {
	c, err := Parse([]byte("entries clashres drop future_col\n00000001 00000002 00000003 00000004\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Entries != 1 || c.ClashResolve != 2 || c.Drop != 3 || !c.HasClashResolve || c.HasChainTooLong {
		t.Errorf("got %+v", c)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		line, col int
		contains  string
	}{
		{"empty", "", 1, 0, "no header"},
		{"header only", header515 + "\n", 2, 0, "no per-CPU rows"},
		{"blank header", "\n" + rowCPU0, 1, 0, "empty header"},
		{"not entries", "foo bar\n1 2\n", 1, 1, `"entries"`},
		{"repeated name", "entries drop drop\n1 2 3\n", 1, 3, "repeated"},
		{"short row", header515 + "\n00000001 00000002\n", 2, 0, "row has 2 columns, header has 17"},
		{"bad hex", "entries  clashres drop\n00000001 0000zz02 00000003\n", 2, 2, `"0000zz02" is not a hex number`},
		{"too long", "entries  clashres drop\n00000001 000000002 00000003\n", 2, 2, "longer than 8"},
		{"bad third row", "entries drop\n1 2\n3 4\n5 x\n", 4, 2, "(drop)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *ParseError", err)
			}
			if pe.Line != tc.line || pe.Column != tc.col {
				t.Errorf("line/col = %d/%d, want %d/%d (%v)", pe.Line, pe.Column, tc.line, tc.col, err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not contain %q", err, tc.contains)
			}
		})
	}
}

func TestSub(t *testing.T) {
	before := Counters{Entries: 5, ClashResolve: 10, InsertFailed: 1, Drop: 1, HasClashResolve: true, CPUs: 2}
	after := Counters{Entries: 7, ClashResolve: 25, InsertFailed: 4, Drop: 3, HasClashResolve: true, CPUs: 2}
	d := after.Sub(before)
	if d.ClashResolve != 15 || d.InsertFailed != 3 || d.Drop != 2 {
		t.Errorf("delta = %+v", d)
	}
	if d.Entries != 7 || !d.HasClashResolve || d.CPUs != 2 {
		t.Errorf("gauge/flags not kept from the later reading: %+v", d)
	}
	// Every event counter is a difference, each with its own value; the
	// gauge Entries and the CPU count are the later reading's.
	var b, a Counters
	bv, av := reflect.ValueOf(&b).Elem(), reflect.ValueOf(&a).Elem()
	for i := range bv.NumField() {
		if bv.Field(i).Kind() == reflect.Uint64 {
			bv.Field(i).SetUint(uint64(100 * i))
			av.Field(i).SetUint(uint64(100*i + i + 1))
		}
	}
	dv := reflect.ValueOf(a.Sub(b))
	for i := range dv.NumField() {
		f := dv.Type().Field(i)
		if f.Type.Kind() != reflect.Uint64 {
			continue
		}
		want := uint64(i + 1)
		if f.Name == "Entries" || f.Name == "CPUs" {
			want = av.Field(i).Uint()
		}
		if got := dv.Field(i).Uint(); got != want {
			t.Errorf("%s: delta %d, want %d", f.Name, got, want)
		}
	}
	// One CPU's 32-bit counter wrapped: the sum dropped by 2^32 - 3 + 2.
	wrapBefore := Counters{Drop: 0xffffffff + 0x10} // cpu0 0xffffffff, cpu1 0x10
	wrapAfter := Counters{Drop: 0x1 + 0x10}         // cpu0 wrapped to 1 (+2)
	if got := wrapAfter.Sub(wrapBefore).Drop; got != 2 {
		t.Errorf("wrapped delta = %d, want 2", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample(header54, rowCPU0, rowCPU1))
	f.Add(sample(header510, rowCPU0))
	f.Add(sample(header515, rowCPU0, rowCPU1, rowCPU0))
	f.Add([]byte("entries clashres\n1 2\n\n"))
	f.Add([]byte("entries\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			if pe.Line < 1 {
				t.Fatalf("line %d < 1: %v", pe.Line, err)
			}
			return
		}
		if c.CPUs < 1 {
			t.Fatalf("success with %d CPU rows", c.CPUs)
		}
		// Every counter is a sum of CPUs values below 2^32.
		limit := uint64(c.CPUs) << 32
		for _, v := range []uint64{c.ClashResolve, c.InsertFailed, c.Drop, c.Found} {
			if v >= limit {
				t.Fatalf("sum %d exceeds %d rows of u32", v, c.CPUs)
			}
		}
		if d := c.Sub(c); d.Drop != 0 || d.ClashResolve != 0 || d.InsertFailed != 0 {
			t.Fatalf("c.Sub(c) not zero: %+v", d)
		}
	})
}
