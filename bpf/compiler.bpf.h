/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Compiler barriers, as the kernel's own (include/asm-generic/barrier.h,
 * include/asm-generic/rwonce.h): loads and stores that clang must emit as
 * written, in order, for state that another program run may read while it
 * is written.
 */
#ifndef CTPROBE_COMPILER_BPF_H
#define CTPROBE_COMPILER_BPF_H

#define barrier() asm volatile("" ::: "memory")
#define READ_ONCE(x) (*(const volatile typeof(x) *)&(x))
#define WRITE_ONCE(x, v) (*(volatile typeof(x) *)&(x) = (v))

#endif /* CTPROBE_COMPILER_BPF_H */
