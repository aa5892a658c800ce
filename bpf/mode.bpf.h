/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The trace modes: the globals that select a pipeline at run time, and the
 * predicates that the shared bodies branch on. All but lookup_winner are
 * const volatile, set before load, so the verifier prunes the branches of
 * the other modes.
 *   default           the clash path only: each clash and its loser, a pair
 *   --all             also one record per new ct, at confirm's exit
 *   --timeline        each new ct's history, kept and replayed on a clash
 *   --all --timeline  every event of every probe point, streamed
 */
#ifndef CTPROBE_MODE_BPF_H
#define CTPROBE_MODE_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* --all: one record per new ct, at __nf_conntrack_confirm's exit (its
 * tuples show the NAT bindings), besides the clash pairs of the default
 * mode: one program run per new flow with fexit. */
const volatile bool stream_confirms = false;
/* --all --timeline: every event of every probe point, streamed. */
const volatile bool stream_all = false;
/* --timeline: keep each new ct's history (ct_in, NAT, confirm) in the
 * kernel and replay it when the ct takes part in a clash. Without it (the
 * default mode and --all) only the clash path and, for --all, confirm's
 * exit are probed: nothing runs for a packet that does not clash. */
const volatile bool keep_history = false;

/* The default mode and --all: no per-ct history, no ct_in or NAT probes. */
static __always_inline bool clash_path_only(void)
{
	return !stream_all && !keep_history;
}

/* All records of a clash reach user space together (the default mode's
 * pair, --timeline's replay), so the correlator need not wait for others.
 * With --all, a winner's own confirm record may come after its loser's. */
static __always_inline bool sent_together(void)
{
	return !stream_all && !stream_confirms;
}

/* Set by the Go side after attaching when no clash probe could attach (on
 * 4.19-5.5 nf_ct_resolve_clash is likely inlined): confirmed cts are then
 * indexed by tuple so that a loser's winner can still be named. */
volatile bool lookup_winner = false;

#endif /* CTPROBE_MODE_BPF_H */
