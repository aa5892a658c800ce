# ctprobe: `make demo` boots a stock Debian kernel in QEMU and traces real
# conntrack races; `make test` runs every test layer. Both install what they
# need (scripts/deps.sh: Debian packages; Go modules through the proxy).

GO       ?= go
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# Static binaries: the same ones run on the host and in the VM's initramfs.
GOBUILD  := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"
# The architectures ctprobe is built for (tracer/probe holds the BPF objects of both).
ARCHES   := amd64 arm64
# An execution count, not a duration: with a duration, Go 1.26's fuzz coordinator
# can fail at the deadline with a bare "context deadline exceeded" (golang/go#75804).
FUZZTIME ?= 50000x
# Which Debian kernel the VM lab boots (scripts/vm/fetch-kernel.sh): flavour
# cloud or rt; an architecture (amd64, or arm64 under emulation); a Debian
# suite (empty: the host's, Debian 12, whose newest is 6.12; trixie; sid, the
# newest kernel); a series (6.1: the newest 6.1 LTS; 5.10: Debian 11's,
# without module BTF, task storage for tracing or kprobe.session, so
# everything attaches with kprobes).
FLAVOUR       ?= cloud
KERNEL_ARCH   ?=
KERNEL_SUITE  ?=
KERNEL_SERIES ?=
# Which VM tests run (go test -run; empty: all), which lab scenarios
# (E2E_SCENARIOS=a,b; empty: all of make test's, see e2e/vm_test.go), which
# trace modes watch each (E2E_MODES=a,b of default, timeline, all,
# all-timeline; empty: the first three), and E2E_DIAGNOSES=1: issue 19's
# diagnosis scenarios instead of make test's (e2e-diagnoses).
E2E_RUN       ?=
E2E_SCENARIOS ?=
E2E_MODES     ?=
E2E_DIAGNOSES ?=
# The full runs of the kernels beyond make test's first three: the lab's
# scenarios against the kernel's counters, and the detach test (the tests of
# the VM machinery and the single-purpose guests run on the default kernel).
MATRIX_TESTS  := ^(TestVMLab|TestVMDetachUnderTraffic)$$
E2E_NAME       = e2e-$(FLAVOUR)$(foreach v,$(KERNEL_ARCH) $(KERNEL_SUITE) $(KERNEL_SERIES),-$(v))

.PHONY: all build deps generate test test-more unit fuzz e2e e2e-lts e2e-5.10 e2e-rt
.PHONY: e2e-lts-full e2e-5.10-full e2e-cpus e2e-rt-full e2e-trixie e2e-trixie-full e2e-sid e2e-sid-full
.PHONY: e2e-arm64-quick e2e-arm64 e2e-diagnoses demo image clean man install

all: build

# bin/ctprobe and bin/ctlab for this machine, and bin/linux-ARCH/ for each of ARCHES.
build:
	$(GOBUILD) -o bin/ctprobe ./cmd/ctprobe
	$(GOBUILD) -o bin/ctlab ./cmd/ctlab
	for a in $(ARCHES); do GOARCH=$$a $(GOBUILD) -o bin/linux-$$a/ ./cmd/ctprobe ./cmd/ctlab || exit 1; done

deps:
	@scripts/deps.sh

# docs/ctprobe.8 from the commands' flag sets (ctprobe man); cmd/ctprobe's
# TestManPage fails when the committed page is stale.
man:
	$(GO) run ./cmd/ctprobe man > docs/ctprobe.8

# bin/ctprobe and the man page under $(DESTDIR)$(PREFIX) (packagers set
# DESTDIR to a staging root).
PREFIX  ?= /usr/local
install:
	$(GOBUILD) -o bin/ctprobe ./cmd/ctprobe
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 0755 bin/ctprobe $(DESTDIR)$(PREFIX)/bin/ctprobe
	install -m 0644 docs/ctprobe.8 $(DESTDIR)$(PREFIX)/share/man/man8/ctprobe.8

# Regenerates vmlinux/vmlinux.h from the running kernel's BTF and the bpf2go
# output from bpf/*.c; tracer/probe's tests fail when the committed copies
# differ from what this target produces.
generate: deps
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/vmlinux.h
	uname -r > vmlinux/KERNEL
	cd tracer/probe && $(GO) generate

