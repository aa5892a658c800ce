#!/usr/bin/env bash
# Fetch a Debian kernel for the VM lab and unpack it into the cache.
#
#   scripts/vm/fetch-kernel.sh cloud|rt
#
# Picks the newest linux-image-<ver>-<flavour>-<arch>[-unsigned] that apt knows (KERNEL_PACKAGE=<name>
# forces one). KERNEL_ARCH is amd64 (default) or arm64; KERNEL_SERIES=6.1 picks the newest of one
# series; KERNEL_SUITE names another Debian suite (trixie, sid; KERNEL_SERIES=5.10 implies
# bullseye). Another suite or architecture than the host's gets a package list of its own from
# the host's own mirror (scripts/vm/apt-state.sh). It downloads the package once into
# .cache/vm/debs/ together with the packages of the same kernel it depends on (from Debian 14 on,
# the image package is empty and depends on linux-binary-<ver> with vmlinuz, linux-modules-<ver>
# with the .ko.xz modules and linux-base-<ver> with the config), unpacks them into
# .cache/vm/kernels/<package>/ and runs depmod there. The last line on stdout is that directory,
# which holds vmlinuz-<kver> (and a vmlinuz link), config-<kver>, lib/modules/<kver>/ and the files
# `kver` and `arch`. Progress and the kernel's kprobe/BTF config go to stderr.
set -euo pipefail

die() { echo "fetch-kernel.sh: $*" >&2; exit 1; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=$repo/.cache/vm
# shellcheck source=scripts/vm/apt-state.sh
. "$repo/scripts/vm/apt-state.sh"

flavour=${1:-}
case "$flavour" in
  cloud|rt) ;;
  *) die "usage: $0 cloud|rt   (KERNEL_PACKAGE=linux-image-... forces a package)" ;;
esac
arch=${KERNEL_ARCH:-amd64}
case "$arch" in amd64|arm64) ;; *) die "KERNEL_ARCH '$arch': want amd64 or arm64" ;; esac

# kmod for depmod; xz-utils because newer Debian kernels ship .ko.xz modules.
"$repo/scripts/deps.sh" kmod xz-utils

# KERNEL_SERIES=6.1 picks the newest of one series (e.g. the 6.1 LTS kernel
# beside the newer default), without naming a package that leaves the mirror.
series=${KERNEL_SERIES:-}
case "$series" in ''|[0-9]*.[0-9]*) ;; *) die "KERNEL_SERIES '$series': want MAJOR.MINOR such as 6.1" ;; esac
if [ -n "$series" ]; then
  re="^linux-image-${series//./\\.}[.-].*-${flavour}-${arch}(-unsigned)?\$"
else
  re="^linux-image-[0-9].*-${flavour}-${arch}(-unsigned)?\$"
fi
suite=${KERNEL_SUITE:-}
[ -n "$suite" ] || case "$series" in 5.10) suite=bullseye ;; esac
apt_state "$suite" "$arch" || exit 1

# The kernel releases among the matching names, newest first; each its -unsigned package where
# there is one (the signed one of the same release holds the same kernel, signed for Secure Boot).
releases_of() { # candidate names on stdin
  local names release
  names=$(cat)
  for release in $(sed -E 's/^linux-image-//; s/-unsigned$//' <<<"$names" | sort -uVr); do
    if grep -qxF "linux-image-$release-unsigned" <<<"$names"; then echo "linux-image-$release-unsigned"; else echo "linux-image-$release"; fi
  done
}
newest_of() { releases_of | sed -n 1p; }
releases() { apt-cache "${apt_opts[@]}" search --names-only "$re" 2>/dev/null | awk '{print $1}' | releases_of; }
newest() { releases | sed -n 1p; }
cached_deb() { find "$cache/debs" -maxdepth 1 -name "${1}_*_${arch}.deb" 2>/dev/null | sort -V | tail -n 1; }
mkdir -p "$cache/debs" "$cache/kernels"

pick() {
  pkg=${KERNEL_PACKAGE:-}
  [ -z "$pkg" ] || return 0
  pkg=$(newest)
  if [ -z "$pkg" ]; then
    apt_refresh # a fresh machine (or a fresh package list of its own) may never have been updated
    pkg=$(newest)
  fi
  if [ -z "$pkg" ]; then
    # Offline: the newest kernel already in the cache.
    pkg=$(find "$cache/kernels" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | grep -E "$re" | newest_of || true)
  fi
  [ -n "$pkg" ] || die "no package matches $re: run 'apt-get update' (needs Debian's main archive in the host's apt sources)"
}

