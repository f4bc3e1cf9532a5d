#!/usr/bin/env bash
# bench.sh — every speed and memory goal, each beside its baseline in the same run.
# Root is needed for the kernel and netns benchmarks. Output: go test's benchmark
# lines (custom metrics: ports/s, p50-ms, p99-ms, ...), one section per goal.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
section() { printf '\n### %s\n' "$*"; }
bench() { go test -count=1 -run '^$' "$@" 2>&1 | grep -E '^(Benchmark|ok|FAIL|---)|SKIP' ; }

section "brain: durable port creates (8 clients), bulk creates, watch fan-out — SQLite and PostgreSQL"
bench -bench 'PortCreate|WatchFanout' -benchtime 2s ./brain/httpapi/
section "brain: one port change in a 10k-port network, 10 watchers: delta stream vs full-network stream (bytes/watcher, CPU per change)"
bench -bench PortChange10k -benchtime 200x ./brain/httpapi/
section "brain: snapshot of a pod with 100k remote ports, alone and ten at once (client decode included)"
bench -bench Snapshot100k -benchtime 3x ./brain/httpapi/
section "agent: convergence, brain POST port -> FDB entry in every remote gateway's kernel (8 pods)"
bench -bench Convergence -benchtime 200x ./test/e2e/
section "agent HA: kill -9 of a pod's designated forwarder -> first reply through the standby (median of 10), tuned vs fast timers vs memberlist defaults"
bench -bench Failover -benchtime 10x ./test/e2e/
section "agent HA: gossip false positives under a busy loop on every CPU (deaths, suspicions, DF changes per gateway-minute), tuned vs fast timers"
bench -bench GossipFalsePositives -benchtime 1x ./test/e2e/
section "vtep/linux: 100k remote MACs into one gateway, l2span vs bridge -batch of the same entries"
bench -bench Program100k -benchtime 3x ./vtep/linux/
section "hwvtep: 50k Ucast_Macs_Remote by the backend vs one raw JSON-RPC transact of the same rows (floor); Go heap peak, peak RSS of a process doing only the backend run"
bench -bench Ucast50k -benchtime 3x ./vtep/hwvtep/
section "bpf: ns per packet of each program path vs a no-op TC program"
bench -bench Programs -benchtime 20x ./bpf/
section "bpf: pps through veth+vxlan with and without the programs (needs a quiet machine)"
bench -bench Throughput -benchtime 1x ./bpf/
section "evpn: 100k remote MACs exported by l2span-bgpd -> extern_learn in FRR's kernel, vs FRR learning 100k from another FRR (same run; MACs/s min-max over 3 runs)"
uptime
bench -bench EVPNInstall100k -benchtime 3x -timeout 30m ./test/e2e/
