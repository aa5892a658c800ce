// Package probe holds ctprobe's compiled BPF programs (bpf/ctprobe.bpf.c and
// the bpf/*.bpf.h headers it includes) and the Go types bpf2go generates from
// the C records, so that the Go side can never disagree with the C layout.
package probe

//go:generate go tool bpf2go -cc clang-16 -strip llvm-strip-16 -target amd64,arm64 -type event -type tuple -type nat_range -type event_kind -type event_flag -type loss_kind -type record_layout BPF ../../bpf/ctprobe.bpf.c -- -O2 -g -Wall -Werror -I../../bpf -I../../vmlinux

// RecordLayout is RECORD_LAYOUT from bpf/ctprobe.h: capture files record it
// so that a reader refuses records of another layout.
const RecordLayout = uint32(BPFRecordLayoutRECORD_LAYOUT)
