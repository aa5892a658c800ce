#!/bin/bash
# The demo, inside the VM: trace while ctlab provokes the Kubernetes DNS race
# (a pod's A and AAAA queries to a ClusterIP DNAT'd to two CoreDNS endpoints),
# with --timeline: both packets' stages and their sender in the pod.
set -u
cd /out
lookups=${DEMO_LOOKUPS:-200}
echo "### ctprobe probes"
ctprobe probes
echo
echo "### sudo ctprobe trace --timeline -w demo.ctp   (while: ctlab run --scenario endpoints-2 --lookups $lookups)"
ctprobe trace --timeline -w demo.ctp &
tp=$!
for _ in $(seq 150); do [ -s demo.ctp ] && break; sleep 0.2; done
ctlab run --scenario endpoints-2 --lookups "$lookups" --min-clashes 10 --keep >lab.txt 2>&1
rc=$?
sleep 0.5
kill -INT "$tp"
wait "$tp"
echo
echo "### the kernel's view of the same lookups (ctlab)"
cat lab.txt
ctlab cleanup --all >/dev/null 2>&1
exit $rc
