# shellcheck shell=bash
# Sourced by fetch-kernel.sh and build-initramfs.sh: apt for another Debian suite or another
# architecture than the host's, with a package list of its own in .cache/vm/apt/<suite>-<arch>/,
# so that the host's apt sources, lists and dpkg state stay as they are.
#
#   apt_state SUITE ARCH   sets apt_opts (empty for the host's own suite and architecture)
#   apt_refresh            apt-get update of that state (as root only; errors are ignored)
#
# The mirror is the host's own: the URI of the host's Debian archive (the apt source, one-line
# or deb822, with the component main and the host's release codename as its suite), with the
# host's -updates and -security of that release mapped onto SUITE. No mirror's host name is
# written here.

: "${repo:?apt-state.sh: set repo (the repository top directory) before sourcing it}"
apt_opts=()

# The host's Debian sources: "URI SUITE" per line, each suite of each enabled `deb` entry with
# the component main, from the files apt reads (apt-config: APT_CONFIG or Dir::Etc may move them).
host_apt_sources() {
  local f srclist parts
  eval "$(apt-config shell srclist Dir::Etc::sourcelist/f parts Dir::Etc::sourceparts/d 2>/dev/null)"
  for f in "${srclist:-/etc/apt/sources.list}" "${parts:-/etc/apt/sources.list.d/}"*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE COMPONENT...; options may hold spaces inside the brackets.
    awk '$1 == "deb" {
           i = 2
           if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
           for (c = i + 2; c <= NF && $c !~ /^#/; c++) if ($c == "main") { print $i, $(i + 1); break }
         }' "$f"
  done
  for f in "${parts:-/etc/apt/sources.list.d/}"*.sources; do
    [ -f "$f" ] || continue
    # deb822: blank-line separated stanzas of "Field: value" (comment lines start with #).
    awk 'BEGIN { RS = ""; FS = "\n" }
         {
           types = uris = suites = comps = ""; enabled = 1
           for (i = 1; i <= NF; i++) {
             if ($i ~ /^#/) continue
             split($i, kv, ":[ \t]*"); key = tolower(kv[1]); val = substr($i, length(kv[1]) + 2)
             sub(/^[ \t]+/, "", val)
             if (key == "types") types = val
             else if (key == "uris") uris = val
             else if (key == "suites") suites = val
             else if (key == "components") comps = val
             else if (key == "enabled" && val ~ /^no/) enabled = 0
           }
           if (!enabled || (" " types " ") !~ / deb / || (" " comps " ") !~ / main /) next
           nu = split(uris, u, /[ \t]+/); ns = split(suites, s, /[ \t]+/)
           for (a = 1; a <= nu; a++) for (b = 1; b <= ns; b++) print u[a], s[b]
         }' "$f"
  done
}

host_codename() { (. /etc/os-release && echo "${VERSION_CODENAME:-}"); }

apt_state() { # suite arch
  local suite=$1 arch=$2 codename uri s pocket
  codename=$(host_codename)
  [ -n "$codename" ] || { echo "apt-state.sh: /etc/os-release names no VERSION_CODENAME: not a Debian host?" >&2; return 1; }
  suite=${suite:-$codename}
  apt_opts=()
  [ "$suite" != "$codename" ] || [ "$arch" != "$(dpkg --print-architecture)" ] || return 0
  case "$suite" in *[!a-z-]*|'') echo "apt-state.sh: suite '$suite': want a Debian suite name such as trixie" >&2; return 1 ;; esac
  apt_state_dir=$repo/.cache/vm/apt/$suite-$arch
  mkdir -p "$apt_state_dir/lists/partial" "$apt_state_dir/cache/archives/partial"
  : >"$apt_state_dir/sources.list.new"
  while read -r uri s; do
    # The suite itself and its -updates and -security; not -backports, whose kernel is not the
    # suite's own.
    case "$s" in
      "$codename") pocket= ;;
      "$codename"-updates|"$codename"-security) pocket=-${s#"$codename"-} ;;
      *) continue ;;
    esac
    # sid (unstable) has no -updates or -security.
    case "$suite" in sid|unstable) [ -z "$pocket" ] || continue ;; esac
    echo "deb $uri $suite$pocket main" >>"$apt_state_dir/sources.list.new"
  done < <(host_apt_sources | sort -u)
  [ -s "$apt_state_dir/sources.list.new" ] ||
    { echo "apt-state.sh: the host's apt sources have no Debian archive for $codename: add one (deb URI $codename main)" >&2; return 1; }
  mv "$apt_state_dir/sources.list.new" "$apt_state_dir/sources.list"
  : >>"$apt_state_dir/status" # an empty dpkg status: nothing counts as installed
  apt_opts=(-o "Dir::Etc::SourceList=$apt_state_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State=$apt_state_dir" -o "Dir::State::Lists=$apt_state_dir/lists"
            -o "Dir::State::status=$apt_state_dir/status" -o "Dir::Cache=$apt_state_dir/cache"
            -o "APT::Architecture=$arch" -o "APT::Architectures=$arch")
}

apt_refresh() { [ "$(id -u)" -ne 0 ] || apt-get "${apt_opts[@]}" update -qq >/dev/null 2>&1 || true; }
