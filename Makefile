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
# Narrowing a VM run while developing: E2E_RUN is go test's -run (e.g.
# '^TestVMLab$$'), E2E_SCENARIOS the lab's scenarios, comma-separated
# (e2e/vm_test.go: scenarios). CI sets neither.
E2E_RUN ?=
E2E_SCENARIOS ?=
E2E_DIAGNOSES ?=

.PHONY: all build deps generate test unit fuzz e2e e2e-lts e2e-5.10 e2e-rt e2e-diagnoses demo image clean

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
# three stock Debian kernels: the newest (6.12), the 6.1 LTS and Debian 11's
# 5.10.
test: deps unit fuzz e2e e2e-lts e2e-5.10

# deploy/ is a module of its own (the Kubernetes API types stay out of the
# binary): its tests check the manifests, the dashboard, the alert rules
# and the image that `make image` builds.
unit:
	$(GO) vet ./...
	$(GO) test -count=1 ./...
	cd deploy && $(GO) vet ./... && $(GO) test -count=1 ./...

fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

e2e: deps build
	CTPROBE_E2E=1 FLAVOUR=$(FLAVOUR) KERNEL_SERIES=$(KERNEL_SERIES) GO=$(GO) E2E_SCENARIOS=$(E2E_SCENARIOS) E2E_DIAGNOSES=$(E2E_DIAGNOSES) \
		scripts/gotest.sh out/e2e-$(FLAVOUR)$(if $(KERNEL_SERIES),-$(KERNEL_SERIES)).log -count=1 -timeout 45m $(if $(E2E_RUN),-run '$(E2E_RUN)') ./e2e/

e2e-lts:
	$(MAKE) e2e KERNEL_SERIES=6.1

e2e-5.10:
	$(MAKE) e2e KERNEL_SERIES=5.10

e2e-rt:
	$(MAKE) e2e FLAVOUR=rt

# The diagnosis scenarios that make test leaves out (e2e/vm_test.go:
# onlyDiagnoses): a TCP reverse collision, a full table, hash chains too
# long, kube-proxy's fixed VXLAN masquerade, race 4 against an old entry
# with the clash probe. Each costs a kernel's run 1 to 2 minutes under TCG
# and none differs among the kernels CI boots where it applies, so they run once, on the
# newest kernel (about 10 minutes with the boot). make test runs issue 19's
# reverse-udp on every kernel and masq-random-fully and
# snat-one-port-held@noclash on the newest.
e2e-diagnoses:
	$(MAKE) e2e E2E_RUN='^TestVMLab$$' E2E_DIAGNOSES=1

demo: deps build
	@scripts/demo.sh $(FLAVOUR)

# Overhead: flows/s through a DNAT'd ClusterIP in the VM, in windows of one
# long flood: untraced, and traced in the default mode, --timeline, --all and
# --all --timeline (fentry and kprobe), each traced window against the
# untraced ones around it, and each window's profile of the sending vCPU
# (the probes' share of it); probe time, loss accounting, and the Go
# benchmarks of scripts/bench-go.sh; one table (about 40 minutes).
.PHONY: bench
bench: deps build
	@scripts/bench.sh

# The container image (docs/deploy.md): an OCI layout in out/image, tagged
# $(VERSION) and latest, built from scratch with umoci (no daemon).
ARCH ?= amd64
image:
	@scripts/image.sh --arch $(ARCH) --version $(VERSION)

clean:
	rm -rf bin out
