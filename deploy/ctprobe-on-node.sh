#!/usr/bin/env bash
# Run `ctprobe trace` once on one node of a Kubernetes cluster and stream its
# output here: a privileged pod in the host's PID namespace, pinned to the
# node, removed when it ends (Ctrl-C ends it).
#
#   deploy/ctprobe-on-node.sh NODE [trace flags...]
#   deploy/ctprobe-on-node.sh NODE --port 53 --timeline
#   deploy/ctprobe-on-node.sh --print NODE [trace flags...]   # print the pod (JSON), run nothing
#
# Env: CTPROBE_IMAGE (default ctprobe:latest: `make image`, then push or
# import it), CTPROBE_NAMESPACE (default ctprobe; labelled privileged by
# deploy/kubernetes/namespace.yaml), KUBECTL (default kubectl).
set -euo pipefail

print=
if [ "${1:-}" = --print ]; then print=1; shift; fi
if [ "$#" -lt 1 ] || [ "${1:-}" = -h ] || [ "${1:-}" = --help ]; then
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  [ "$#" -ge 1 ] && exit 0
  exit 2
fi
node=$1
shift
image=${CTPROBE_IMAGE:-ctprobe:latest}
namespace=${CTPROBE_NAMESPACE:-ctprobe}
# A pod name from the node's name: DNS-1123, at most 63 characters.
name=$(printf 'ctprobe-%s' "$node" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9-' '-' | cut -c 1-63 | sed 's/-*$//')

# json STRING: STRING as a JSON string.
json() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  s=${s//$'\r'/\\r}
  printf '"%s"' "$s"
}

args=$(json trace)
for a in "$@"; do args+=",$(json "$a")"; done

pod=$(cat <<EOF
{
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {"name": $(json "$name"), "namespace": $(json "$namespace"), "labels": {"app.kubernetes.io/name": "ctprobe-on-node"}},
  "spec": {
    "nodeName": $(json "$node"),
    "hostPID": true,
    "restartPolicy": "Never",
    "tolerations": [{"operator": "Exists"}],
    "containers": [{
      "name": $(json "$name"),
      "image": $(json "$image"),
      "args": [$args],
      "stdin": true,
      "stdinOnce": true,
      "securityContext": {"privileged": true},
      "volumeMounts": [
        {"name": "btf", "mountPath": "/sys/kernel/btf", "readOnly": true},
        {"name": "netns", "mountPath": "/run/netns", "readOnly": true, "mountPropagation": "HostToContainer"}
      ]
    }],
    "volumes": [
      {"name": "btf", "hostPath": {"path": "/sys/kernel/btf", "type": "Directory"}},
      {"name": "netns", "hostPath": {"path": "/run/netns", "type": "DirectoryOrCreate"}}
    ]
  }
}
EOF
)

if [ -n "$print" ]; then
  printf '%s\n' "$pod"
  exit 0
fi
kubectl=${KUBECTL:-kubectl}
command -v "$kubectl" >/dev/null || { echo "ctprobe-on-node.sh: $kubectl not found: install kubectl or set KUBECTL" >&2; exit 1; }
# The overrides replace the pod kubectl run would make; -i streams its
# output, --rm deletes it when ctprobe exits or Ctrl-C detaches.
exec "$kubectl" run "$name" --namespace "$namespace" --image "$image" --restart Never \
  --rm -i --quiet --overrides "$pod"
