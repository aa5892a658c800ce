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
 * Kernel facts used here are from the project's shared kernel-facts.md; the
 * section is named where a read depends on it.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "ctprobe.h"

char __license[] SEC("license") = "Dual BSD/GPL";

/* Keep the record enums in BTF so bpf2go generates their Go constants. */
const enum event_kind *unused_event_kind __attribute__((unused));
const enum event_flag *unused_event_flag __attribute__((unused));
const enum loss_kind *unused_loss_kind __attribute__((unused));
const enum record_layout *unused_record_layout __attribute__((unused));

/* include/uapi/linux/netfilter.h */
#define NF_DROP 0
#define NF_ACCEPT 1
/* include/uapi/linux/netfilter/nf_conntrack_common.h, every version */
#define NFCT_INFOMASK 7UL
#define IP_CT_NEW 2
#define IPS_CONFIRMED (1UL << 3)
/* Kernel-internal since 5.6 (6a757c07e51f); shares bit 12 with IPS_UNTRACKED,
 * which is never set on a ct that reaches confirm. */
#define IPS_NAT_CLASH (1UL << 12)
#define TCP_TIME_WAIT 6
#define TCP_NEW_SYN_RECV 12

#define barrier() asm volatile("" ::: "memory")

/* Filters, set by the Go side before load (zero means "any"). */
const volatile __u8 filter_proto = 0;
const volatile __u16 filter_port = 0; /* network byte order */
const volatile __u16 filter_host_family = 0;
const volatile __u8 filter_host[16] = {};
const volatile __u32 filter_netns = 0;
const volatile __u32 filter_pid = 0;
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

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* resized by the Go side */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOSS_MAX);
	__type(key, __u32);
	__type(value, __u64);
} losses SEC(".maps");

/* State saved at a function's entry for its exit probe, keyed by the call:
 * its skb or ct (fentry/fexit see the arguments at both ends), or its task
 * (a kretprobe sees none: pid_key()). */
struct call_key {
	__u64 id;
	bool by_task;
};

struct entry_key {
	__u64 id; /* skb or ct pointer, or pid_key() */
	__u32 kind;
	__u32 pad;
};

struct entry {
	__u64 skb;
	__u64 ct;
	__u64 tuple; /* get_unique_tuple: where the chosen tuple is written */
	__u32 hook;
	__u32 manip;
	struct tuple orig;   /* confirm: the loser's tuples, read before it can be freed */
	struct tuple before; /* NAT: REPLY before the binding; confirm: the loser's REPLY */
	struct nat_range range;
};

/* By skb or ct: one call at a time per object, so one slot per key. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, struct entry_key);
	__type(value, struct entry);
} entries SEC(".maps");

/* By task, calls nest: a softirq runs on the stack of the task it
 * interrupted (on an interrupt's exit, or at the local_bh_enable that ends
 * __nf_conntrack_confirm, 4.19 to 6.18), so pid_key() gives its calls the
 * task's key, and they enter and return inside the task's own call. With
 * one slot per key the inner call took the outer's entry (VM lab,
 * vxlan-masq on 5.10: the outer return then counted LOSS_NO_ENTRY), so a
 * task's entries form a stack. Nesting is at most task and softirq; the
 * other slots absorb entries whose return the kernel missed (kretprobe
 * maxactive, counted there), and a full stack starts again from the bottom.
 * A power of two, for slot_index. */
#define ENTRY_DEPTH 4

struct saved_entries {
	__u32 depth;
	__u32 pad;
	struct entry slot[ENTRY_DEPTH];
};

/* A task's stack stays when it empties, to be found by the task's next
 * call with one lookup; the LRU drops those of tasks gone. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct entry_key);
	__type(value, struct saved_entries);
} task_entries SEC(".maps");

/* The values a key starts from (map values: the helpers take them). */
const struct entry empty_entry = {};
const struct saved_entries empty_stack = {};

/* A clash seen inside confirm, keyed by skb, joined at confirm's exit
 * (--timeline, with or without --all). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct event);
} clashes SEC(".maps");

/* Default mode and --all: a clash and its loser, read at
 * nf_ct_resolve_clash's entry (a merged loser is freed inside it) and sent
 * with the verdict at its exit (default mode) or at confirm's (--all).
 * Keyed by skb, except for the default mode's kretprobe: pid_key(). */
struct clash_pair {
	struct event clash;
	struct event loser;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct clash_pair);
} pairs SEC(".maps");

/* Per-ct history kept in the kernel so that ordinary packets cost no ring
 * buffer record; replayed only when the ct takes part in a clash. */
enum { HIST_IN = 1, HIST_NAT_SRC = 2, HIST_NAT_DST = 4, HIST_CONFIRM = 8 };

struct history {
	struct event in;
	struct event nat[2]; /* indexed by manip type: 0 SRC, 1 DST */
	struct event confirm;
	__u32 have;
	__u32 tgid; /* the task in whose context the ct was born, for --pid */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384); /* resized by the Go side */
	__type(key, __u64);         /* ct pointer */
	__type(value, struct history);
} hist SEC(".maps");

/* Who sent an skb, recorded where it left its socket's netns (net_dev_queue)
 * and joined at the next netns's PREROUTING, where the socket is gone: veth
 * hands the same skb object across (skb_scrub_packet keeps it) and
 * ip_rcv_core orphans it before conntrack runs (kernel-facts §4.3). */
struct origin {
	__u64 ts;
	__u64 pid_tgid;
	__u64 cgroup;
	__u64 sk_cookie;
	__u32 sk_ino;
	__u16 sk_port;
	__u8 sk_family;
	__u8 sk_state;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64); /* skb pointer */
	__type(value, struct origin);
} origins SEC(".maps");

/* An origin older than this is a recycled skb, not the same packet. */
#define ORIGIN_MAX_AGE_NS 1000000000ULL

/* Confirmed cts by tuple, for lookup_winner. The kernel finds a clash by
 * comparing a tuple's addresses, ports and protocol (not its direction) in
 * one netns and zone, so the key is exactly that. */
struct tuple_key {
	__u32 netns;
	__u16 zone;
	__u16 pad;
	struct tuple t;
};

