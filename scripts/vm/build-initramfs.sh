#!/usr/bin/env bash
# Build the VM lab's initramfs.
#
#   scripts/vm/build-initramfs.sh --kernel-dir D --out FILE.cpio.gz \
#       [--add SRC:DEST ...] [--prog NAME ...] --run GUEST_SCRIPT
#
# The result is two gzip'd newc cpio archives, concatenated (the kernel unpacks them in order):
#   base    bash (as /bin/sh), busybox-static, the kernel's netfilter/veth/vxlan/virtio modules with their
#           dependencies, and real glibc userland (ip, tc, nft, conntrack, iptables legacy + nft,
#           bpftool) with every shared library they need. Cached in .cache/vm/initramfs/ and
#           rebuilt only when the kernel, this script or those Debian packages change. For a
#           kernel of the host's architecture the userland is the host's own (libraries as ldd
#           lists them); for another (an arm64 kernel on an amd64 host) it comes from Debian's
#           packages of that architecture, unpacked into .cache/vm/userland/<arch>/ (libraries
#           as the ELF files name them: readelf).
#   overlay /init (guest-init.sh), GUEST_SCRIPT as /lab/run, and each --add SRC:DEST (a file or a
#           directory; symlinks are followed), and each --prog NAME (a host program with the shared
#           libraries ldd lists, for one run's needs: make bench's perf; host architecture only). Rebuilt every time: it
#           takes about a second (a few more with a --prog).
# The kernel replaces a base symlink (e.g. a busybox applet) with an overlay file of the same name
# instead of writing through it, so --add may shadow any applet.
#
# Env: VM_EXTRA_MODULES="mod1 mod2" adds kernel modules to the base (loaded at boot).
set -euo pipefail

die() { echo "build-initramfs.sh: $*" >&2; exit 1; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/scripts/vm
cache=$repo/.cache/vm/initramfs

kdir='' out='' run=''
adds=() extra_progs=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --kernel-dir) kdir=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --add) adds+=("${2:?}"); shift 2 ;;
    --prog) extra_progs+=("${2:?}"); shift 2 ;;
    --run) run=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[ -n "$kdir" ] && [ -n "$out" ] && [ -n "$run" ] || die "--kernel-dir, --out and --run are required (see --help)"
[ -s "$kdir/kver" ] || die "$kdir/kver missing: pass the directory printed by scripts/vm/fetch-kernel.sh"
[ -f "$run" ] || die "guest script $run not found"
kdir=$(cd "$kdir" && pwd)
kver=$(cat "$kdir/kver")
[ -d "$kdir/lib/modules/$kver" ] || die "$kdir/lib/modules/$kver missing: rerun scripts/vm/fetch-kernel.sh"
[ -s "$kdir/arch" ] || die "$kdir/arch missing: rerun scripts/vm/fetch-kernel.sh"
arch=$(cat "$kdir/arch")
case "$arch" in
  amd64) triplet=x86_64-linux-gnu ;;
  arm64) triplet=aarch64-linux-gnu ;;
  *) die "$kdir/arch: unknown architecture '$arch'" ;;
esac

# The guest's userland, from these Debian packages (the host's, or those of the kernel's architecture).
userland_pkgs=(bash busybox-static iproute2 iptables nftables conntrack bpftool)
"$repo/scripts/deps.sh" "${userland_pkgs[@]}" kmod cpio xz-utils zstd binutils

