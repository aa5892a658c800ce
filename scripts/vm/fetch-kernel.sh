#!/usr/bin/env bash
# Fetch a Debian kernel for the VM lab and unpack it into the cache.
#
#   scripts/vm/fetch-kernel.sh cloud|rt      (KERNEL_SERIES=6.1 for the newest 6.1.x)
#
# Picks the newest linux-image-<ver>-<flavour>-amd64-unsigned that apt knows (KERNEL_PACKAGE=<name>
# forces one). The host's apt sources (Debian 12) have 6.1 and 6.12; KERNEL_SERIES=5.10 takes
# Debian 11's (bullseye main, whose package list is kept apart in .cache/vm/apt/; KERNEL_SUITE
# names another Debian suite). It downloads the .deb once into .cache/vm/debs/, unpacks it into
# .cache/vm/kernels/<package>/ and runs depmod there. The last line on stdout is that directory,
# which holds vmlinuz-<kver> (and a vmlinuz link), config-<kver>, lib/modules/<kver>/ and a file
# `kver`. Progress and the kernel's kprobe/BTF config go to stderr.
set -euo pipefail

die() { echo "fetch-kernel.sh: $*" >&2; exit 1; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=$repo/.cache/vm

flavour=${1:-}
case "$flavour" in
  cloud|rt) ;;
  *) die "usage: $0 cloud|rt   (KERNEL_PACKAGE=linux-image-...-unsigned forces a package)" ;;
esac

# kmod for depmod; xz-utils because newer Debian kernels ship .ko.xz modules.
"$repo/scripts/deps.sh" kmod xz-utils

# KERNEL_SERIES=6.1 picks the newest of one series (e.g. the 6.1 LTS kernel
# beside the newer default), without naming a package that leaves the mirror.
series=${KERNEL_SERIES:-}
case "$series" in ''|[0-9]*.[0-9]*) ;; *) die "KERNEL_SERIES '$series': want MAJOR.MINOR such as 6.1" ;; esac
if [ -n "$series" ]; then
  re="^linux-image-${series//./\\.}[.-].*-${flavour}-amd64-unsigned\$"
else
  re="^linux-image-[0-9].*-${flavour}-amd64-unsigned\$"
fi
# A suite the host's sources lack gets a package list of its own, from the same mirror: apt
# reads and writes only there (the host's lists and sources stay as they are).
suite=${KERNEL_SUITE:-}
[ -n "$suite" ] || case "$series" in 5.10) suite=bullseye ;; esac
apt_opts=()
if [ -n "$suite" ]; then
  case "$suite" in *[!a-z-]*) die "KERNEL_SUITE '$suite': want a Debian suite name such as bullseye" ;; esac
  state=$cache/apt/$suite
  mkdir -p "$state/lists/partial" "$state/cache/archives/partial"
  echo "deb http://deb.debian.org/debian $suite main" >"$state/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$state/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$state/lists" -o "Dir::Cache=$state/cache")
fi
newest() { apt-cache "${apt_opts[@]}" search --names-only "$re" 2>/dev/null | awk '{print $1}' | sort -V | tail -n 1; }
apt_update() { [ "$(id -u)" -ne 0 ] || apt-get "${apt_opts[@]}" update -qq >/dev/null 2>&1 || true; }
cached_deb() { find "$cache/debs" -maxdepth 1 -name "${1}_*.deb" 2>/dev/null | sort -V | tail -n 1; }
mkdir -p "$cache/debs" "$cache/kernels"

pick() {
  pkg=${KERNEL_PACKAGE:-}
  [ -z "$pkg" ] || return 0
  pkg=$(newest)
  if [ -z "$pkg" ]; then
    apt_update # a fresh machine may never have run apt-get update
    pkg=$(newest)
  fi
  if [ -z "$pkg" ]; then
    # Offline: the newest kernel already in the cache.
    pkg=$(find "$cache/kernels" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | grep -E "$re" | sort -V | tail -n 1 || true)
  fi
  [ -n "$pkg" ] || die "no package matches $re: run 'apt-get update' (needs Debian bookworm main + security)"
}