/* The cts that reached confirm with a tuple: two slots per CPU (mod
 * CANDIDATE_CPUS), the latest and the one before, so that two racers on two
 * CPUs never overwrite each other, nor a winner and its loser that follow
 * each other on one CPU; and no atomic is needed (4.19 has no fetching
 * atomics). */
#define CANDIDATE_CPUS 8
#define CANDIDATE_SLOTS (2 * CANDIDATE_CPUS)
struct candidates {
	__u64 ct[CANDIDATE_SLOTS];
	__u64 ts[CANDIDATE_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct tuple_key);
	__type(value, struct candidates);
} confirmed SEC(".maps");

/* A candidate older than this is a finished flow, not a racer. */
#define CANDIDATE_MAX_AGE_NS 1000000000ULL

/* Scratch space: an event and a history are too big for the 512-byte stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct event);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct history);
} scratch_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct clash_pair);
} scratch_pair SEC(".maps");

static __always_inline void count_loss(__u32 kind)
{
	__u64 *n = bpf_map_lookup_elem(&losses, &kind);
	if (n)
		*n += 1;
}

static __always_inline void output(struct event *e)
{
	count_loss(LOSS_SENT);
	if (bpf_ringbuf_output(&events, e, sizeof(*e), 0))
		count_loss(LOSS_RINGBUF);
}

/* Entry/exit pairing for kprobes: kretprobes see no arguments. Softirq work on
 * an idle CPU runs as pid 0 on every CPU, so key those by CPU instead. */
static __always_inline __u64 pid_key(void)
{
	__u64 id = bpf_get_current_pid_tgid();
	if ((__u32)id == 0)
		return 0xffffffff00000000ULL | bpf_get_smp_processor_id();
	return id;
}

static __always_inline void init_event(struct event *e, __u8 kind)
{
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->hook = 0xff;
	e->ts = bpf_ktime_get_ns();
	e->cpu = bpf_get_smp_processor_id();
	e->pid_tgid = bpf_get_current_pid_tgid();
	if ((__u32)e->pid_tgid == 0)
		e->flags |= EVENT_F_SOFTIRQ_KEY;
	e->cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

static __always_inline struct event *new_event(__u32 slot, __u8 kind)
{
	struct event *e = bpf_map_lookup_elem(&scratch, &slot);
	if (e)
		init_event(e, kind);
	return e;
}

/* struct nf_conntrack_tuple, whose layout is the same in every version from
 * 4.19 to 6.18: src { u3 (16), u.all (2), l3num (2) }, dst { u3 (16),
 * u.all (2), protonum (1), dir (1) }. It is read with one copy instead of
 * one per field: this runs several times for every new flow. */
struct nf_conntrack_tuple_fixed {
	__u8 src[16];
	__u16 sport;
	__u16 l3num;
	__u8 dst[16];
	__u16 dport;
	__u8 protonum;
	__u8 dir;
};
_Static_assert(sizeof(struct nf_conntrack_tuple_fixed) == sizeof(struct nf_conntrack_tuple),
	       "struct nf_conntrack_tuple changed layout");

static __always_inline void read_tuple(struct tuple *out, const struct nf_conntrack_tuple *t)
{
	struct nf_conntrack_tuple_fixed f = {};

	bpf_probe_read_kernel(&f, sizeof(f), t);
	__builtin_memcpy(out->src, f.src, 16);
	__builtin_memcpy(out->dst, f.dst, 16);
	out->sport = f.sport;
	out->dport = f.dport;
	out->l3num = f.l3num;
	out->protonum = f.protonum;
	out->dir = f.dir;
}

/* skb->_nfct holds the ct pointer with ctinfo in its low 3 bits (§0). */
static __always_inline struct nf_conn *skb_ct(struct sk_buff *skb, __u8 *ctinfo)
{
	unsigned long nfct = BPF_CORE_READ(skb, _nfct);
	if (ctinfo)
		*ctinfo = nfct & NFCT_INFOMASK;
	return (struct nf_conn *)(nfct & ~NFCT_INFOMASK);
}

/* The ct itself: tuples, status, netns (ct->ct_net under CONFIG_NET_NS), and
 * zone/mark where the kernel was built with them (§2.1: use field_exists). */
static __always_inline void read_ct(struct event *e, struct nf_conn *ct)
{
	e->ct = (__u64)ct;
	read_tuple(&e->orig, &ct->tuplehash[0].tuple);
	read_tuple(&e->reply, &ct->tuplehash[1].tuple);
	e->status = BPF_CORE_READ(ct, status);
	e->netns = BPF_CORE_READ(ct, ct_net.net, ns.inum);
	if (bpf_core_field_exists(ct->zone))
		e->zone = BPF_CORE_READ(ct, zone.id);
	if (bpf_core_field_exists(ct->mark))
		e->mark = BPF_CORE_READ(ct, mark);
}

/* The socket fields of an event or an origin (both name them alike). A
 * request or timewait sock has only sock_common, so no inode. */
#define READ_SK(dst, sk)                                                              \
	do {                                                                          \
		(dst)->sk_family = BPF_CORE_READ(sk, __sk_common.skc_family);        \
		(dst)->sk_state = BPF_CORE_READ(sk, __sk_common.skc_state);          \
		(dst)->sk_port = BPF_CORE_READ(sk, __sk_common.skc_num);             \
		(dst)->sk_cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter); \
		if ((dst)->sk_state != TCP_TIME_WAIT && (dst)->sk_state != TCP_NEW_SYN_RECV) \
			(dst)->sk_ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino); \
	} while (0)

/* skb->sk may be a request or timewait sock (only sock_common is valid) or a
 * full socket; at PREROUTING it is NULL (ip_rcv_core orphans it, §4.3). */
static __always_inline void read_sock(struct event *e, struct sk_buff *skb)
{
	struct sock *sk = BPF_CORE_READ(skb, sk);
	if (!sk)
		return;
	e->flags |= EVENT_F_SOCK;
	READ_SK(e, sk);
}

/* The first bytes of a UDP DNS message. transport_header is set at both
 * LOCAL_OUT (udp_send_skb) and PREROUTING (ip_rcv_core, ipv6_rcv) before
 * conntrack runs; a DNS query this small sits in the linear area. */