# Loaded at boot by guest-init.sh, in this order, each after what it needs: its dependencies and
# its soft dependencies (MODULE_SOFTDEP "pre:", which kmod's --show-depends lists and BusyBox
# modprobe does not follow: on the rt flavour libcrc32c, which nf_conntrack needs, fails with
# "unknown symbol" unless a crc32c provider is loaded first).
# Built-in ones are skipped; names this kernel lacks are reported and skipped.
# No filesystem module: the output disk is a raw tar.
modules=(
  virtio_pci virtio_blk virtio_rng         # output disk (virtio_pci is a module on 6.1); entropy
  nf_conntrack nf_nat nf_defrag_ipv4 nf_defrag_ipv6 nf_conntrack_netlink
  iptable_nat iptable_filter iptable_raw iptable_mangle
  ip6table_nat ip6table_filter ip6table_raw ip6table_mangle
  xt_tcpudp xt_statistic xt_nat xt_MASQUERADE xt_REDIRECT xt_conntrack xt_comment
  xt_addrtype xt_mark xt_CT xt_NFQUEUE nfnetlink_queue
  nf_tables nft_compat nft_nat nft_ct nft_numgen nft_chain_nat nft_masq nft_queue nft_redir
  veth vxlan dummy sch_netem
)
# shellcheck disable=SC2206 # word splitting of the env list is intended
[ -z "${VM_EXTRA_MODULES:-}" ] || modules+=($VM_EXTRA_MODULES)

# Programs copied with their shared libraries. xtables-*-multi are handled separately.
# bash becomes /bin/sh: Debian's busybox-static shell runs its own applet for any name it knows
# (ip, tc, nc ...) before looking at PATH, so under it the real ip would never run.
progs=(bash ip tc nft conntrack bpftool)

# root is where the userland comes from: empty for the host's own, else an unpacked tree of
# Debian's packages of the kernel's architecture (its paths are those of the host, below root).
root=
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
  [ "${#extra_progs[@]}" -eq 0 ] || die "--prog copies host programs: not for a $arch kernel"
  # shellcheck source=scripts/vm/apt-state.sh
  . "$here/apt-state.sh"
  mkdir -p "$repo/.cache/vm/userland"
  root=$(cd "$repo/.cache/vm/userland" && pwd -P)/$arch # canonical: readlink -f results start with it
fi

