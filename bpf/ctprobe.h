/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Records that ctprobe's BPF programs send to user space. The Go types are
 * generated from these structs by bpf2go (-type), so a layout change here
 * that is not mirrored in Go cannot compile or fails tracer/event's tests.
 * Bump RECORD_LAYOUT whenever a field changes meaning or place:
 * capture files store it and refuse records of another layout.
 */
#ifndef CTPROBE_H
#define CTPROBE_H

enum record_layout { RECORD_LAYOUT = 1 };

#define PAYLOAD_MAX 64

/* Probe point that produced an event. */
enum event_kind {
	EVENT_CT_IN = 1,   /* nf_conntrack_in returned: the ct now on the skb */
	EVENT_NAT = 2,     /* a NAT binding was chosen (nf_nat_setup_info or get_unique_tuple) */
	EVENT_CLASH = 3,   /* nf_ct_resolve_clash entered: a confirmed winner holds our tuple */
	EVENT_CONFIRM = 4, /* __nf_conntrack_confirm returned: the verdict */
};

/* event.flags */
enum event_flag {
	EVENT_F_NEW = 1 << 0,       /* CT_IN: ctinfo == IP_CT_NEW and the ct is unconfirmed */
	EVENT_F_SOCK = 1 << 1,      /* socket fields are valid */
	EVENT_F_HISTORY = 1 << 2,   /* replayed from the in-kernel per-ct history (--timeline) */
	EVENT_F_NAT_GUT = 1 << 3,   /* NAT: from get_unique_tuple; tuples are in ORIGINAL direction */
	EVENT_F_NAT_CHANGED = 1 << 4, /* NAT: the tuple differs after NAT */
	EVENT_F_WINNER = 1 << 5,    /* HISTORY: this event belongs to the clash winner */
	EVENT_F_SOFTIRQ_KEY = 1 << 6, /* entry/exit paired per CPU (pid 0): task fields are the idle task */
	EVENT_F_ORIGIN = 1 << 7,    /* task and socket come from where the skb was sent (another netns) */
	EVENT_F_LOOKUP = 1 << 8,    /* CLASH: the winner was found by tuple lookup, not at nf_ct_resolve_clash */
	EVENT_F_LOCAL = 1 << 9,     /* CONFIRM: the skb was made on this host (skb_iif 0), so a task
	                             * owning its socket is the sender */
};

/* A conntrack tuple as the kernel holds it (struct nf_conntrack_tuple):
 * addresses are 16 bytes (IPv4 in the first 4), ports/ids are in network
 * byte order exactly as src.u.all / dst.u.all (for ICMP: src = echo id,
 * dst = type << 8 | code). */
struct tuple {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u16 l3num; /* AF_INET or AF_INET6 */
	__u8 protonum;
	__u8 dir;
};

/* struct nf_nat_range2 (4.18+): what the NAT rule asked for. */
struct nat_range {
	__u8 min_addr[16];
	__u8 max_addr[16];
	__u32 flags; /* NF_NAT_RANGE_* (e.g. PROTO_RANDOM_FULLY = 1 << 4) */
	__u16 min_proto;
	__u16 max_proto;
};

/*
 * One record in the ring buffer. Field meaning per kind:
 *   ct        the ct the packet carried when the probe fired (for CLASH and
 *             CONFIRM: the loser candidate L, read at confirm entry)
 *   other_ct  CONFIRM: the ct on the skb after confirm (!= ct: merged into it)
 *             CLASH: the winner W; orig/reply are then W's tuples
 *   orig      the ct's ORIGINAL tuple (CLASH: W's)
 *   reply     the ct's REPLY tuple (NAT: after the binding; CLASH: W's)
 *   before    NAT: the REPLY tuple before the binding
 *   ret       CT_IN and CONFIRM: the netfilter verdict (NF_DROP 0, NF_ACCEPT 1)
 *   aux       NAT: manip type (0 SRC, 1 DST); CLASH: direction of W's
 *             hash node that matched (0 ORIGINAL, 1 REPLY)
 */
struct event {
	__u64 ts;        /* bpf_ktime_get_ns */
	__u64 ct;
	__u64 other_ct;
	__u64 skb;
	__u64 pid_tgid;
	__u64 cgroup;
	__u64 sk_cookie; /* 0 until something generated it (SO_COOKIE, sock_diag) */
	__u64 status;    /* ct->status after the probe point (CLASH: W's) */
	__u32 netns;     /* inode of the ct's netns */
	__u32 mark;
	__u32 sk_ino;
	__u32 ret;
	__u32 cpu;
	__u16 zone;
	__u16 sk_port;   /* local port (skc_num, host order) */
	__u8 kind;
	__u8 hook;       /* NF_INET_* hook number, CT_IN only (else 0xff) */
	__u8 ctinfo;
	__u8 aux;
	__u8 sk_family;
	__u8 sk_state;
	__u16 flags;
	char comm[16];
	struct tuple orig;
	struct tuple reply;
	struct tuple before;
	struct nat_range range;
	/* CT_IN, UDP to or from port 53: the start of the DNS message, so that
	 * an incident can say which query (id, type, name) was involved. */
	__u8 payload[PAYLOAD_MAX];
	__u16 payload_len;
	__u8 pad[6];
};

/* Per-CPU counters of what could not be delivered (index into the array). */
enum loss_kind {
	LOSS_RINGBUF = 0,     /* bpf_ringbuf_output failed: the buffer was full */
	LOSS_NO_ENTRY = 1,    /* an exit probe found no saved entry (missed or evicted) */
	LOSS_NO_HISTORY = 2,  /* --timeline: a ct's history was taken by later births */
	LOSS_SENT = 3,        /* not a loss: records offered to the ring buffer, to check
	                       * that received + LOSS_RINGBUF == LOSS_SENT */
	LOSS_NESTED = 4,      /* not a loss: entries saved above another of their key (a
	                       * softirq inside the call, or above an exit the kernel
	                       * missed) and paired all the same */
	LOSS_MAX = 5,
};

#endif
