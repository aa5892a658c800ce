#!/usr/bin/env bash
# Build ctprobe's container image: an OCI image from scratch holding only the static binary, as
# an OCI layout directory, with umoci (no container daemon).
#
#   scripts/image.sh [--arch amd64|arm64] [--version V] [--out DIR]
#
# The layout (default out/image) holds the image under two tags: V (default: `git describe`, as
# `make build` stamps the binary) and latest, which deploy/kubernetes/daemonset.yaml runs. Its
# entrypoint is /usr/bin/ctprobe, its user 0 (ctprobe needs root's capabilities; the DaemonSet
# grants five), its OCI labels name the version. Copy it anywhere with skopeo, e.g.
#   skopeo copy oci:out/image:latest docker-archive:ctprobe.tar:ctprobe:latest
# --arch builds the binary for that GOARCH (tracer/probe holds the BPF objects of both).
set -euo pipefail

die() { echo "image.sh: $*" >&2; exit 1; }
repo=$(cd "$(dirname "$0")/.." && pwd)
arch=amd64 version='' out=$repo/out/image
while [ "$#" -gt 0 ]; do
  case "$1" in
    --arch) arch=${2:?}; shift 2 ;;
    --version) version=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
case "$arch" in amd64|arm64) ;; *) die "--arch $arch: want amd64 or arm64" ;; esac
[ -n "$version" ] || version=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo dev)
# An OCI tag: letters, digits, _ . -; at most 128, not starting with . or -.
[[ "$version" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "--version $version is not a valid image tag"

"$repo/scripts/deps.sh" umoci
GO=${GO:-go}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "image.sh: building ctprobe $version for linux/$arch" >&2
if ! (cd "$repo" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch "$GO" build -trimpath \
      -ldflags "-s -w -X main.version=$version" -o "$work/ctprobe" ./cmd/ctprobe) 2>"$work/build.err"; then
  cat "$work/build.err" >&2
  die "the static binary does not build for $arch"
fi

rm -rf "$out"
mkdir -p "$(dirname "$out")"
ref=$out:$version
umoci init --layout "$out"
umoci new --image "$ref"
# umoci edits an image through an unpacked bundle: the binary is the only file of its one layer.
umoci unpack --image "$ref" "$work/bundle" >/dev/null
install -D -m 0755 "$work/ctprobe" "$work/bundle/rootfs/usr/bin/ctprobe"
umoci repack --image "$ref" "$work/bundle"
created=$(git -C "$repo" log -1 --format=%cI 2>/dev/null || date -u +%Y-%m-%dT%H:%M:%SZ)
umoci config --image "$ref" --os linux --architecture "$arch" \
  --config.entrypoint /usr/bin/ctprobe --config.cmd trace --config.user 0:0 \
  --config.exposedports 9965/tcp --created "$created" \
  --config.label org.opencontainers.image.title=ctprobe \
  --config.label org.opencontainers.image.version="$version" \
  --config.label org.opencontainers.image.description="eBPF tracer of Linux conntrack insertion races" \
  --history.created_by "scripts/image.sh --arch $arch --version $version"
umoci tag --image "$ref" latest
umoci gc --layout "$out"
echo "$out:$version"