static __always_inline void read_dns(struct event *e, struct sk_buff *skb)
{
	unsigned char *head;
	struct udphdr *uh;
	__u16 len;

	if (e->orig.protonum != 17 /* IPPROTO_UDP */ ||
	    (e->orig.dport != bpf_htons(53) && e->orig.sport != bpf_htons(53)))
		return;
	head = BPF_CORE_READ(skb, head);
	uh = (struct udphdr *)(head + BPF_CORE_READ(skb, transport_header));
	len = bpf_ntohs(BPF_CORE_READ(uh, len));
	if (len <= sizeof(*uh))
		return;
	len -= sizeof(*uh);
	if (len > PAYLOAD_MAX)
		len = PAYLOAD_MAX;
	if (bpf_probe_read_kernel(e->payload, len & (PAYLOAD_MAX * 2 - 1), uh + 1) == 0)
		e->payload_len = len;
}

/* Where the skb has no socket, take the sender recorded at transmit. */
static __always_inline void read_origin(struct event *e, struct sk_buff *skb)
{
	__u64 key = (__u64)skb;
	struct origin *o;

	if (e->flags & EVENT_F_SOCK)
		return;
	o = bpf_map_lookup_elem(&origins, &key);
	if (!o || e->ts - o->ts > ORIGIN_MAX_AGE_NS)
		return;
	e->flags |= EVENT_F_ORIGIN | EVENT_F_SOCK;
	e->pid_tgid = o->pid_tgid;
	e->cgroup = o->cgroup;
	e->sk_cookie = o->sk_cookie;
	e->sk_ino = o->sk_ino;
	e->sk_port = o->sk_port;
	e->sk_family = o->sk_family;
	e->sk_state = o->sk_state;
	__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
}

static __always_inline bool addr_eq(const __u8 *a, const volatile __u8 *b, __u16 family)
{
	int n = family == 10 /* AF_INET6 */ ? 16 : 4;
	for (int i = 0; i < 16; i++) {
		if (i < n && a[i] != b[i])
			return false;
	}
	return true;
}

static __always_inline bool tuple_has_host(const struct tuple *t)
{
	return t->l3num == filter_host_family &&
	       (addr_eq(t->src, filter_host, t->l3num) || addr_eq(t->dst, filter_host, t->l3num));
}

/* --proto/--host/--port/--netns/--pid, applied before anything is recorded.
 * Host and port match either end of either tuple, so the pre-NAT ClusterIP
 * and the post-NAT endpoint both select the flow. */
static __always_inline bool wanted(const struct event *e, __u32 tgid)
{
	if (filter_proto && e->orig.protonum != filter_proto)
		return false;
	if (filter_netns && e->netns != filter_netns)
		return false;
	if (filter_pid && tgid != filter_pid)
		return false;
	if (filter_port && e->orig.sport != filter_port && e->orig.dport != filter_port &&
	    e->reply.sport != filter_port && e->reply.dport != filter_port)
		return false;
	if (filter_host_family && !tuple_has_host(&e->orig) && !tuple_has_host(&e->reply))
		return false;
	return true;
}

/* A slot index the verifier can bound (5.10's loses the bound of a
 * compare that clang folds into arithmetic): hidden from clang (libbpf's
 * barrier_var), masked. */
static __always_inline __u32 slot_index(__u32 d)
{
	barrier_var(d);
	return d & (ENTRY_DEPTH - 1);
}

/* A stack's push and pop (the task entries' and the task storage's) are
 * ordered so that a call nesting between any two steps would leave the
 * outer one's slot intact: the depth is raised before the slot is written,
 * and lowered only after it is read. What nests in practice is the kernel
 * code between an entry program and its exit program: kprobe programs do
 * not run inside one another on a CPU (bpf_prog_active).
 *
 * push_slot raises *depth and returns the slot to write. */
static __always_inline __u32 push_slot(__u32 *depth)
{
	__u32 d = *depth;

	if (d >= ENTRY_DEPTH)
		d = 0;
	else if (d > 0)
		count_loss(LOSS_NESTED);
	*depth = d + 1;
	barrier();
	return slot_index(d);
}

/* The depth a pop leaves in *top (its slot is slot_index(*top), which the
 * caller reads before storing *top), or false when the stack is empty. */
static __always_inline bool pop_depth(__u32 depth, __u32 *top)
{
	*top = depth - 1;
	if (*top >= ENTRY_DEPTH) {
		count_loss(LOSS_NO_ENTRY);
		return false;
	}
	return true;
}

static __always_inline struct call_key task_call(void)
{
	return (struct call_key){ .id = pid_key(), .by_task = true };
}

static __always_inline struct call_key object_call(const void *p)
{
	return (struct call_key){ .id = (__u64)p };
}

/* Where an entry program saves its call's state: zeroed, for the caller to
 * fill in place (an entry on the BPF stack would not fit beside
 * confirm_enter's). NULL when the map refused; the exit then counts
 * LOSS_NO_ENTRY. */
static __always_inline struct entry *save_entry(struct call_key c, __u32 kind)
{
	struct entry_key k = { .id = c.id, .kind = kind };
	struct saved_entries *s;
	struct entry *v;

	if (!c.by_task) {
		bpf_map_update_elem(&entries, &k, &empty_entry, BPF_ANY);
		return bpf_map_lookup_elem(&entries, &k);
	}
	s = bpf_map_lookup_elem(&task_entries, &k);
	if (!s) {
		bpf_map_update_elem(&task_entries, &k, &empty_stack, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&task_entries, &k);
		if (!s)
			return NULL;
	}
	v = &s->slot[push_slot(&s->depth)];
	__builtin_memset(v, 0, sizeof(*v));
	return v;
}

static __always_inline bool take_entry(struct call_key c, __u32 kind, struct entry *out)
{
	struct entry_key k = { .id = c.id, .kind = kind };
	struct saved_entries *s;
	struct entry *v;
	__u32 top;

	if (!c.by_task) {
		v = bpf_map_lookup_elem(&entries, &k);
		if (!v) {
			count_loss(LOSS_NO_ENTRY);
			return false;
		}
		__builtin_memcpy(out, v, sizeof(*out));
		bpf_map_delete_elem(&entries, &k);
		return true;
	}
	s = bpf_map_lookup_elem(&task_entries, &k);
	if (!s) {
		count_loss(LOSS_NO_ENTRY);
		return false;
	}
	if (!pop_depth(s->depth, &top))
		return false;
	__builtin_memcpy(out, &s->slot[slot_index(top)], sizeof(*out));
	barrier();
	s->depth = top;
	return true;
}

