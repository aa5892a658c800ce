#!/bin/bash
# Runs inside the VM (e2e/pods_test.go): a real containerd with its CRI
# plugin, pods made with crictl on a CNI bridge, the lab's lookup client
# (ctlab lookup) run in them with crictl exec, and ctprobe naming the pod
# and container of every packet of every incident (issue 17).
#   kube-system/coredns-e2e  ctlab serve: the DNS endpoint
#   default/client-a         lookups to the ClusterIP 10.96.0.10, DNAT'd in the node's netns
#                            (forwarded: the clash is in the node's netns)
#   shop/client-b            lookups to 10.96.0.11, DNAT'd in the pod's own netns (a sidecar's
#                            rule; the clash is in the pod's netns, in the sender's context)
# Then: a trace that reaches no runtime names pods from cgroup paths alone; the pods and
# containerd gone, the capture still names them (ctprobe report -r).
# Results in /out: pod.NAME.{inspect.json,ctr.json,netns}, host.netns,
# pods.{jsonl,err,rc,ctp}, metrics.txt (the live trace's /metrics), report.{jsonl,txt}, fallback.{jsonl,err,rc}, lookups.*.json
set -u
cd /out
say() { echo "=== pods: $*"; }
sock=/run/containerd/containerd.sock
cr() { crictl --runtime-endpoint "unix://$sock" --timeout 60s "$@" 2>>crictl.err; }

