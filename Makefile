# ctprobe: `make demo` boots a stock Debian kernel in QEMU and traces real
# conntrack races; `make test` runs every test layer. Both install what they
# need (scripts/deps.sh: Debian packages; Go modules through the proxy).

GO       ?= go
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# Static binaries: the same ones run on the host and in the VM's initramfs.
GOBUILD  := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"
# An execution count, not a duration: with a duration, Go 1.26's fuzz coordinator
# can fail at the deadline with a bare "context deadline exceeded" (golang/go#75804).
FUZZTIME ?= 50000x
# Which Debian kernel the VM lab boots: flavour cloud or rt, and a series
# (empty: the newest, 6.12 on Debian 12; 6.1: the newest 6.1 LTS; 5.10:
# Debian 11's, without module BTF, task storage for tracing or
# kprobe.session, so everything attaches with kprobes).
FLAVOUR  ?= cloud
KERNEL_SERIES ?=

.PHONY: all build deps generate test test-more unit fuzz e2e e2e-lts e2e-5.10 e2e-lts-full e2e-5.10-full e2e-cpus e2e-rt demo image clean

all: build

build:
	$(GOBUILD) -o bin/ctprobe ./cmd/ctprobe
	$(GOBUILD) -o bin/ctlab ./cmd/ctlab

deps:
	@scripts/deps.sh

# Regenerates vmlinux/vmlinux.h from the running kernel's BTF and the bpf2go
# output from bpf/*.c; tracer/probe's tests fail when the committed copies
# differ from what this target produces.
generate: deps
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/vmlinux.h
	uname -r > vmlinux/KERNEL
	cd tracer/probe && $(GO) generate

# Every test layer: unit and fuzz (no privileges), privileged tests on this
# kernel (verifier, attach failures; skipped without root), then the VM on
# three stock Debian kernels: the newest (6.12) with every VM test and every
# lab scenario, the 6.1 LTS and Debian 11's 5.10 with MATRIX_SCENARIOS (and
# 5.10 with the detach test). About 40 minutes on CI's two cores; what does
# not fit is in test-more.
test: deps unit fuzz e2e e2e-lts e2e-5.10

# The slow extras, each its own target: every lab scenario on 6.1 and 5.10,
# the many-CPUs test and the PREEMPT_RT flavour.
test-more: e2e-lts-full e2e-5.10-full e2e-cpus e2e-rt

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
	CTPROBE_E2E=1 FLAVOUR=$(FLAVOUR) KERNEL_SERIES=$(KERNEL_SERIES) GO=$(GO) \
		E2E_SCENARIOS=$(E2E_SCENARIOS) E2E_MANY_CPUS=$(E2E_MANY_CPUS) \
		scripts/gotest.sh out/e2e-$(FLAVOUR)$(if $(KERNEL_SERIES),-$(KERNEL_SERIES)).log -count=1 -timeout 45m $(if $(E2E_RUN),-run '$(E2E_RUN)') ./e2e/

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

e2e-rt:
	$(MAKE) e2e FLAVOUR=rt

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