/* ---- nf_conntrack_in ---------------------------------------------------- */

static __always_inline int ct_in_exit(struct sk_buff *skb, __u32 hook, __u32 verdict)
{
	struct event *e;
	struct nf_conn *ct;
	__u8 ctinfo;
	bool is_new;
	__u32 tgid;

	if (!skb)
		return 0;
	ct = skb_ct(skb, &ctinfo);
	if (!ct) /* untracked, invalid or dropped before a ct existed */
		return 0;
	/* --timeline records only births: a packet of an established flow
	 * costs these two reads and nothing more. (ctinfo can be IP_CT_NEW on a
	 * confirmed ct that has seen no reply yet, hence the status check.) */
	is_new = ctinfo == IP_CT_NEW && !(BPF_CORE_READ(ct, status) & IPS_CONFIRMED);
	if (!is_new && !stream_all)
		return 0;
	e = new_event(0, EVENT_CT_IN);
	if (!e)
		return 0;
	e->ctinfo = ctinfo;
	read_ct(e, ct);
	read_sock(e, skb);
	read_origin(e, skb);
	read_dns(e, skb);
	e->skb = (__u64)skb;
	e->hook = hook;
	e->ret = verdict;
	tgid = e->pid_tgid >> 32;
	if (is_new)
		e->flags |= EVENT_F_NEW;
	if (!wanted(e, tgid)) {
		/* A filtered-out new ct must not inherit the history an earlier
		 * ct left at the same address: it could be replayed as a winner's. */
		if (e->flags & EVENT_F_NEW)
			bpf_map_delete_elem(&hist, &e->ct);
		return 0;
	}
	/* The history serves replays (--timeline) and, with --all --timeline, --pid's
	 * filtering of the ct's later events by the task that created it. */
	if ((e->flags & EVENT_F_NEW) && (keep_history || filter_pid)) {
		__u32 zero = 0;
		struct history *h = bpf_map_lookup_elem(&scratch_hist, &zero);
		if (h) {
			/* A new ct pointer replaces whatever an earlier ct at the same
			 * address left: ct objects are SLAB_TYPESAFE_BY_RCU and reused. */
			__builtin_memcpy(&h->in, e, sizeof(*e));
			h->have = HIST_IN;
			h->tgid = tgid;
			bpf_map_update_elem(&hist, &e->ct, h, BPF_ANY);
		}
	}
	if (stream_all)
		output(e);
	return 0;
}

/* 5.x+: unsigned int nf_conntrack_in(struct sk_buff *skb, const struct nf_hook_state *state) */
SEC("fexit/nf_conntrack_in")
int BPF_PROG(fexit_ct_in, struct sk_buff *skb, const struct nf_hook_state *state, unsigned int ret)
{
	return ct_in_exit(skb, BPF_CORE_READ(state, hook), ret);
}

SEC("kprobe/nf_conntrack_in")
int BPF_KPROBE(kprobe_ct_in, struct sk_buff *skb, const struct nf_hook_state *state)
{
	struct entry *v = save_entry(task_call(), EVENT_CT_IN);
	if (v) {
		v->skb = (__u64)skb;
		v->hook = BPF_CORE_READ(state, hook);
	}
	return 0;
}

/* 4.19: unsigned int nf_conntrack_in(struct net *net, u_int8_t pf, unsigned int hooknum, struct sk_buff *skb) */
SEC("kprobe/nf_conntrack_in")
int BPF_KPROBE(kprobe_ct_in_v419, struct net *net, __u8 pf, unsigned int hooknum, struct sk_buff *skb)
{
	struct entry *v = save_entry(task_call(), EVENT_CT_IN);
	if (v) {
		v->skb = (__u64)skb;
		v->hook = hooknum;
	}
	return 0;
}

SEC("kretprobe/nf_conntrack_in")
int BPF_KRETPROBE(kretprobe_ct_in, unsigned int ret)
{
	struct entry v;
	if (!take_entry(task_call(), EVENT_CT_IN, &v))
		return 0;
	return ct_in_exit((struct sk_buff *)v.skb, v.hook, ret);
}

/* TRACE_EVENT(net_dev_queue, TP_PROTO(struct sk_buff *skb)), every version:
 * an skb leaving a device, in the sender's context for local sockets. */
SEC("raw_tracepoint/net_dev_queue")
int raw_tp_origin(struct bpf_raw_tracepoint_args *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx->args[0];
	struct sock *sk = BPF_CORE_READ(skb, sk);
	struct origin o = {};
	__u64 key = (__u64)skb;

	if (!sk || (__u32)bpf_get_current_pid_tgid() == 0)
		return 0;
	o.ts = bpf_ktime_get_ns();
	o.pid_tgid = bpf_get_current_pid_tgid();
	o.cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(o.comm, sizeof(o.comm));
	READ_SK(&o, sk);
	bpf_map_update_elem(&origins, &key, &o, BPF_ANY);
	return 0;
}

/* ---- NAT binding -------------------------------------------------------- */

/* The history of a ct whose birth was recorded (--timeline, or --all with
 * --pid), if any. */
static __always_inline struct history *ct_history(__u64 ct)
{
	return bpf_map_lookup_elem(&hist, &ct);
}

static __always_inline bool history_wanted(struct history *h, struct event *e)
{
	__u32 tgid = h ? h->tgid : (__u32)(e->pid_tgid >> 32);
	return wanted(e, tgid);
}

/* struct nf_nat_range2 is in nf_nat.ko's BTF only on modular kernels (§2.1),
 * so it is read with its fixed layout (unchanged since 4.18) instead of CO-RE. */
struct nf_nat_range2_fixed {
	__u32 flags;
	__u8 min_addr[16];
	__u8 max_addr[16];
	__u16 min_proto;
	__u16 max_proto;
	__u16 base_proto;
};

