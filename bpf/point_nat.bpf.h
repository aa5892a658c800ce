/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Probe points nf_nat_setup_info and get_unique_tuple: the NAT binding
 * chosen for a ct (--timeline, with or without --all).
 */
#ifndef CTPROBE_POINT_NAT_BPF_H
#define CTPROBE_POINT_NAT_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "record.bpf.h"
#include "kernel_reads.bpf.h"
#include "pairing.bpf.h"
#include "history.bpf.h"
#include "filter.bpf.h"
#include "mode.bpf.h"

/* before: nf_nat_setup_info's ct REPLY tuple, or get_unique_tuple's
 * orig_tuple; tuple: where get_unique_tuple writes its choice (else 0). */
static __always_inline void nat_enter(struct call_key c, struct nf_conn *ct, const struct nf_conntrack_tuple *before,
				      const void *range, __u32 manip, __u64 tuple)
{
	struct entry *v = save_entry(c, EVENT_NAT);
	if (!v)
		return;
	v->ct = (__u64)ct;
	v->manip = manip;
	v->tuple = tuple;
	read_tuple(&v->before, before, false);
	read_range(&v->range, range, false);
}

/* EVENT_F_NAT_CHANGED if the binding changed the REPLY tuple. */
static __always_inline __u16 tuple_changed(const struct tuple *before, const struct tuple *after)
{
	return __builtin_memcmp(before, after, sizeof(*before)) ? EVENT_F_NAT_CHANGED : 0;
}

/* A NAT event of ct's binding of manip, as the ct shows it after the
 * binding (for nf_nat_setup_info its new REPLY tuple). direct: ct is the
 * fexit program's argument (KREAD). */
static __always_inline struct event *nat_event(struct nf_conn *ct, __u32 manip, const bool direct)
{
	struct event *e = new_event(SCRATCH_NAT, EVENT_NAT, TASK_BY_NAT);

	if (e) {
		read_ct(e, ct, direct);
		e->aux = manip;
	}
	return e;
}

/* get_unique_tuple writes its choice to *tuple, in ORIGINAL direction;
 * `before` is then its orig_tuple input. */
static __always_inline void nat_chosen(struct event *e, __u64 tuple, const bool direct)
{
	e->flags |= EVENT_F_NAT_GUT;
	read_tuple(&e->reply, (const struct nf_conntrack_tuple *)tuple, direct);
}

/* Step m of history h is now written. */
static __always_inline void nat_kept(struct history *h, __u32 m)
{
	h->have |= m ? HIST_NAT_DST : HIST_NAT_SRC;
}

/* Keep the binding in the ct's history h (if any), and stream it. */
static __always_inline int nat_done(struct event *e, struct history *h)
{
	e->flags |= tuple_changed(&e->before, &e->reply);
	if (!history_wanted(h, e))
		return 0;
	if (h) {
		__u32 m = e->aux & 1;
		struct nat_step *s = &h->nat[m];

		s->ts = e->ts;
		s->cpu = e->cpu;
		s->flags = e->flags;
		s->aux = e->aux;
		s->before = e->before;
		s->reply = e->reply;
		s->range = e->range;
		nat_kept(h, m);
	}
	if (stream_all)
		output(e);
	return 0;
}

/* --timeline alone: the binding goes straight into the ct's history, with
 * no event. No filter check: a ct has a history only if its birth passed
 * the filters, and a binding only adds addresses to the tuples they match.
 * Only fexit programs call it: every pointer is a typed argument, read with
 * loads. */
static __always_inline int nat_keep(struct history *h, struct nf_conn *ct, const void *range, __u32 manip,
				    __u64 tuple, const struct nf_conntrack_tuple *orig)
{
	__u32 m = manip & 1;
	struct nat_step *s = &h->nat[m];

	s->ts = bpf_ktime_get_ns();
	s->cpu = bpf_get_smp_processor_id();
	s->aux = manip;
	s->flags = 0;
	read_range(&s->range, range, true);
	if (tuple) {
		/* get_unique_tuple: in ORIGINAL direction (nat_chosen). */
		s->flags |= EVENT_F_NAT_GUT;
		read_tuple(&s->before, orig, true);
		read_tuple(&s->reply, (const struct nf_conntrack_tuple *)tuple, true);
	} else {
		s->before = *reply_before(h, m);
		read_tuple(&s->reply, &ct->tuplehash[1].tuple, true);
	}
	s->flags |= tuple_changed(&s->before, &s->reply);
	nat_kept(h, m);
	return 0;
}

/* Shared by both NAT points' exits after their entries, which saved the
 * tuple before the binding and the range. */
