package names

// maxTable bounds a Table: a capture may hold any number of names frames.
const maxTable = 1 << 16

// Table answers lookups with the answers a live Resolver gave, read back
// from a capture's names frames in the order they were written, so that a
// report prints the names the live trace printed, on any machine and after
// the pods are gone.
type Table struct {
	m map[Key]Names
}

// NewTable returns an empty table.
func NewTable() *Table { return &Table{m: map[Key]Names{}} }

// Add takes answers; a later one for a key replaces the earlier.
func (t *Table) Add(entries []Entry) {
	for _, e := range entries {
		if len(t.m) >= maxTable {
			clear(t.m) // a hostile capture: forget, rather than grow
		}
		t.m[e.Key] = e.Names
	}
}

// Names is the answer the live trace gave for k, or nothing.
func (t *Table) Names(k Key) Names { return t.m[k] }
