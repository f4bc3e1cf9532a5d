#!/usr/bin/env bash
# soak.sh — the long form of TestChaos: port churn and faults (agents, brain
# replicas, ovsdb-server killed; a gateway's underlay cut) repeated for
# SOAK_DURATION (default 10m), every checkpoint exact. Daemons' memory and
# goroutines over time go to docs/soak.png (data: docs/soak.csv). Root needed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
dur=${SOAK_DURATION:-10m}
csv=${SOAK_CSV:-docs/soak.csv}
png=${SOAK_PNG:-docs/soak.png}
echo "soak: $dur of churn and faults; load: $(uptime)"
rc=0
L2SPAN_SOAK=$dur L2SPAN_SOAK_CSV=$PWD/$csv go test -count=1 -timeout 0 -run '^TestChaos$' -v ./test/e2e/ 2>&1 \
	| grep --line-buffered -vE 'restarted since the baseline' | tee "${SOAK_LOG:-/dev/null}" || rc=$?
echo "soak: load after: $(uptime)"
# One line per daemon: RSS (MB) on the left axis, goroutines on the right.
daemons=$(tail -n +2 "$csv" | cut -d, -f2 | sort -u)
plot=""
for d in $daemons; do
	plot="$plot '< grep \",$d,\" $csv' using 1:(\$3/1024) with lines title '$d RSS MB',"
	plot="$plot '< grep \",$d,\" $csv' using 1:4 axes x1y2 with lines dashtype 2 title '$d goroutines',"
done
gnuplot <<GP
set terminal png size 1400,700
set output '$png'
set datafile separator ','
set title 'TestChaos soak ($dur): resident memory (solid) and goroutines (dashed) per daemon; restarts start a new run'
set xlabel 'seconds'
set ylabel 'RSS (MB)'
set y2label 'goroutines'
set ytics nomirror
set y2tics
set key outside right
plot ${plot%,}
GP
echo "soak: $png"
exit "$rc"
