/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What libbpf's bpf_tracing.h needs per architecture beyond vmlinux.h.
 * bpf2go compiles the programs once per target with __TARGET_ARCH_x86 or
 * __TARGET_ARCH_arm64, which selects the registers of PT_REGS_PARM*,
 * PT_REGS_RC and BPF_KPROBE. vmlinux.h comes from an x86-64 kernel
 * (vmlinux/KERNEL): its types reach every other kernel through CO-RE, but a
 * kprobe's context is read directly, and on arm64 bpf_tracing.h reads it as
 * struct user_pt_regs, which an x86 kernel does not have
 * (docs/kernel-notes.md, Architectures).
 */
#ifndef CTPROBE_ARCH_BPF_H
#define CTPROBE_ARCH_BPF_H

#include "vmlinux.h"

#if defined(__TARGET_ARCH_arm64)
/* arch/arm64/include/uapi/asm/ptrace.h, unchanged since arm64 was merged
 * (3.7); the kernel's struct pt_regs starts with it, and a kprobe program's
 * context is it (bpf_user_pt_regs_t). Outside vmlinux.h's
 * preserve_access_index: the verifier checks context offsets as they are. */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};
#elif !defined(__TARGET_ARCH_x86)
#error "ctprobe's kprobe programs are built for x86 and arm64 only (bpf2go -target amd64,arm64)"
#endif

#endif /* CTPROBE_ARCH_BPF_H */
