#!/bin/bash
# Runs inside the VM (e2e/metrics_test.go): ctprobe as an agent (--metrics,
# a rotated capture, JSON logs) with a real Prometheus server scraping it
# every second, while ctlab provokes races (endpoints-2: merged and
# nat-clash; snat-one-port: dropped DNS queries). Once the labs are done,
# the guest waits for a scrape that read every record the probes sent, and
# writes Prometheus's answers at that scrape beside the kernel's counters
# of each lab netns, for the host to compare. Then it replays each rotated
# capture file.
# Results go to /out: agent.{jsonl,log,rc}, prom.*.json, kstat.*, rot.*.
set -u
cd /out
port=9965
metrics=http://127.0.0.1:$port
prom=http://127.0.0.1:9090
mkdir -p /tmp/cap /tmp/prom

# Bad input: a rotation directory on a read-only filesystem.
mkdir -p /ro && mount -t tmpfs -o ro tmpfs /ro
ctprobe trace -w /ro/ctprobe.ctp --rotate-size 1MiB >rodir.out 2>rodir.err
echo $? >rodir.rc

echo "=== agent: ctprobe trace --metrics :$port -w /tmp/cap/ctprobe.ctp --rotate-size 8KiB --log-format json"
ctprobe trace -o json --metrics "127.0.0.1:$port" -w /tmp/cap/ctprobe.ctp --rotate-size 8KiB \
  --log-format json >agent.jsonl 2>agent.log &
agent=$!
for _ in $(seq 300); do
  grep -q '"kind":"plan"' agent.jsonl 2>/dev/null && break
  kill -0 "$agent" 2>/dev/null || break
  sleep 0.2
done
# Bad input: the address is taken.
ctprobe trace -q --metrics "127.0.0.1:$port" >busy.out 2>busy.err
echo $? >busy.rc

cat >/tmp/prometheus.yml <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: ctprobe
    static_configs:
      - targets: ['127.0.0.1:$port']
EOF
prometheus --config.file=/tmp/prometheus.yml --storage.tsdb.path=/tmp/prom \
  --web.listen-address=127.0.0.1:9090 >prometheus.log 2>&1 &
promserver=$!
# query EXPR [TIME]: Prometheus's answer as JSON.
query() { promtool query instant -o json ${2:+--time="$2"} "$prom" "$1"; }
for _ in $(seq 300); do
  query 'up{job="ctprobe"} == 1' 2>/dev/null | grep -q '"value"' && break
  sleep 0.5
done
query 'up{job="ctprobe"}' >prom.up.json 2>&1

curl -s -o healthz.body -w '%{http_code}' "$metrics/healthz" >healthz.code

for sc in endpoints-2 snat-one-port; do
  echo "=== ctlab run --scenario $sc"
  ctlab run --scenario "$sc" --lookups 60 --min-clashes 10 --max-lookups 600 --keep -o json >"lab.$sc.json" 2>"lab.$sc.err"
  echo $? >"lab.$sc.rc"
done
# The kernel's counters of each lab netns, by inode. Nothing runs in them
# any more: read again at the end, they must not have moved.
kstat() { # suffix
  for ns in $(ip netns list | awk '{print $1}'); do
    ino=$(ip netns exec "$ns" readlink /proc/self/ns/net | tr -dc 0-9)
    ip netns exec "$ns" cat /proc/net/stat/nf_conntrack >"kstat$1.$ino"
  done
}
kstat ''
# The comparison needs a scrape that began after the labs' last packet.
# The guest's date has whole seconds only, and a scrape later in the second
# that date names may still have begun before the last lookup (CI once
# compared a scrape that read the counters just before the last drop and
# counted its incident just after): the next whole second is after both.
t0=$(($(date +%s) + 1))

# A scrape after t0 at which every record the probes sent had been read
# (and its incidents counted: the exporter reads its progress first). Its
# timestamp is the time of the comparison.
ready='timestamp(ctprobe_records_read_total) > '$t0' and (ctprobe_records_sent_total - ctprobe_records_read_total) == 0'
ts=
for _ in $(seq 240); do
  ts=$(promtool query instant "$prom" "$ready" 2>/dev/null | sed -n 's/.*=> \([0-9.]*\) @.*/\1/p' | head -n 1)
  [ -n "$ts" ] && break
  sleep 0.5
done
echo "$ts" >prom.ts
echo "=== comparing at the scrape of $ts"
query 'sum by (netns) (ctprobe_incidents_total)' "$ts" >prom.incidents.json
query 'ctprobe_incidents_total' "$ts" >prom.incidents-by-race.json
query 'ctprobe_conntrack_stat_total' "$ts" >prom.conntrack.json
query 'ctprobe_dns_queries_lost_total' "$ts" >prom.dns.json
query 'ctprobe_records_lost_total' "$ts" >prom.lost.json
query 'ctprobe_probe_info' "$ts" >prom.probe.json
query 'ctprobe_build_info' "$ts" >prom.build.json
query 'ctprobe_records_sent_total - ctprobe_records_read_total' "$ts" >prom.unread.json
curl -s "$metrics/metrics" >metrics.txt
promtool check metrics <metrics.txt >promtool.out 2>&1
echo $? >promtool.rc
kstat .end
# What the agent used (docs/deploy.md, Resources): peak resident memory,
# CPU ticks, and the BPF memory the kernel charged for its maps.
grep -E '^(VmHWM|VmRSS)' "/proc/$agent/status" >agent.mem
awk '{print "cpu_ticks", $14 + $15}' "/proc/$agent/stat" >>agent.mem
bpftool map show 2>/dev/null | awk '/memlock/ {s += $NF} END {print "bpf_memlock_bytes", s}' >>agent.mem

kill -INT "$agent"
wait "$agent"
echo $? >agent.rc
kill "$promserver"
wait "$promserver"

echo "=== replaying the rotated capture"
ls -l /tmp/cap >rot.ls
n=0
for f in /tmp/cap/ctprobe.*.ctp; do
  n=$((n + 1))
  ctprobe report -r "$f" -o json >"rot.$n.jsonl" 2>"rot.$n.err"
  echo $? >"rot.$n.rc"
done
echo "$n" >rot.files
ctlab cleanup --all >/dev/null 2>&1
tail -n 3 agent.log
exit 0