static __always_inline int nat_exit(struct call_key c)
{
	struct entry v;
	struct event *e;

	if (!take_entry(c, EVENT_NAT, &v))
		return 0;
	e = nat_event((struct nf_conn *)v.ct, v.manip, false);
	if (!e)
		return 0;
	e->range = v.range;
	e->before = v.before;
	if (v.tuple)
		nat_chosen(e, v.tuple, false);
	return nat_done(e, ct_history(e->ct));
}

/* --timeline: a NAT point's exit alone (fexit sees every argument). Only a
 * ct whose birth is in its history is followed, and the history already
 * holds the REPLY tuple before the binding (reply_before), so no entry
 * probe and no entries map run for it. get_unique_tuple passes its input
 * tuple (orig, unchanged); nf_nat_setup_info does not (orig 0). */
static __always_inline int nat_exit_hist(struct nf_conn *ct, const void *range, __u32 manip, __u64 tuple,
					 const struct nf_conntrack_tuple *orig)
{
	struct history *h = ct_history(addr_of(ct));
	struct event *e;

	if (!h)
		return 0;
	if (!stream_all)
		return nat_keep(h, ct, range, manip, tuple, orig);
	e = nat_event(ct, manip, true);
	if (!e)
		return 0;
	read_range(&e->range, range, true);
	if (tuple) {
		read_tuple(&e->before, orig, true);
		nat_chosen(e, tuple, true);
	} else {
		e->before = *reply_before(h, manip);
	}
	return nat_done(e, h);
}

/* unsigned int nf_nat_setup_info(struct nf_conn *ct, const struct nf_nat_range2 *range,
 *                                enum nf_nat_manip_type maniptype) -- exported, 4.18+.
 * get_unique_tuple is inlined into it in 6.1 and 6.18 builds
 * (docs/kernel-notes.md, Probe points: signatures and inlining). */
SEC("fentry/nf_nat_setup_info")
int BPF_PROG(fentry_nat, struct nf_conn *ct, const void *range, int manip)
{
	nat_enter(object_call(ct), ct, &ct->tuplehash[1].tuple, range, manip, 0);
	return 0;
}

SEC("fexit/nf_nat_setup_info")
int BPF_PROG(fexit_nat, struct nf_conn *ct)
{
	return nat_exit(object_call(ct));
}

SEC("fexit/nf_nat_setup_info")
int BPF_PROG(fexit_nat_hist, struct nf_conn *ct, const void *range, int manip)
{
	return nat_exit_hist(ct, range, manip, 0, NULL);
}

SEC("kprobe/nf_nat_setup_info")
int BPF_KPROBE(kprobe_nat, struct nf_conn *ct, const void *range, int manip)
{
	nat_enter(task_call(), ct, &ct->tuplehash[1].tuple, range, manip, 0);
	return 0;
}

SEC("kretprobe/nf_nat_setup_info")
int BPF_KRETPROBE(kretprobe_nat)
{
	return nat_exit(task_call());
}

/* static void get_unique_tuple(struct nf_conntrack_tuple *tuple,
 *     const struct nf_conntrack_tuple *orig_tuple, const struct nf_nat_range2 *range,
 *     struct nf_conn *ct, enum nf_nat_manip_type maniptype) -- where not inlined. */

SEC("fentry/get_unique_tuple")
int BPF_PROG(fentry_gut, struct nf_conntrack_tuple *tuple, const struct nf_conntrack_tuple *orig_tuple,
	     const void *range, struct nf_conn *ct, int manip)
{
	nat_enter(object_call(ct), ct, orig_tuple, range, manip, (__u64)tuple);
	return 0;
}

SEC("fexit/get_unique_tuple")
int BPF_PROG(fexit_gut, struct nf_conntrack_tuple *tuple, const struct nf_conntrack_tuple *orig_tuple,
	     const void *range, struct nf_conn *ct)
{
	return nat_exit(object_call(ct));
}

SEC("fexit/get_unique_tuple")
int BPF_PROG(fexit_gut_hist, struct nf_conntrack_tuple *tuple, const struct nf_conntrack_tuple *orig_tuple,
	     const void *range, struct nf_conn *ct, int manip)
{
	return nat_exit_hist(ct, range, manip, (__u64)tuple, orig_tuple);
}

SEC("kprobe/get_unique_tuple")
int BPF_KPROBE(kprobe_gut, struct nf_conntrack_tuple *tuple, const struct nf_conntrack_tuple *orig_tuple,
	       const void *range, struct nf_conn *ct, int manip)
{
	nat_enter(task_call(), ct, orig_tuple, range, manip, (__u64)tuple);
	return 0;
}

SEC("kretprobe/get_unique_tuple")
int BPF_KRETPROBE(kretprobe_gut)
{
	return nat_exit(task_call());
}

#endif /* CTPROBE_POINT_NAT_BPF_H */
