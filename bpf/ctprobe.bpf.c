// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * ctprobe: follow each new conntrack entry from nf_conntrack_in through NAT
 * to __nf_conntrack_confirm, and report the insertion races (a loser ct
 * clashing with an already confirmed winner).
 *
 * Every probe point exists twice: fentry/fexit (5.5+, BTF; preferred) and
 * kprobe/kretprobe (every kernel with CONFIG_KPROBES). Both call the same
 * body; only the way arguments reach it differs. The Go side chooses one mode
 * per point at start (tracer/plan.go) and loads only the programs it attaches.
 *
 * The parts are headers of one purpose each, included here in order: the
 * shared parts first, then one header per probe point.
 *
 * Kernel facts used here are explained in docs/kernel-notes.md; the section
 * is named where a read depends on it.
 */
#include "arch.bpf.h"         /* what bpf_tracing.h needs per architecture */
#include "compiler.bpf.h"     /* the compiler barrier */
#include "slots.bpf.h"        /* maps of slots indexed by an address hash */
#include "stored.bpf.h"       /* maps whose lookups are skipped while empty */
#include "record.bpf.h"       /* ring buffer, loss counters, scratch events */
#include "kernel_reads.bpf.h" /* tuples, ct, socket, DNS, sender, NAT range */
#include "history.bpf.h"      /* --timeline: per-ct history, clash records */
#include "filter.bpf.h"       /* --proto/--host/--port/--netns/--pid */
#include "mode.bpf.h"         /* the trace-mode globals and their predicates */
#include "pairing.bpf.h"      /* entry/exit pairing by object or by task */
#include "winner.bpf.h"       /* the winner lookup by tuple (lookup_winner) */
#include "clash_pair.bpf.h"   /* the default mode's clash and loser pair */

#include "point_ct_in.bpf.h"
#include "point_origin.bpf.h"
#include "point_nat.bpf.h"
#include "point_clash.bpf.h"
#include "point_confirm.bpf.h"

char __license[] SEC("license") = "Dual BSD/GPL";