# Download $pkg into the cache unless it is there. Old kernel versions leave the mirror, so when
# the package list is stale the download 404s: refresh the list once and pick again.
dl_err=
fetch_deb() {
  local tmpd
  [ -z "$(cached_deb "$pkg")" ] || return 0
  [ -s "$cache/kernels/$pkg/kver" ] && return 0
  echo "fetch-kernel.sh: downloading $pkg" >&2
  tmpd=$(mktemp -d "$cache/debs/.dl.XXXXXX")
  chmod 0777 "$tmpd" # apt-get download drops to the _apt user when it can
  if (cd "$tmpd" && apt-get "${apt_opts[@]}" download -qq "$pkg" >/dev/null 2>"$tmpd/err"); then
    mv "$tmpd"/*.deb "$cache/debs/"
    rm -rf "$tmpd"
    return 0
  fi
  dl_err=$(cat "$tmpd/err")
  rm -rf "$tmpd"
  return 1
}

pick
if ! fetch_deb; then
  apt_update
  pick
  fetch_deb || { echo "$dl_err" >&2; die "apt-get download $pkg failed: check the name (apt-cache policy $pkg) and the mirror"; }
fi

dir=$cache/kernels/$pkg
exec 9>"$cache/kernels/.$pkg.lock"
flock 9 # two runs fetching the same kernel must not unpack into each other

if [ ! -s "$dir/kver" ]; then
  deb=$(cached_deb "$pkg")
  tmp=$(mktemp -d "$cache/kernels/.x.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  dpkg-deb -x "$deb" "$tmp" || die "dpkg-deb -x $deb failed: delete it and rerun to download again"
  # Bookworm kernels keep modules in /lib/modules, merged-/usr ones in /usr/lib/modules.
  if [ ! -d "$tmp/lib/modules" ] && [ -d "$tmp/usr/lib/modules" ]; then ln -s usr/lib "$tmp/lib"; fi
  kver=$(find "$tmp/lib/modules/" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | head -n 1)
  [ -n "$kver" ] && [ -f "$tmp/boot/vmlinuz-$kver" ] || die "$deb has no boot/vmlinuz-<kver> + lib/modules/<kver>: not a kernel image package?"
  depmod -b "$tmp" "$kver" || die "depmod -b $tmp $kver failed"
  ln -s "boot/vmlinuz-$kver" "$tmp/vmlinuz-$kver"
  ln -s "boot/vmlinuz-$kver" "$tmp/vmlinuz"
  ln -s "boot/config-$kver" "$tmp/config-$kver"
  echo "$kver" >"$tmp/kver"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  trap - EXIT
fi

kver=$(cat "$dir/kver")
cfg=$dir/config-$kver
[ -f "$cfg" ] || die "$cfg is missing: the package has no /boot/config; pick another with KERNEL_PACKAGE"
summary=
for o in CONFIG_KPROBES CONFIG_KPROBE_EVENTS CONFIG_DEBUG_INFO_BTF CONFIG_DEBUG_INFO_BTF_MODULES \
         CONFIG_FPROBE CONFIG_PREEMPT_RT CONFIG_NF_CONNTRACK CONFIG_NF_NAT; do
  v=$(grep -E "^$o=" "$cfg" | cut -d= -f2 || true)
  summary="$summary $o=${v:-n}"
done
echo "fetch-kernel.sh: $pkg kver=$kver$summary" >&2
grep -q '^CONFIG_KPROBES=y' "$cfg" || die "$kver lacks CONFIG_KPROBES=y: the probes could not attach; pick another with KERNEL_PACKAGE"
grep -q '^CONFIG_DEBUG_INFO_BTF=y' "$cfg" || die "$kver lacks CONFIG_DEBUG_INFO_BTF=y: CO-RE needs BTF; pick another with KERNEL_PACKAGE"
echo "$dir"
