/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The compiler barrier, as the kernel's own (include/linux/compiler.h):
 * clang emits every load and store on each side of it, in order, for state
 * that another program run may read while it is written.
 */
#ifndef CTPROBE_COMPILER_BPF_H
#define CTPROBE_COMPILER_BPF_H

#define barrier() asm volatile("" ::: "memory")

#endif /* CTPROBE_COMPILER_BPF_H */