# $pkg and the packages of the same kernel release it depends on (linux-binary-, linux-modules-,
# linux-base-<release>); the release is the name without linux-image- and -unsigned.
packages() {
  local release
  release=${pkg#linux-image-}
  release=${release%-unsigned}
  echo "$pkg"
  apt-cache "${apt_opts[@]}" depends "$pkg" 2>/dev/null |
    awk -v r="-$release" '$1 == "Depends:" && $2 ~ /^linux-[a-z]+-/ && substr($2, length($2) - length(r) + 1) == r {print $2}' | sort -u
}

# Download $pkg and its kernel packages into the cache unless they are there. Old kernel
# versions leave the mirror, so when the package list is stale the download 404s: refresh the
# list once and pick again.
dl_err=
fetch_debs() {
  local tmpd need=() p
  [ -s "$cache/kernels/$pkg/kver" ] && return 0
  mapfile -t debs < <(packages)
  for p in "${debs[@]}"; do [ -n "$(cached_deb "$p")" ] || need+=("$p"); done
  [ "${#need[@]}" -gt 0 ] || return 0
  echo "fetch-kernel.sh: downloading ${need[*]}" >&2
  tmpd=$(mktemp -d "$cache/debs/.dl.XXXXXX")
  chmod 0777 "$tmpd" # apt-get download drops to the _apt user when it can
  if (cd "$tmpd" && apt-get "${apt_opts[@]}" download -qq "${need[@]}" >/dev/null 2>"$tmpd/err"); then
    mv "$tmpd"/*.deb "$cache/debs/"
    rm -rf "$tmpd"
    return 0
  fi
  dl_err=$(cat "$tmpd/err")
  rm -rf "$tmpd"
  return 1
}

pick
if ! fetch_debs; then
  apt_refresh
  pick
  if ! fetch_debs; then
    # A mirror may list a release of the suite's -security or -updates whose files it does not
    # serve (seen on a fresh machine: bullseye-security's newest 5.10 gave 404): an older
    # release of the same series proves the same. A package named by KERNEL_PACKAGE is kept.
    failed=$pkg first_err=$dl_err
    [ -z "${KERNEL_PACKAGE:-}" ] || { echo "$first_err" >&2; die "apt-get download $pkg failed: check the name (apt-cache policy $pkg) and the mirror"; }
    for pkg in $(releases | sed 1d) ''; do
      [ -n "$pkg" ] || break
      fetch_debs && break
    done
    [ -n "$pkg" ] || { echo "$first_err" >&2; die "apt-get download $failed failed, and no older release of it downloads: check the mirror (apt-cache policy $failed)"; }
    echo "fetch-kernel.sh: $failed did not download; $pkg did" >&2
  fi
fi

dir=$cache/kernels/$pkg
exec 9>"$cache/kernels/.$pkg.lock"
flock 9 # two runs fetching the same kernel must not unpack into each other

if [ ! -s "$dir/kver" ]; then
  tmp=$(mktemp -d "$cache/kernels/.x.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  for p in "${debs[@]}"; do
    deb=$(cached_deb "$p")
    [ -n "$deb" ] || die "$p is not in $cache/debs: delete $dir and rerun to download again"
    dpkg-deb -x "$deb" "$tmp" || die "dpkg-deb -x $deb failed: delete it and rerun to download again"
  done
  # Bookworm kernels keep modules in /lib/modules, merged-/usr ones in /usr/lib/modules.
  if [ ! -d "$tmp/lib/modules" ] && [ -d "$tmp/usr/lib/modules" ]; then ln -s usr/lib "$tmp/lib"; fi
  kver=$(find "$tmp/lib/modules/" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | head -n 1)
  # The image and config are in /boot up to Debian 13, in /usr/lib/modules/<kver>/ from 14 on.
  image='' config=''
  for f in "boot/vmlinuz-$kver" "lib/modules/$kver/vmlinuz"; do [ ! -f "$tmp/$f" ] || image=$f; done
  for f in "boot/config-$kver" "lib/modules/$kver/config"; do [ ! -f "$tmp/$f" ] || config=$f; done
  [ -n "$kver" ] && [ -n "$image" ] || die "${debs[*]} hold no vmlinuz and lib/modules/<kver>: not a kernel image package?"
  depmod -b "$tmp" "$kver" || die "depmod -b $tmp $kver failed"
  ln -s "$image" "$tmp/vmlinuz-$kver"
  ln -s "$image" "$tmp/vmlinuz"
  [ -z "$config" ] || ln -s "$config" "$tmp/config-$kver"
  echo "$kver" >"$tmp/kver"
  echo "$arch" >"$tmp/arch"
  rm -rf "$dir"
  mv "$tmp" "$dir"
  trap - EXIT
fi
# Kernels unpacked before the arch file existed are amd64 ones.
[ -s "$dir/arch" ] || echo amd64 >"$dir/arch"

kver=$(cat "$dir/kver")
cfg=$dir/config-$kver
[ -f "$cfg" ] || die "$cfg is missing: the package has no /boot/config; pick another with KERNEL_PACKAGE"
summary=
for o in CONFIG_KPROBES CONFIG_KPROBE_EVENTS CONFIG_DEBUG_INFO_BTF CONFIG_DEBUG_INFO_BTF_MODULES \
         CONFIG_FPROBE CONFIG_PREEMPT_RT CONFIG_NF_CONNTRACK CONFIG_NF_NAT; do
  v=$(grep -E "^$o=" "$cfg" | cut -d= -f2 || true)
  summary="$summary $o=${v:-n}"
done
echo "fetch-kernel.sh: $pkg ($arch) kver=$kver$summary" >&2
grep -q '^CONFIG_KPROBES=y' "$cfg" || die "$kver lacks CONFIG_KPROBES=y: the probes could not attach; pick another with KERNEL_PACKAGE"
grep -q '^CONFIG_DEBUG_INFO_BTF=y' "$cfg" || die "$kver lacks CONFIG_DEBUG_INFO_BTF=y: CO-RE needs BTF; pick another with KERNEL_PACKAGE"
echo "$dir"