static __always_inline void read_range(struct nat_range *out, const void *range)
{
	struct nf_nat_range2_fixed r = {};
	if (!range)
		return;
	bpf_probe_read_kernel(&r, sizeof(r), range);
	__builtin_memcpy(out->min_addr, r.min_addr, 16);
	__builtin_memcpy(out->max_addr, r.max_addr, 16);
	out->flags = r.flags;
	out->min_proto = r.min_proto;
	out->max_proto = r.max_proto;
}

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
	read_tuple(&v->before, before);
	read_range(&v->range, range);
}

static __always_inline void tuple_changed(struct event *e)
{
	if (__builtin_memcmp(&e->before, &e->reply, sizeof(e->before)))
		e->flags |= EVENT_F_NAT_CHANGED;
}

/* Shared by both NAT points. For nf_nat_setup_info the result is the ct's
 * new REPLY tuple; get_unique_tuple instead writes its choice to *tuple in
 * ORIGINAL direction, and `before` then holds its orig_tuple input. */
static __always_inline int nat_exit(struct call_key c)
{
	struct entry v;
	struct event *e;
	struct nf_conn *ct;
	struct history *h;

	if (!take_entry(c, EVENT_NAT, &v))
		return 0;
	e = new_event(0, EVENT_NAT);
	if (!e)
		return 0;
	ct = (struct nf_conn *)v.ct;
	read_ct(e, ct);
	e->aux = v.manip;
	e->range = v.range;
	e->before = v.before;
	if (v.tuple) {
		/* get_unique_tuple wrote its choice to *tuple, in ORIGINAL direction. */
		e->flags |= EVENT_F_NAT_GUT;
		read_tuple(&e->reply, (const struct nf_conntrack_tuple *)v.tuple);
	}
	tuple_changed(e);
	h = ct_history(e->ct);
	if (!history_wanted(h, e))
		return 0;
	if (h) {
		__u32 m = v.manip & 1;
		__builtin_memcpy(&h->nat[m], e, sizeof(*e));
		h->have |= m ? HIST_NAT_DST : HIST_NAT_SRC;
	}
	if (stream_all)
		output(e);
	return 0;
}

/* unsigned int nf_nat_setup_info(struct nf_conn *ct, const struct nf_nat_range2 *range,
 *                                enum nf_nat_manip_type maniptype) -- exported, 4.18+.
 * get_unique_tuple is inlined into it in 6.1 and 6.18 builds (§2.1). */
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

/* ---- nf_ct_resolve_clash ------------------------------------------------ */

/* Called only when confirm found a confirmed entry W with our tuple (§3).
 * h is W's tuplehash node; h->tuple.dst.dir says which of W's two nodes
 * matched, so W = container_of(h, struct nf_conn, tuplehash[dir]). The
 * verdict it returns is the one __nf_conntrack_confirm returns (NF_ACCEPT
 * after a merge or a reply-only insert, else NF_DROP; 4.19 to 6.18). */
static __always_inline void read_clash(struct event *e, struct sk_buff *skb, struct nf_conntrack_tuple_hash *h)
{
	struct nf_conn *winner;
	__u8 dir = BPF_CORE_READ(h, tuple.dst.dir) & 1;

	winner = (struct nf_conn *)((void *)h - bpf_core_field_offset(struct nf_conn, tuplehash) -
				    dir * bpf_core_type_size(struct nf_conntrack_tuple_hash));
	read_ct(e, winner);
	e->ct = (__u64)skb_ct(skb, &e->ctinfo);
	e->other_ct = (__u64)winner;
	e->skb = (__u64)skb;
	e->aux = dir;
}

/* What the default mode's loser record takes from its skb besides the
 * socket: the DNS message, and whether the skb was made here (skb_iif is set
 * only on receive). */
static __always_inline void read_sender(struct event *e, struct sk_buff *skb)
{
	read_dns(e, skb);
	if (!BPF_CORE_READ(skb, skb_iif))
		e->flags |= EVENT_F_LOCAL;
}

/* A CONFIRM record of ct as its skb shows it at confirm (a clash's loser,
 * or with --all any new ct): its tuples, and the skb's socket and sender. */
static __always_inline void read_confirm(struct event *e, struct sk_buff *skb, struct nf_conn *ct)
{
	init_event(e, EVENT_CONFIRM);
	read_ct(e, ct);
	e->skb = (__u64)skb;
	read_sock(e, skb);
	read_sender(e, skb);
}

static __always_inline void clash_enter(__u64 key, struct sk_buff *skb, struct nf_conntrack_tuple_hash *h)
{
	struct clash_pair *p;
	struct event *e;
	__u32 zero = 0;

	if (!skb || !h)
		return;
	if (!clash_path_only()) {
		e = new_event(1, EVENT_CLASH);
		if (!e)
			return;
		read_clash(e, skb, h);
		bpf_map_update_elem(&clashes, &e->skb, e, BPF_ANY);
		if (stream_all && history_wanted(ct_history(e->ct), e))
			output(e);
		return;
	}
	p = bpf_map_lookup_elem(&scratch_pair, &zero);
	if (!p)
		return;
	init_event(&p->clash, EVENT_CLASH);
	read_clash(&p->clash, skb, h);
	read_confirm(&p->loser, skb, (struct nf_conn *)p->clash.ct);
	/* Kept even when filtered out: with --all, confirm's exit must know
	 * that this skb clashed (after a merge it carries the winner's ct). */
	bpf_map_update_elem(&pairs, &key, p, BPF_ANY);
}

/* Send a clash pair with the verdict and the ct the skb carries now (the
 * winner after a merge), and forget it. */
static __always_inline void send_pair(struct clash_pair *p, __u64 key, struct sk_buff *skb, int ret)
{
	struct nf_conn *after = skb_ct(skb, &p->loser.ctinfo);

	p->loser.ts = bpf_ktime_get_ns();
	if (wanted(&p->loser, p->loser.pid_tgid >> 32)) {
		p->loser.ret = ret;
		p->loser.other_ct = (__u64)after;
		p->loser.status = after ? BPF_CORE_READ(after, status) : 0;
		if (sent_together())
			p->clash.flags |= EVENT_F_HISTORY;
		output(&p->clash);
		output(&p->loser);
	}
	bpf_map_delete_elem(&pairs, &key);
}

