package summary

import "fmt"

// Unexplained is what ctprobe's incidents and findings leave of one
// netns's insert_failed and drop, and the kernel reasons that can explain
// it, from the other counters (docs/kernel-notes.md, What confirm returns,
// per era; Conntrack counters and other kernel evidence).
type Unexplained struct {
	InsertFailed uint64   `json:"insert_failed"`
	Drop         uint64   `json:"drop"`
	Reasons      []string `json:"reasons"`
}

// fullShare: a table at least this full (entries/max, in percent) at the
// end of an interval was full or nearly so during it.
const fullShare = 90

// Unexplained of one netns whose counters were read.
func (n *NetnsSummary) Unexplained() Unexplained {
	var u Unexplained
	c := n.Counters
	if c == nil {
		return u
	}
	explainedIF := n.Dropped + n.InsertFailures
	if _, ok := c["clash_resolve"]; !ok {
		explainedIF += n.Resolved // before 5.10 insert_failed counts every clash
	}
	u.InsertFailed = sub(c["insert_failed"], explainedIF)
	u.Drop = sub(c["drop"], n.Dropped)
	if u.InsertFailed > 0 {
		chain := min(u.InsertFailed, sub(c["chain_too_long"], n.ChainTooLong))
		if chain > 0 {
			u.Reasons = append(u.Reasons, fmt.Sprintf("hash chains too long explain %d (chain_too_long +%d): inserts refused at confirm because a bucket's chain exceeded the random limit (5.15+, d7e7747ac5c2)",
				chain, c["chain_too_long"]))
		}
		if rest := u.InsertFailed - chain; rest > 0 {
			u.Reasons = append(u.Reasons, fmt.Sprintf("no counter explains %d: an entry that was dying before its insert, a conntrack extension invalidated in flight, "+
				"or clashes ctprobe did not see (lost records, traffic outside the filters)", rest))
		}
	}
	if u.Drop > 0 {
		full := n.Max > 0 && n.Entries*100 >= n.Max*fullShare
		switch {
		case full || c["early_drop"] > 0:
			r := fmt.Sprintf("the table was full: nf_conntrack_in drops a new flow's packet when early_drop finds no unassured entry to evict (\"nf_conntrack: table full, dropping packet\"); %d entries of nf_conntrack_max %d at the end",
				n.Entries, n.Max)
			if e := c["early_drop"]; e > 0 {
				r += fmt.Sprintf(", early_drop +%d evicted entries where it could", e)
			}
			u.Reasons = append(u.Reasons, r)
		case n.Max > 0:
			u.Reasons = append(u.Reasons, fmt.Sprintf("a full table is unlikely (%d entries of nf_conntrack_max %d at the end, early_drop +0)", n.Entries, n.Max))
		}
		if i := c["invalid"]; i > 0 {
			u.Reasons = append(u.Reasons, fmt.Sprintf("a protocol tracker refused packets (invalid +%d; one that drops a packet rather than letting it pass untracked counts it in drop too)", i))
		}
		u.Reasons = append(u.Reasons, "or an allocation failure, or an entry removed after its insert by a failed extension check")
	}
	return u
}

func sub(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return 0
}