mkdir -p /etc/containerd /etc/cni/net.d /var/lib/containerd /var/log/pods
# The CRI copies the node's resolv.conf into every pod.
echo "nameserver 10.96.0.10" >/etc/resolv.conf
# The native snapshotter copies layers (no overlay module); the sandbox image is the one
# imported below, so nothing is ever pulled.
cat >/etc/containerd/config.toml <<'TOML'
version = 2
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.overlayfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "ctprobe.test/lab:e2e"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    # The guest's root is the initramfs, which pivot_root cannot leave: runc moves the
    # container's root over it and chroots instead.
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        NoPivotRoot = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
TOML
cat >/etc/cni/net.d/10-lab.conflist <<'JSON'
{"cniVersion": "1.0.0", "name": "lab", "plugins": [{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
JSON
# kube-proxy's requirement: replies bridged from the DNS pod to a client pod pass the node's
# conntrack, which un-DNATs them.
sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1

start_containerd() {
  containerd --config /etc/containerd/config.toml >>containerd.log 2>&1 &
  ctrd=$!
  for _ in $(seq 300); do cr version >/dev/null && return 0; sleep 0.2; done
  say "containerd did not answer"; return 1
}
start_containerd || exit 1
ctr -n k8s.io images import --snapshotter native /lab/image.tar >import.log 2>&1 || { say "image import failed"; cat import.log; exit 1; }

# pod NAMESPACE NAME UID CONTAINER COMMAND...: a pod in a kubelet-style cgroup parent (cgroupfs
# driver, besteffort), with one container.
pod() {
  local ns=$1 name=$2 uid=$3 cname=$4; shift 4
  local cmd sb ctr
  cmd=$(printf '"%s",' "$@")
  printf '{"metadata":{"name":"%s","namespace":"%s","uid":"%s"},"log_directory":"/var/log/pods/%s","linux":{"cgroup_parent":"/kubepods/besteffort/pod%s"}}\n' \
    "$name" "$ns" "$uid" "$name" "$uid" >"pod.$name.config.json"
  printf '{"metadata":{"name":"%s"},"image":{"image":"ctprobe.test/lab:e2e"},"command":[%s],"log_path":"%s.log"}\n' \
    "$cname" "${cmd%,}" "$cname" >"pod.$name.ctr-config.json"
  sb=$(cr runp "pod.$name.config.json") || { say "runp $name failed"; return 1; }
  ctr=$(cr create "$sb" "pod.$name.ctr-config.json" "pod.$name.config.json") || { say "create $name failed"; return 1; }
  cr start "$ctr" >/dev/null || { say "start $name failed"; return 1; }
  cr inspectp "$sb" >"pod.$name.inspect.json"
  cr inspect "$ctr" >"pod.$name.ctr.json"
  echo "$sb" >"pod.$name.sandbox"
  echo "$ctr" >"pod.$name.container"
  local pid
  pid=$(grep -m1 -o '"pid": [0-9]*' "pod.$name.inspect.json" | grep -o '[0-9]*$')
  stat -L -c %i "/proc/$pid/ns/net" >"pod.$name.netns"
  echo "$pid" >"pod.$name.pid"
}
stat -L -c %i /proc/1/ns/net >host.netns
say "pods"
pod kube-system coredns-e2e 0b7d3c52-1f3e-4d8e-9a44-2c1f0e6d5a01 coredns /ctlab serve || exit 1
pod default client-a 5c2a8e41-7d19-4b6e-8f02-93d4e1a7b6c2 lookup /pause || exit 1
pod shop client-b 9e4f1b27-3a8c-4c5d-b1e0-7f26d9c84a13 lookup /pause || exit 1
dns=$(grep -m1 -o '"ip": "[0-9.]*"' pod.coredns-e2e.inspect.json | grep -o '[0-9.]*"$' | tr -d '"')
say "DNS pod at $dns"
iptables -t nat -A PREROUTING -d 10.96.0.10/32 -p udp --dport 53 -j DNAT --to-destination "$dns:53"
nsenter -t "$(cat pod.client-b.pid)" -n iptables -t nat -A OUTPUT -d 10.96.0.11/32 -p udp --dport 53 -j DNAT --to-destination "$dns:53"


# trace NAME FLAGS...: ctprobe in the background until it printed its plan.
trace() {
  local name=$1; shift
  ctprobe trace "$@" -o json >"$name.jsonl" 2>"$name.err" &
  tracer=$!
  for _ in $(seq 300); do
    grep -q '"kind":"plan"' "$name.jsonl" 2>/dev/null && return 0
    kill -0 "$tracer" 2>/dev/null || return 1
    sleep 0.2
  done
}
stop_trace() { kill -INT "$tracer"; wait "$tracer"; echo $? >"$1.rc"; }

# lookups NAME POD TARGET ROUNDS: batches of racing lookups in the pod's container until the
# trace printed an incident of this pod (its source address), ROUNDS batches at most.
lookups() {
  local name=$1 p=$2 target=$3 rounds=$4 ip
  ip=$(grep -m1 -o '"ip": "[0-9.]*"' "pod.$p.inspect.json" | grep -o '[0-9.]*"$' | tr -d '"')
  for i in $(seq "$rounds"); do
    cr exec -s "$(cat "pod.$p.container")" /ctlab lookup --target "$target" --lookups 50 -o json >"lookups.$name.$p.$i.json"
    grep '"kind":"incident"' "$name.jsonl" | grep -q "\"src\":\"$ip:" && return 0
  done
  say "no incident from $p after $rounds batches"
}

say "trace with the runtime"
trace pods --timeline -w pods.ctp --metrics 127.0.0.1:9965 || { say "ctprobe trace did not start"; cat pods.err; exit 1; }
lookups pods client-a 10.96.0.10:53 8
lookups pods client-b 10.96.0.11:53 8
curl -sS http://127.0.0.1:9965/metrics >metrics.txt 2>metrics.err
stop_trace pods

say "trace without the runtime (a socket where none answers; the pods still run)"
trace fallback --timeline --cri-socket /run/none.sock || { say "fallback trace did not start"; cat fallback.err; exit 1; }
lookups fallback client-a 10.96.0.10:53 8
stop_trace fallback

say "pods removed; the capture still names them"
for p in client-a client-b coredns-e2e; do
  cr stopp "$(cat "pod.$p.sandbox")" >/dev/null
  cr rmp "$(cat "pod.$p.sandbox")" >/dev/null
done
cr pods >pods-after.txt
kill "$ctrd"; wait "$ctrd"
ctprobe report -r pods.ctp -o json >report.jsonl 2>report.err
ctprobe report -r pods.ctp --no-color >report.txt 2>>report.err
exit 0