/* Default mode: nf_ct_resolve_clash's verdict is confirm's. */
static __always_inline int clash_exit(__u64 key, struct sk_buff *skb, int ret)
{
	struct clash_pair *p = bpf_map_lookup_elem(&pairs, &key);

	if (!p) /* the probe attached mid-call */
		return 0;
	if (!skb)
		skb = (struct sk_buff *)p->loser.skb;
	send_pair(p, key, skb, ret);
	return 0;
}

/* 5.6+: static int nf_ct_resolve_clash(struct sk_buff *skb, struct nf_conntrack_tuple_hash *h,
 *                                       u32 reply_hash) -- __cold noinline, always a symbol.
 * Fallback: static int __nf_ct_resolve_clash(struct sk_buff *skb, struct nf_conntrack_tuple_hash *h). */
SEC("fentry/nf_ct_resolve_clash")
int BPF_PROG(fentry_clash, struct sk_buff *skb, struct nf_conntrack_tuple_hash *h)
{
	clash_enter((__u64)skb, skb, h);
	return 0;
}

SEC("fexit/nf_ct_resolve_clash")
int BPF_PROG(fexit_clash, struct sk_buff *skb, struct nf_conntrack_tuple_hash *h, __u32 reply_hash, int ret)
{
	return clash_exit((__u64)skb, skb, ret);
}

/* kprobe variants: the default mode's pair is keyed by task, for its
 * kretprobe (which sees no arguments); the other modes key by skb. */
static __always_inline __u64 kprobe_pair_key(struct sk_buff *skb)
{
	return stream_confirms ? (__u64)skb : pid_key();
}

SEC("kprobe/nf_ct_resolve_clash")
int BPF_KPROBE(kprobe_clash, struct sk_buff *skb, struct nf_conntrack_tuple_hash *h)
{
	clash_enter(kprobe_pair_key(skb), skb, h);
	return 0;
}

/* 4.19-5.5: static int nf_ct_resolve_clash(struct net *net, struct sk_buff *skb,
 *                enum ip_conntrack_info ctinfo, struct nf_conntrack_tuple_hash *h) */
SEC("kprobe/nf_ct_resolve_clash")
int BPF_KPROBE(kprobe_clash_v419, struct net *net, struct sk_buff *skb, int ctinfo,
	       struct nf_conntrack_tuple_hash *h)
{
	clash_enter(kprobe_pair_key(skb), skb, h);
	return 0;
}

SEC("kretprobe/nf_ct_resolve_clash")
int BPF_KRETPROBE(kretprobe_clash, int ret)
{
	return clash_exit(pid_key(), NULL, ret);
}

/* ---- __nf_conntrack_confirm --------------------------------------------- */


static __always_inline void tuple_key_of(struct tuple_key *k, __u32 netns, __u16 zone, const struct tuple *t)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->netns = netns;
	k->zone = zone;
	k->t = *t;
	k->t.dir = 0;
}

static __always_inline void add_candidate(const struct tuple_key *k, __u64 ct, __u64 now)
{
	__u32 slot = (bpf_get_smp_processor_id() % CANDIDATE_CPUS) * 2;
	struct candidates *c = bpf_map_lookup_elem(&confirmed, k);

	if (!c) {
		struct candidates fresh = {};
		/* NOEXIST: a racer on another CPU may have created it meanwhile. */
		bpf_map_update_elem(&confirmed, k, &fresh, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&confirmed, k);
		if (!c)
			return;
	}
	if (slot + 1 >= CANDIDATE_SLOTS) /* bounds for the verifier */
		return;
	if (c->ct[slot] != ct) {
		c->ct[slot + 1] = c->ct[slot];
		c->ts[slot + 1] = c->ts[slot];
	}
	c->ct[slot] = ct;
	c->ts[slot] = now;
}

/* A ct still in use: its refcount (struct nf_conntrack.use: atomic_t in
 * 4.19, refcount_t later, 4 bytes either way) is not 0. A freed ct keeps its
 * tuples in memory (SLAB_TYPESAFE_BY_RCU), so the tuple alone proves nothing. */
static __always_inline bool ct_alive(struct nf_conn *ct)
{
	__u32 use = 0;

	bpf_probe_read_kernel(&use, sizeof(use), (void *)ct + bpf_core_field_offset(ct->ct_general.use));
	return use != 0;
}

/* Index a ct entering confirm under both of its tuples (as the kernel's
 * hash will), before it can be in the hash: the winner of a clash is always
 * indexed before its loser looks for it. */
static __always_inline void index_candidate(struct nf_conn *ct, const struct tuple *orig, const struct tuple *reply)
{
	struct tuple_key k;
	__u64 now = bpf_ktime_get_ns();
	__u32 netns = BPF_CORE_READ(ct, ct_net.net, ns.inum);
	__u16 zone = 0;

	if (bpf_core_field_exists(ct->zone))
		zone = BPF_CORE_READ(ct, zone.id);
	tuple_key_of(&k, netns, zone, orig);
	add_candidate(&k, (__u64)ct, now);
	tuple_key_of(&k, netns, zone, reply);
	add_candidate(&k, (__u64)ct, now);
}

/* The winner of a clash nobody saw at nf_ct_resolve_clash: the confirmed ct
 * holding the loser's ORIGINAL tuple, else its REPLY tuple (a reply-direction
 * clash, race 4). The ct is checked to still hold that tuple, since ct memory
 * is reused. Emits a CLASH record like clash_enter's; returns the winner. */