# Unpack userland_pkgs and what they depend on, for $arch, into $root (merged /usr, as on the
# host), unless the same package versions are there already. apt resolves the dependencies
# against an empty dpkg status of its own, so nothing of the host counts as installed.
# The packages apt would install, with their versions ("name (version"), one a line.
userland_closure() {
  apt-get "${apt_opts[@]}" -s install --no-install-recommends "${userland_pkgs[@]}" 2>/dev/null | awk '$1 == "Inst" {print $2, $3}'
}
foreign_userland() {
  local closure tmp d
  apt_state "" "$arch" || exit 1
  closure=$(userland_closure) || true
  if [ -z "$closure" ]; then
    apt_refresh
    closure=$(userland_closure) || true
  fi
  if [ -z "$closure" ]; then
    [ -s "$root/.packages" ] || die "cannot resolve the $arch packages of ${userland_pkgs[*]}: run as root with access to the Debian mirror"
    echo "build-initramfs.sh: no $arch package list; using the userland in $root" >&2
    return 0
  fi
  [ "$closure" != "$(cat "$root/.packages" 2>/dev/null)" ] || return 0
  echo "build-initramfs.sh: unpacking $(wc -l <<<"$closure") $arch packages into $root" >&2
  apt-get "${apt_opts[@]}" clean
  apt-get "${apt_opts[@]}" install --download-only -y -qq --no-install-recommends "${userland_pkgs[@]}" >/dev/null ||
    die "apt-get install --download-only of the $arch packages failed"
  tmp=$(mktemp -d "$root.XXXXXX")
  for d in "$apt_state_dir"/cache/archives/*.deb; do dpkg-deb -x "$d" "$tmp" || die "dpkg-deb -x $d failed"; done
  # Bookworm's packages still install into /bin, /sbin and /lib: merge them into /usr.
  for d in bin sbin lib; do
    if [ -d "$tmp/$d" ] && [ ! -L "$tmp/$d" ]; then
      mkdir -p "$tmp/usr/$d"; cp -a "$tmp/$d/." "$tmp/usr/$d/"; rm -rf "${tmp:?}/$d"
    fi
    ln -sfn "usr/$d" "$tmp/$d"
  done
  echo "$closure" >"$tmp/.packages"
  rm -rf "$root"
  mv "$tmp" "$root"
}

# Recreate the host's merged-/usr layout (bin -> usr/bin, lib64 -> usr/lib64, ...) so the paths
# ldd prints and the ELF interpreter path (/lib64/ld-linux-x86-64.so.2) resolve the same way.
toplinks=()
for d in bin sbin lib lib32 lib64 libx32; do [ -L "/$d" ] && toplinks+=("$d"); done
mirror_root() {
  local st=$1 d
  mkdir -p "$st/usr/bin" "$st/usr/sbin" "$st/usr/lib" "$st/usr/lib64"
  for d in "${toplinks[@]}"; do ln -sfn "$(readlink "/$d")" "$st/$d"; done
}

# Copy a file to STAGE/DEST, removing what is there first: writing through a busybox applet
# symlink would overwrite busybox itself.
put() { # stage src dest [mode]
  mkdir -p "$1$(dirname "$3")"
  rm -rf "$1$3"
  cp -L "$2" "$1$3"
  [ -z "${4:-}" ] || chmod "$4" "$1$3"
}

# The libraries (and loader) that the given ELF files (paths below root) need, one path per line.
libs_of() {
  if [ -z "$root" ]; then
    # With several files ldd prints a "file:" header before each; the loader line is "/path (0x...)".
    ldd "$@" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} NF == 2 && $1 ~ /^\// && $2 ~ /^\(0x/ {print $1}' | sort -u
    return
  fi
  # ldd cannot run another architecture's loader: follow each file's PT_INTERP and DT_NEEDED
  # through the library directories of root, breadth first.
  local -A seen=()
  local queue=("$@") f lib d found
  while [ "${#queue[@]}" -gt 0 ]; do
    f=${queue[0]}; queue=("${queue[@]:1}")
    while read -r lib; do
      found=
      case "$lib" in
        /*) found=$lib ;;
        *) for d in "$root/usr/lib/$triplet" "$root/usr/lib"; do
             [ ! -e "$d/$lib" ] || { found=${d#"$root"}/$lib; break; }
           done ;;
      esac
      [ -n "$found" ] || die "$f needs $lib, which no $arch package of ${userland_pkgs[*]} holds"
      [ -z "${seen[$found]:-}" ] || continue
      seen[$found]=1
      echo "$found"
      queue+=("$found")
    done < <(readelf -lW "$root$f" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p'
             readelf -dW "$root$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
  done
}

# Copy the program NAME (the host's, or root's) into STAGE at its real path (a PATH symlink to
# it stays a symlink) and print that path.
put_prog() { # stage name
  local src real d
  if [ -z "$root" ]; then
    src=$(command -v "$2") || die "$2 not found on the host: run scripts/deps.sh"
  else
    src=
    for d in /usr/sbin /usr/bin; do [ ! -e "$root$d/$2" ] || { src=$d/$2; break; }; done
    [ -n "$src" ] || die "$2 is in no $arch package of ${userland_pkgs[*]}"
  fi
  real=$(readlink -f "$root$src")
  real=${real#"$root"}
  put "$1" "$root$real" "$real"
  [ "$src" = "$real" ] || { rm -rf "$1$src"; mkdir -p "$1$(dirname "$src")"; ln -s "$real" "$1$src"; }
  echo "$real"
}

pack() { # stage_dir gzip_level [overlay] -> cpio.gz on stdout
  local st=$1 lvl=$2 skip=/nonexistent
  # The overlay leaves out the top-level links (bin -> usr/bin ...): the base has them, and an
  # overlay copy would make the kernel unlink and recreate them while unpacking.
  [ -z "${3:-}" ] || skip=$(printf './%s\n' "${toplinks[@]}")
  (cd "$st" && find . -mindepth 1 | grep -vxF -e "$skip" | LC_ALL=C sort |
     cpio --quiet -o -H newc -R 0:0) | gzip -n "-$lvl"
}

build_base() { # out_file
  local st=$1.stage m rel p dst v fam sfx
  rm -rf "$st"; mkdir -p "$st"
  mirror_root "$st"
  mkdir -p "$st"/{dev,proc,sys,run,tmp,out,lab,etc/lab,root,mnt,var}
  chmod 1777 "$st/tmp"

  # Real userland first; busybox applets fill in the remaining names afterwards.
  local files=()
  for p in "${progs[@]}"; do
    files+=("$(put_prog "$st" "$p")")
  done
  for v in legacy nft; do
    put "$st" "$root/usr/sbin/xtables-$v-multi" "/usr/sbin/xtables-$v-multi"
    files+=("/usr/sbin/xtables-$v-multi")
    for fam in iptables ip6tables; do
      for sfx in "" -save -restore; do ln -sfn "xtables-$v-multi" "$st/usr/sbin/$fam-$v$sfx"; done
    done
  done
  # Plain iptables/ip6tables are the nft variant, as on a default Debian 12 host.
  for fam in iptables ip6tables; do
    for sfx in "" -save -restore; do ln -sfn xtables-nft-multi "$st/usr/sbin/$fam$sfx"; done
  done
  # Match/target plugins are dlopen()ed, so ldd of the binaries does not see their libraries (libm...).
  local xtdir=/usr/lib/$triplet/xtables
  [ -d "$root$xtdir" ] || die "no xtables plugins in ${root:-the host}$xtdir"
  mkdir -p "$st$xtdir"
  cp -L "$root$xtdir"/*.so "$st$xtdir/"
  for p in "$root$xtdir"/*.so; do files+=("${p#"$root"}"); done
  while read -r p; do [ -e "$st$p" ] || put "$st" "$root$p" "$p"; done < <(libs_of "${files[@]}")

  ln -sfn bash "$st/usr/bin/sh"
  put "$st" "$root/bin/busybox" /usr/bin/busybox 0755
  # BusyBox lists applets with their install dirs (bin/sh, sbin/modprobe, usr/bin/timeout ...).
  # Another architecture's busybox cannot run here: the host's busybox-static, of the same
  # Debian release and so of the same configuration, lists them.
  while read -r p; do
    [ -e "$st/$p" ] || [ -L "$st/$p" ] || { mkdir -p "$st/$(dirname "$p")"; ln -s /usr/bin/busybox "$st/$p"; }
  done < <(/bin/busybox --list-full)
  [ -L "$st/bin/sh" ] || die "busybox did not provide /bin/sh"

  # Small config files the tools read.
  for p in /etc/protocols /etc/services /etc/ethertypes; do [ ! -f "$p" ] || put "$st" "$p" "$p"; done
  for p in /etc/iproute2 /usr/share/iproute2; do
    [ ! -d "$p" ] || { mkdir -p "$st$(dirname "$p")"; cp -rL "$p" "$st$p"; }
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$st/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$st/etc/group"
  printf '127.0.0.1 localhost\n::1 localhost\n' >"$st/etc/hosts"
  echo ctprobe-vm >"$st/etc/hostname"

  # Kernel modules: modprobe --show-depends gives each module's closure in load order. They are
  # stored uncompressed so BusyBox modprobe can load them, then depmod indexes just these.
  local mdir=$kdir/lib/modules/$kver loadable=() missing=() builtin=() order=() name
  local -A queued=()
  for m in "${modules[@]}"; do
    local deps
    if ! deps=$(modprobe -d "$kdir" -S "$kver" --show-depends "$m" 2>/dev/null); then
      missing+=("$m"); continue
    fi
    if ! grep -q '^insmod ' <<<"$deps"; then builtin+=("$m"); continue; fi
    loadable+=("$m")
    while read -r _ p _; do
      rel=${p#*/lib/modules/"$kver"/}
      name=$(basename "${rel%.ko*}")
      [ -n "${queued[$name]:-}" ] || { queued[$name]=1; order+=("$name"); }
      dst=$st/lib/modules/$kver/${rel%.ko*}.ko
      [ -e "$dst" ] && continue
      mkdir -p "$(dirname "$dst")"
      case "$p" in
        *.ko.xz) xz -dc "$p" >"$dst" ;;
        *.ko.zst) zstd -dcq "$p" >"$dst" ;;
        *.ko.gz) gzip -dc "$p" >"$dst" ;;
        *.ko) cp "$p" "$dst" ;;
        *) die "unexpected module file $p" ;;
      esac
    done < <(grep '^insmod ' <<<"$deps")
  done
  for f in modules.builtin modules.builtin.modinfo modules.order; do
    [ ! -f "$mdir/$f" ] || cp "$mdir/$f" "$st/lib/modules/$kver/"
  done
  depmod -b "$st" "$kver" || die "depmod on the staged modules failed"
  printf '%s\n' "${order[@]}" >"$st/etc/lab/modules"
  # dummy would otherwise create a dummy0 interface that labs do not expect.
  mkdir -p "$st/etc/modprobe.d"
  echo 'options dummy numdummies=0' >"$st/etc/modprobe.d/lab.conf"
  echo "build-initramfs.sh: $kver modules: ${#loadable[@]} to load (${#order[@]} with what they need), built in: ${builtin[*]:-none}; not in this kernel: ${missing[*]:-none}" >&2

  pack "$st" 6 >"$1.tmp"
  mv "$1.tmp" "$1"
  rm -rf "$st"
}