# Every test layer: unit and fuzz (no privileges), privileged tests on this
# kernel (verifier, attach failures; skipped without root), then the VM on
# stock Debian kernels: Debian 12's 6.12 with every VM test and every lab
# scenario of e2e/vm_test.go's scenarios (e2e; none of issue 19's
# diagnoses, which are e2e-diagnoses'); the 6.1 LTS (e2e-lts) and Debian 11's 5.10 (e2e-5.10, with
# the detach test) with MATRIX_SCENARIOS; 6.12 PREEMPT_RT with the modes
# that build records in task context (e2e-rt); the DNAT race with fentry
# and with kprobes on Debian 13's 6.12 (e2e-trixie), sid's newest kernel
# (e2e-sid) and arm64 under emulation (e2e-arm64-quick). A fresh clone on
# two cores took 24 minutes alone and 40 with another VM running beside it
# (the last three about 10 of them); the full runs are test-more's.
test: deps unit fuzz e2e e2e-lts e2e-5.10 e2e-rt e2e-trixie e2e-sid e2e-arm64-quick

# The slow extras, each its own target: every lab scenario on 6.1, 5.10,
# trixie, sid and arm64, the many-CPUs test, every mode on PREEMPT_RT and
# issue 19's diagnosis scenarios (e2e-diagnoses).
test-more: e2e-lts-full e2e-5.10-full e2e-cpus e2e-rt-full e2e-trixie-full e2e-sid-full e2e-arm64 e2e-diagnoses

# deploy/ is a module of its own (the Kubernetes API types stay out of the
# binary): its tests check the manifests, the dashboard, the alert rules
# and the image that `make image` builds.
unit:
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 ./...

fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

# E2E_SCENARIOS=a,b narrows the lab to those scenarios (e2e/vm_test.go),
# E2E_RUN to the VM tests it matches (go test -run).
e2e: deps build
	CTPROBE_E2E=1 FLAVOUR=$(FLAVOUR) KERNEL_ARCH=$(KERNEL_ARCH) KERNEL_SUITE=$(KERNEL_SUITE) \
		KERNEL_SERIES=$(KERNEL_SERIES) E2E_SCENARIOS=$(E2E_SCENARIOS) E2E_MODES=$(E2E_MODES) \
		E2E_DIAGNOSES=$(E2E_DIAGNOSES) E2E_MANY_CPUS=$(E2E_MANY_CPUS) E2E_DETACH=$(E2E_DETACH) GO=$(GO) \
		scripts/gotest.sh out/$(E2E_NAME).log -count=1 -timeout 45m $(if $(value E2E_RUN),-run '$(value E2E_RUN)') ./e2e/

# The lab's scenarios on the kernels beyond the default one in make test:
# the race through DNAT with each attach mode, SNAT to one port (race 4) and
# the VXLAN double-SNAT path (the most probes per packet).
MATRIX_SCENARIOS := endpoints-2,endpoints-2@kprobe,snat-one-port,vxlan-masq

e2e-lts:
	$(MAKE) e2e KERNEL_SERIES=6.1 E2E_SCENARIOS=$(or $(E2E_SCENARIOS),$(MATRIX_SCENARIOS))

e2e-5.10:
	$(MAKE) e2e KERNEL_SERIES=5.10 E2E_SCENARIOS=$(or $(E2E_SCENARIOS),$(MATRIX_SCENARIOS))

e2e-lts-full:
	$(MAKE) e2e KERNEL_SERIES=6.1

e2e-5.10-full:
	$(MAKE) e2e KERNEL_SERIES=5.10

# Four vCPUs and an LRU map shrunk to where the CPUs' free lists empty it.
e2e-cpus:
	$(MAKE) e2e KERNEL_SERIES=5.10 E2E_MANY_CPUS=1 E2E_RUN=TestVMManyCPUs

# PREEMPT_RT, where a trampoline program can be preempted mid-record: the
# modes that build records in task context (--timeline, --all --timeline,
# every record checked whole), on a DNAT scenario and the node's own
# sender (LOCAL_OUT), with fentry (kprobe programs run with preemption off).
e2e-rt:
	$(MAKE) e2e FLAVOUR=rt E2E_RUN='^TestVMLab$$' E2E_SCENARIOS=endpoints-2,local E2E_MODES=timeline,all-timeline

