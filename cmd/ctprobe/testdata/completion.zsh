#compdef ctprobe
# zsh completion for ctprobe: ctprobe completion zsh > "${fpath[1]}/_ctprobe"
_ctprobe() {
	if (( CURRENT == 2 )); then
		local -a commands=(
			'trace:trace conntrack races live (needs root)'
			'report:read capture files written by trace -w (several nodes: one report)'
			'probes:show which kernel functions ctprobe would attach to (with --timeline), and how'
			'selftest:reproduce races in throwaway namespaces and check ctprobe against the kernel'\''s counters'
			'doctor:say which races will drop on this node, from its kernel, NAT rules, table and resolvers (no probes; exit 3 when some will)'
			'version:print the version, the kernel'\''s release and the capture and JSON format versions'
			'help:show a command'\''s synopsis, examples and flags'
			'completion:print a shell completion script (bash, zsh, fish)'
		)
		_describe command commands
		return
	fi
	local -a flags words
	case $words[2] in
	trace)
		flags=(
			'--all:print every new conntrack entry at confirm (tuples before and after NAT, verdict, socket) besides the races; with --timeline, every event of every probe point'
			'--attach:attach mode: auto (fentry where allowed, else kprobe), fentry or kprobe'
			'-c:stop after this many incidents (with --all: events)'
			'--count:same as -c'
			'--cri-socket:the container runtime'\''s CRI socket, a path on the host (default: the first that answers of [/run/containerd/containerd.sock /run/crio/crio.sock /run/cri-dockerd.sock])'
			'--duration:stop after this long (e.g. 30s; 0: until interrupted)'
			'--history:conntrack entries whose history the kernel keeps (--timeline)'
			'--host:only flows with this address at either end, before or after NAT'
			'--host-root:where the host'\''s / is mounted (a DaemonSet'\''s /host): prefixes the /proc, /run and cgroup paths that name pods, and the CRI socket'
			'--interval:print a summary this often (e.g. 10s, at least 100ms; 0: only on exit)'
			'--log-format:log format on stderr: text or json (log/slog records)'
			'--max-active:kretprobe instances per function in kprobe mode (concurrent calls beyond it are missed, and reported); given, it also keeps --all'\''s confirm probe on a kretprobe where kprobe.session (6.10+) would serve'
			'--metrics:serve Prometheus metrics on this address (e.g. :9965 or 127.0.0.1:9965) at /metrics, and a health check at /healthz (docs/metrics.md)'
			'--netns:only this network namespace (inode number, as lsns prints it)'
			'--no-color:never colour the output (colour is used only on a terminal, and not when NO_COLOR is set and not empty)'
			'--no-names:do not name pods and containers (no runtime calls, no /proc reads)'
			'-o:output format: text or json (one JSON object per line, docs/json-schema.md); report also takes pcapng (the packets, for Wireshark)'
			'--overwrite:with -w FILE, replace FILE if it exists (a regular file only)'
			'--pid:only conntrack entries created by this process (without --timeline: packets it sent from the netns where they clash or are confirmed)'
			'--port:only flows with this port at either end, before or after NAT'
			'--proto:only this protocol (udp, tcp, icmp, ... or a number)'
			'-q:no live output (with -w or --metrics): warnings, losses and summaries go to the log on stderr'
			'--ring-size:ring buffer size in bytes (a power of two)'
			'--rotate-count:with --rotate-size: keep this many capture files, removing the oldest (0: keep all)'
			'--rotate-size:with -w DIR/NAME.ctp: write numbered files (NAME.000001.ctp, ...) of about this size (e.g. 64MiB), each a complete capture'
			'--skip-point:optional probe points not to attach: nat, clash, origin (comma-separated)'
			'--timeline:follow every new conntrack entry (ct_in, NAT, confirm, and its sender across namespaces) so that an incident shows both packets'\'' stages and senders; costs time on every new flow, where the default mode probes only the clash path'
			'-w:also write every record to this capture file, a new file (0600; - for stdout)'
		)
		words=() ;;
	report)
		flags=(
			'--all:print every new conntrack entry at confirm (tuples before and after NAT, verdict, socket) besides the races; with --timeline, every event of every probe point'
			'--host:only flows with this address at either end, before or after NAT'
			'--netns:only this network namespace (inode number, as lsns prints it)'
			'--no-color:never colour the output (colour is used only on a terminal, and not when NO_COLOR is set and not empty)'
			'-o:output format: text or json (one JSON object per line, docs/json-schema.md); report also takes pcapng (the packets, for Wireshark)'
			'--outcome:only incidents with these outcomes (merged, nat-clash, dropped, port-moved, unknown; comma-separated); leaves out events and findings'
			'--pid:only incidents and findings with a packet this process sent (with --all: the ct_in and confirm events recorded in its context)'
			'--pod:only incidents and findings with a packet from this pod (NAMESPACE/NAME, NAME or UID, as the trace named it); leaves out events, which carry no pod'
			'--port:only flows with this port at either end, before or after NAT'
			'--proto:only this protocol (udp, tcp, icmp, ... or a number)'
			'-r:capture FILE written by ctprobe trace -w (- for standard input); repeat it, or give a glob, to report several nodes'\'' captures (or a rotated capture'\''s files) as one, in time order'
			'--race:only incidents of these races (numbers 0-5, comma-separated); leaves out events and findings, which have no race'
			'--since:only what happened at or after this TIME: RFC 3339 (2026-12-02T15:04:05Z, as JSON prints it), a local "2026-12-02 15:04:05", a time of day 15:04:05[.000001] (as text prints it: the first after the capture'\''s start), or +DURATION after the start'
			'--until:only what happened at or before this TIME (the forms of --since)'
		)
		words=() ;;
	probes)
		flags=(
			'--attach:attach mode to try: auto, fentry or kprobe'
			'--cri-socket:the container runtime'\''s CRI socket, a path on the host (default: the first that answers of [/run/containerd/containerd.sock /run/crio/crio.sock /run/cri-dockerd.sock])'
			'--host-root:where the host'\''s / is mounted (a DaemonSet'\''s /host): prefixes the /proc, /run and cgroup paths that name pods, and the CRI socket'
			'--no-names:do not name pods and containers (no runtime calls, no /proc reads)'
			'-o:output format: text or json'
		)
		words=() ;;
	selftest)
		flags=(
			'--all:print every new conntrack entry at confirm (tuples before and after NAT, verdict, socket) besides the races; with --timeline, every event of every probe point'
			'--lookups:number of parallel A+AAAA lookups'
			'--min-clashes:after --lookups, go on until the kernel counted this many clashes (at most 20 x --lookups)'
			'--no-color:never colour the output (colour is used only on a terminal, and not when NO_COLOR is set and not empty)'
			'-o:output format: text or json (one JSON object per line, docs/json-schema.md); report also takes pcapng (the packets, for Wireshark)'
			'--scenario:lab scenario (ctlab scenarios lists them)'
		)
		words=() ;;
	doctor)
		flags=(
			'--fill-threshold:conntrack-table-fill above this percentage of nf_conntrack_max'
			'--netns:only this network namespace: an inode number or a path (/run/netns/NAME, /proc/PID/ns/net)'
			'-o:output format: text or json'
		)
		words=() ;;
	version)
		flags=(
		)
		words=() ;;
	help)
		flags=(
		)
		words=(trace report probes selftest doctor version help completion) ;;
	completion)
		flags=(
		)
		words=(bash zsh fish) ;;
	esac
	if [[ $PREFIX == -* ]]; then
		_describe flag flags
	elif (( ${#words} )); then
		compadd -a words
	else
		_files
	fi
}
if [ "$funcstack[1]" = _ctprobe ]; then _ctprobe "$@"; else compdef _ctprobe ctprobe; fi