mkdir -p "$cache"
# The base is keyed on everything that goes into it.
if [ -n "$root" ]; then
  exec 8>"$repo/.cache/vm/.userland-$arch.lock"
  flock 8 # parallel builds share one unpacked userland
  foreign_userland
  userland_versions() { cat "$root/.packages"; }
else
  userland_versions() { dpkg-query -W "${userland_pkgs[@]}" libc6; }
fi
key=$({ cat "$0" "$here/apt-state.sh"; echo "$kdir $kver"; printf '%s\n' "${modules[@]}"; userland_versions; } | sha256sum | cut -c1-12)
base=$cache/base-$kver-$key.cpio.gz
exec 9>"$cache/.lock-$kver"
flock 9 # parallel builds for the same kernel share one base build
if [ ! -s "$base" ]; then
  rm -rf "$cache/base-$kver-"*.stage # left by an interrupted build
  echo "build-initramfs.sh: building base layer for $kver (once per kernel/package set)" >&2
  build_base "$base"
  # Older bases of this kernel are dead weight once the key changed.
  find "$cache" -maxdepth 1 -name "base-$kver-*.cpio.gz" ! -name "base-$kver-$key.cpio.gz" -delete
fi
flock -u 9

ov=$(mktemp -d "${TMPDIR:-/tmp}/ctprobe-ov.XXXXXX")
trap 'rm -rf "$ov"' EXIT
mirror_root "$ov"
put "$ov" "$here/guest-init.sh" /init 0755
put "$ov" "$run" /lab/run 0755
for a in "${adds[@]}"; do
  src=${a%%:*} dest=${a#*:}
  [ "$src" != "$a" ] && [ -n "$src" ] && [ "${dest#/}" != "$dest" ] || die "--add $a: expected SRC:/absolute/dest"
  [ -e "$src" ] || die "--add $a: $src does not exist (build it first)"
  if [ -d "$src" ]; then
    mkdir -p "$ov$(dirname "$dest")"; rm -rf "$ov$dest"; cp -rL "$src" "$ov$dest"
  else
    put "$ov" "$src" "$dest"
  fi
done
if [ "${#extra_progs[@]}" -gt 0 ]; then
  files=()
  for p in "${extra_progs[@]}"; do files+=("$(put_prog "$ov" "$p")"); done
  while read -r p; do put "$ov" "$p" "$p"; done < <(libs_of "${files[@]}")
fi
mkdir -p "$(dirname "$out")"
{ cat "$base"; pack "$ov" 1 overlay; } >"$out.tmp"
mv "$out.tmp" "$out"
echo "build-initramfs.sh: wrote $out ($(du -h "$out" | cut -f1), base $(du -h "$base" | cut -f1))" >&2