static __always_inline __u64 lookup_clash(const struct event *e)
{
	struct tuple_key k;
	struct tuple now;
	struct event *c;
	struct candidates *cand;
	struct nf_conn *w = NULL;
	__u64 best = 0;
	__u8 dir;

	for (dir = 0; dir < 2 && !w; dir++) {
		tuple_key_of(&k, e->netns, e->zone, dir ? &e->reply : &e->orig);
		cand = bpf_map_lookup_elem(&confirmed, &k);
		if (!cand)
			continue;
		/* The newest recent candidate other than the loser that still holds
		 * the tuple (ct memory is reused) is the one that won. */
		for (int i = 0; i < CANDIDATE_SLOTS; i++) {
			__u64 ct = cand->ct[i];
			if (!ct || ct == e->ct || cand->ts[i] <= best || e->ts - cand->ts[i] > CANDIDATE_MAX_AGE_NS ||
			    !ct_alive((struct nf_conn *)ct))
				continue;
			for (int j = 0; j < 2; j++) {
				read_tuple(&now, &((struct nf_conn *)ct)->tuplehash[j].tuple);
				now.dir = 0;
				if (!__builtin_memcmp(&now, &k.t, sizeof(now))) {
					w = (struct nf_conn *)ct;
					best = cand->ts[i];
					break;
				}
			}
		}
	}
	if (!w)
		return 0;
	c = new_event(1, EVENT_CLASH);
	if (!c)
		return 0;
	read_ct(c, w);
	c->ct = e->ct;
	c->other_ct = (__u64)w;
	c->skb = e->skb;
	c->aux = dir - 1; /* which of the loser's tuples matched: 0 ORIGINAL, 1 REPLY */
	c->flags |= EVENT_F_LOOKUP | (sent_together() ? EVENT_F_HISTORY : 0);
	output(c);
	return (__u64)w;
}

static __always_inline void confirm_enter(struct call_key c, struct sk_buff *skb)
{
	struct nf_conn *ct = skb_ct(skb, NULL);
	struct entry *v;

	/* Never without a ct: nf_conntrack_confirm calls only for one. */
	if (!ct)
		return;
	v = save_entry(c, EVENT_CONFIRM);
	if (!v)
		return;
	v->skb = (__u64)skb;
	v->ct = (__u64)ct;
	read_tuple(&v->orig, &ct->tuplehash[0].tuple);
	read_tuple(&v->before, &ct->tuplehash[1].tuple);
	if (lookup_winner)
		index_candidate(ct, &v->orig, &v->before);
}

static __always_inline void replay(struct history *h, __u16 extra)
{
	if (h->have & HIST_IN) {
		h->in.flags |= EVENT_F_HISTORY | extra;
		output(&h->in);
	}
	for (int m = 0; m < 2; m++) {
		if (h->have & (m ? HIST_NAT_DST : HIST_NAT_SRC)) {
			h->nat[m].flags |= EVENT_F_HISTORY | extra;
			output(&h->nat[m]);
		}
	}
	if (h->have & HIST_CONFIRM) {
		h->confirm.flags |= EVENT_F_HISTORY | extra;
		output(&h->confirm);
	}
}

/*
 * The outcome, read without trusting IPS_CONFIRMED (set late since 2025, §3
 * era G): ret NF_DROP is a drop; a different ct on the skb afterwards means
 * the packet was merged into the winner; IPS_NAT_CLASH on the same ct means a
 * reply-only insert (5.6+). A clash record (from nf_ct_resolve_clash) marks
 * the rest of the clashes.
 */
static __always_inline int confirm_exit(struct call_key c, struct sk_buff *skb, int ret)
{
	struct entry v;
	struct event *e, *clash;
	struct nf_conn *after;
	struct history *lh, *wh;
	__u64 winner = 0;
	bool freed, settled, race;

	if (!take_entry(c, EVENT_CONFIRM, &v))
		return 0;
	if (!skb)
		skb = (struct sk_buff *)v.skb;
	e = new_event(0, EVENT_CONFIRM);
	if (!e)
		return 0;
	after = skb_ct(skb, &e->ctinfo);
	/* Status, netns, zone and mark come from the ct that now rides on the
	 * skb; the tuples are the loser's, saved at entry because a merged loser
	 * is freed before we return. */
	read_ct(e, after);
	e->ct = v.ct;
	e->orig = v.orig;
	e->reply = v.before;
	e->other_ct = (__u64)after;
	e->skb = (__u64)skb;
	e->ret = ret;
	read_sock(e, skb);
	/* Dropped, merged, or inserted reply-only: the outcomes of a clash. A
	 * dropped or merged loser is freed. */
	freed = ret == NF_DROP || e->other_ct != v.ct;
	settled = freed || (e->status & IPS_NAT_CLASH);

	if (clash_path_only()) {
		/* Default mode and --all without a clash probe (4.19-5.5): the
		 * winner of a race is found by tuple; --all also sends every
		 * other new ct. */
		if (!(settled || stream_confirms) || !wanted(e, e->pid_tgid >> 32))
			return 0;
		read_sender(e, skb);
		if (settled)
			lookup_clash(e);
		output(e);
		return 0;
	}
	lh = ct_history(v.ct);
	if (!history_wanted(lh, e))
		goto out;
	clash = bpf_map_lookup_elem(&clashes, &e->skb);
	if (clash && clash->ct != v.ct)
		clash = NULL; /* a stale record of an earlier packet at this skb address */
	race = settled || clash;

	if (stream_all) {
		if (race && !clash && lookup_winner)
			lookup_clash(e);
		output(e);
	} else if (race) {
		if (lh)
			replay(lh, 0);
		else
			count_loss(LOSS_NO_HISTORY);
		if (clash) {
			clash->flags |= EVENT_F_HISTORY;
			output(clash);
			winner = clash->other_ct;
		} else if (lookup_winner) {
			winner = lookup_clash(e);
		}
		if (!winner && e->other_ct != v.ct)
			winner = e->other_ct;
		if (winner) {
			wh = ct_history(winner);
			if (wh)
				replay(wh, EVENT_F_WINNER);
			else
				count_loss(LOSS_NO_HISTORY);
		}
		/* In a three-way race nf_ct_resolve_clash_harder may merge the loser
		 * into another entry than the one the clash named: replay that too. */
		if (e->other_ct != v.ct && e->other_ct != winner) {
			wh = ct_history(e->other_ct);
			if (wh)
				replay(wh, EVENT_F_WINNER);
		}
		output(e);
	}
	if (race) {
		/* A dropped or merged loser is freed; keep nothing of it. */
		if (freed)
			bpf_map_delete_elem(&hist, &v.ct);
	} else if (lh) {
		/* Keep the confirmation: this ct may be the winner of a later clash. */
		__builtin_memcpy(&lh->confirm, e, sizeof(*e));
		lh->have |= HIST_CONFIRM;
	}
out:
	bpf_map_delete_elem(&clashes, &e->skb);
	return 0;
}

