#!/usr/bin/env bash
# Install the Debian packages ctprobe needs (build, tests, VM lab). Idempotent: packages that are
# already installed are skipped, and `apt-get update` runs only when something is missing, so a
# warm machine pays nothing.
#
#   scripts/deps.sh            # everything the project needs
#   scripts/deps.sh PKG...     # only these (the VM scripts call it this way for their own needs)
set -euo pipefail

all=(
  # eBPF build: clang/llc/llvm-strip, bpftool (skeletons, BTF dumps), libbpf headers (bpf_helpers.h)
  clang-16 llvm-16 bpftool libbpf-dev
  # race lab and tests on the host
  iptables nftables conntrack iproute2 kmod
  # doctor's tests: a program linked against musl (its resolver sends A and AAAA at once)
  musl-tools
  # the pod test (e2e/pods_test.go): a real containerd with its CRI plugin, runc, CNI plugins
  containerd runc containernetworking-plugins
  # VM lab: emulators (x86-64, arm64), guest userland, initramfs packing, kernel modules (.ko.xz)
  # and depmod, readelf (the libraries of arm64 guest programs)
  qemu-system-x86 qemu-system-arm busybox-static cpio zstd xz-utils kmod binutils
  # metrics and deployment: Prometheus and promtool (unit and VM tests), curl (VM tests), umoci
  # and skopeo (make image and its test), shellcheck (the one-node recipe's test)
  prometheus curl umoci skopeo shellcheck
  # the man page's and completion scripts' tests: groff renders docs/ctprobe.8 without warnings;
  # zsh and fish load their scripts (fish computes a completion)
  groff zsh fish
  # general build tools the Makefile uses
  make git ca-certificates
)
if [ "$#" -gt 0 ]; then want=("$@"); else want=("${all[@]}"); fi

missing=()
for p in "${want[@]}"; do
  # Only "install ok installed" counts: a package in "rc" (removed, config left) must be reinstalled.
  if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    case " ${missing[*]-} " in *" $p "*) ;; *) missing+=("$p") ;; esac
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
echo "deps.sh: installing ${missing[*]}" >&2
# apt is chatty even with -qq (debconf notes on stderr): keep its output for when it fails.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! "${sudo[@]}" apt-get update -qq >"$log" 2>&1; then
  cat "$log" >&2; echo "deps.sh: apt-get update failed: check access to the Debian mirror" >&2; exit 1
fi
if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  cat "$log" >&2; echo "deps.sh: apt-get install ${missing[*]} failed (output above)" >&2; exit 1
fi