e2e-rt-full:
	$(MAKE) e2e FLAVOUR=rt E2E_RUN='$(MATRIX_TESTS)' E2E_DETACH=1 E2E_MODES=default,timeline,all,all-timeline

# The newest kernels: a new distribution build (Debian 13) and a newer
# kernel (sid) change what attaches, not the races: the DNAT race with
# fentry and with kprobes, in the three modes.
e2e-trixie:
	$(MAKE) e2e KERNEL_SUITE=trixie E2E_RUN='^TestVMLab$$' E2E_SCENARIOS=endpoints-2,endpoints-2@kprobe

e2e-trixie-full:
	$(MAKE) e2e KERNEL_SUITE=trixie E2E_RUN='$(MATRIX_TESTS)' E2E_DETACH=1

e2e-sid:
	$(MAKE) e2e KERNEL_SUITE=sid E2E_RUN='^TestVMLab$$' E2E_SCENARIOS=endpoints-2,endpoints-2@kprobe

e2e-sid-full:
	$(MAKE) e2e KERNEL_SUITE=sid E2E_RUN='$(MATRIX_TESTS)' E2E_DETACH=1

# arm64 under emulation is slower than x86-64: e2e-arm64-quick runs one
# scenario in both attach modes, e2e-arm64 every scenario and the detach test.
e2e-arm64-quick:
	$(MAKE) e2e KERNEL_ARCH=arm64 E2E_RUN='^TestVMLab$$' E2E_SCENARIOS=endpoints-2,endpoints-2@kprobe

e2e-arm64:
	$(MAKE) e2e KERNEL_ARCH=arm64 E2E_RUN='$(MATRIX_TESTS)' E2E_DETACH=1

# Issue 19's diagnosis scenarios (e2e/vm_test.go: diagnoses), none of which
# make test runs (it is at CI's 45 minutes; each scenario costs a kernel's
# run 1 to 2 minutes under TCG): every one on 6.12 (race 4 against an old
# entry, with and without the clash probe; kube-proxy's fixed VXLAN
# masquerade; MASQUERADE --random-fully; UDP and TCP reverse collisions; a
# full table; hash chains too long), then reverse-udp, the one whose
# outcome changes with the kernel (merged from 6.12, the port moved or
# dropped before), on 6.1 and 5.10.
e2e-diagnoses:
	$(MAKE) e2e E2E_RUN='^TestVMLab$$' E2E_DIAGNOSES=1
	$(MAKE) e2e KERNEL_SERIES=6.1 E2E_RUN='^TestVMLab$$' E2E_SCENARIOS=reverse-udp
	$(MAKE) e2e KERNEL_SERIES=5.10 E2E_RUN='^TestVMLab$$' E2E_SCENARIOS=reverse-udp

demo: deps build
	@scripts/demo.sh $(FLAVOUR)

# Overhead: packets/s through a DNAT'd ClusterIP in the VM, for new UDP flows
# and established UDP and TCP flows, in windows of one long flood each:
# untraced, and traced in the default mode, --timeline, --all and --all
# --timeline (fentry and kprobe) or by a bpftrace one-liner on confirm (the
# peer), each traced window against the untraced ones around it, and each
# window's profile of the sending vCPU (the probes' share of it); probe time,
# loss accounting, and the Go benchmarks of scripts/bench-go.sh; one table
# (about an hour). bench-quick: the same table with fentry, the default
# mode, --all, --timeline and the fexit peer, one pair of windows per row
# (under 10 minutes): a check before a change lands.
.PHONY: bench bench-quick
bench: deps build
	@scripts/bench.sh

bench-quick: deps build
	@BENCH_QUICK=1 scripts/bench.sh

# The container image (docs/deploy.md): an OCI layout in out/image, tagged
# $(VERSION) and latest, built from scratch with umoci (no daemon).
ARCH ?= amd64
image:
	@scripts/image.sh --arch $(ARCH) --version $(VERSION)

clean:
	rm -rf bin out