/* A pair older than this was left by a call in flight when the probes
 * attached, or by a missed kretprobe; its skb address may since carry
 * another packet. */
#define PAIR_MAX_AGE_NS 1000000000ULL

/* The pair p was made for this skb's passage through confirm, which now
 * carries ct: after a clash the skb carries the loser (dropped, or inserted
 * reply-only) or the winner (merged); any other ct, or an old pair, means
 * another packet at the same skb address. (A merge into a third entry,
 * nf_ct_resolve_clash_harder's three-way race, is taken for that too: glibc
 * and musl send two queries.) */
static __always_inline bool pair_of(const struct clash_pair *p, const struct nf_conn *ct)
{
	return ((__u64)ct == p->loser.ct || (__u64)ct == p->clash.other_ct) &&
	       bpf_ktime_get_ns() - p->clash.ts < PAIR_MAX_AGE_NS;
}

/* --all with the clash probe: confirm's exit alone, without an entry probe.
 * A new ct that was not in a clash is not freed, so it is read here: its
 * REPLY tuple shows the NAT bindings. A clash seen inside (a pair from
 * nf_ct_resolve_clash's entry) is sent as that pair instead. */
static __always_inline int confirm_new(struct sk_buff *skb, int ret)
{
	__u64 key = (__u64)skb;
	struct clash_pair *p = bpf_map_lookup_elem(&pairs, &key);
	__u8 ctinfo;
	struct nf_conn *ct = skb_ct(skb, &ctinfo);
	struct event *e;
	__u32 zero = 0;

	if (!ct)
		return 0;
	if (p) {
		if (pair_of(p, ct)) {
			send_pair(p, key, skb, ret);
			return 0;
		}
		bpf_map_delete_elem(&pairs, &key);
	}
	e = bpf_map_lookup_elem(&scratch, &zero);
	if (!e)
		return 0;
	read_confirm(e, skb, ct);
	e->ctinfo = ctinfo;
	e->other_ct = e->ct;
	e->ret = ret;
	if (wanted(e, e->pid_tgid >> 32))
		output(e);
	return 0;
}

/* int __nf_conntrack_confirm(struct sk_buff *skb) -- exported, 4.19 to 6.18. */
SEC("fentry/__nf_conntrack_confirm")
int BPF_PROG(fentry_confirm, struct sk_buff *skb)
{
	confirm_enter(object_call(skb), skb);
	return 0;
}

SEC("fexit/__nf_conntrack_confirm")
int BPF_PROG(fexit_confirm, struct sk_buff *skb, int ret)
{
	return confirm_exit(object_call(skb), skb, ret);
}

SEC("kprobe/__nf_conntrack_confirm")
int BPF_KPROBE(kprobe_confirm, struct sk_buff *skb)
{
	confirm_enter(task_call(), skb);
	return 0;
}

SEC("kretprobe/__nf_conntrack_confirm")
int BPF_KRETPROBE(kretprobe_confirm, int ret)
{
	return confirm_exit(task_call(), NULL, ret);
}

SEC("fexit/__nf_conntrack_confirm")
int BPF_PROG(fexit_confirm_new, struct sk_buff *skb, int ret)
{
	return confirm_new(skb, ret);
}

/* The kretprobe sees no arguments: it takes the skb from the entry that
 * kprobe_confirm left in task_entries (before 5.13; see below). */
SEC("kretprobe/__nf_conntrack_confirm")
int BPF_KRETPROBE(kretprobe_confirm_new, int ret)
{
	struct entry v;
	if (!take_entry(task_call(), EVENT_CONFIRM, &v))
		return 0;
	return confirm_new((struct sk_buff *)v.skb, ret);
}

/* The same pair where the kernel lets tracing programs use task storage
 * (5.13+, a10787e6d58c): the skb waits in the calling task's own storage
 * instead of task_entries, found without a hash lookup and its bucket lock
 * (VM lab, 6.1: 15 us a flow for the pair, 23 us with a hash map and
 * confirm_enter's tuples). Softirq work runs as the task
 * it interrupted, or as the CPU's own idle task, as pid_key() keys it; so
 * the storage is a stack too, as task_entries' values are. */
struct saved_skbs {
	__u32 depth;
	__u32 pad;
	__u64 skb[ENTRY_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct saved_skbs);
} confirm_skb SEC(".maps");

SEC("kprobe/__nf_conntrack_confirm")
int BPF_KPROBE(kprobe_confirm_task, struct sk_buff *skb)
{
	struct saved_skbs *s = bpf_task_storage_get(&confirm_skb, bpf_get_current_task_btf(), 0,
						   BPF_LOCAL_STORAGE_GET_F_CREATE);

	if (s)
		s->skb[push_slot(&s->depth)] = (__u64)skb;
	return 0;
}

SEC("kretprobe/__nf_conntrack_confirm")
int BPF_KRETPROBE(kretprobe_confirm_new_task, int ret)
{
	struct saved_skbs *s = bpf_task_storage_get(&confirm_skb, bpf_get_current_task_btf(), 0, 0);
	__u64 skb;
	__u32 top;

	if (!s) {
		count_loss(LOSS_NO_ENTRY);
		return 0;
	}
	if (!pop_depth(s->depth, &top))
		return 0;
	skb = s->skb[slot_index(top)];
	barrier();
	s->depth = top;
	return confirm_new((struct sk_buff *)skb, ret);
}

/* kprobe.session (6.10+, fprobe; kernel/trace/bpf_trace.c): one program run
 * at the entry and at the return of each call, with an 8-byte cookie per
 * call. The skb waits in the cookie instead of a map, with no lookup at
 * all (README: Overhead).
 * The kfuncs are weak: this program loads only where the Go side found
 * kprobe.session. */
extern __u64 *bpf_session_cookie(void) __ksym __weak;
extern bool bpf_session_is_return(void) __ksym __weak;

SEC("kprobe.session/__nf_conntrack_confirm")
int ksession_confirm_new(struct pt_regs *ctx)
{
	__u64 *cookie = bpf_session_cookie();

	if (!bpf_session_is_return()) {
		*cookie = PT_REGS_PARM1(ctx);
		return 0; /* 0: run again at the return */
	}
	return confirm_new((struct sk_buff *)*cookie, PT_REGS_RC(ctx));
}
