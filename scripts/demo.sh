#!/usr/bin/env bash
# demo.sh — a brain on its embedded SQLite store and a lab of two pods in
# network namespaces, one gateway agent each; a network is spanned across
# both with l2spanctl, and a VM in pod1 pings a VM in pod2 through the
# overlay. Ctrl-C (or the end, when not on a terminal) tears it all down.
#
#   underlay ns  l2sdemo-ul   bridge br0, brain on 198.51.100.1:9696
#   pod N        l2sdemo-pN-gw  ul0 198.51.100.1N (VTEP), seg<VNI> -> fabric
#                l2sdemo-pN-fab bridge seg (the pod-local segment)
#                l2sdemo-pN-vm  eth0 203.0.113.1N/24, 2001:db8::1N/64
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
P=l2sdemo
[ "$(id -u)" -eq 0 ] || { echo "demo: must run as root (it creates network namespaces)" >&2; exit 1; }
for b in l2span-brain l2span-agent l2spanctl; do
	[ -x "$BIN/$b" ] || { echo "demo: $BIN/$b missing: run make build" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/l2span-demo.XXXXXX)
PIDS=()
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
	set +e
	say "tearing down"
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	for ns in $(ip netns list | awk '{print $1}' | grep "^$P-"); do ip netns del "$ns"; done
	mountpoint -q "$WORK/bpffs" && umount "$WORK/bpffs"
	rm -rf "$WORK"
	echo "done."
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Leftovers of an interrupted earlier run.
for ns in $(ip netns list | awk '{print $1}' | grep "^$P-" || true); do ip netns del "$ns"; done

in_ns() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }
ctl() { in_ns ul "$BIN/l2spanctl" --brain http://198.51.100.1:9696 "$@"; }

# One gossip key for every gateway (docs/install.md): without it anyone on
# the underlay could join the gateways' gossip.
head -c 32 /dev/urandom | base64 >"$WORK/gossip.key"
chmod 600 "$WORK/gossip.key"

# The agents pin their eBPF programs and maps in a private bpffs.
mkdir -p "$WORK/bpffs" && mount -t bpf bpf "$WORK/bpffs"

say "underlay and brain (SQLite at $WORK/brain.db)"
ip netns add $P-ul
in_ns ul ip link set lo up
in_ns ul ip link add br0 type bridge
in_ns ul ip addr add 198.51.100.1/24 dev br0
in_ns ul ip link set br0 up
# Daemons start with `ip netns exec` itself (not through in_ns), so that $!
# is the daemon's PID (ip execs into it) and the teardown can stop it.
ip netns exec $P-ul "$BIN/l2span-brain" --listen 198.51.100.1:9696 --store "sqlite://$WORK/brain.db" >"$WORK/brain.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do ctl pod list >/dev/null 2>&1 && break; sleep 0.1; done
ctl pod list >/dev/null

say "pods, a shared_vxlan network spanning both AZs, its subnets"
ctl pod create pod1 --az az1
ctl pod create pod2 --az az2
ctl network create net1 --type shared_vxlan --az-hint az1,az2
VNI=$(ctl -o json network show net1 | jq -r .segmentation_id)
ctl subnet create net1 --cidr 203.0.113.0/24 --gateway-ip 203.0.113.1
ctl subnet create net1 --cidr 2001:db8::/64 --gateway-ip 2001:db8::1
echo "overlay VNI $VNI"

for i in 1 2; do
	say "pod$i: gateway host, pod-local segment, a VM"
	ip netns add $P-p$i-gw; ip netns add $P-p$i-fab; ip netns add $P-p$i-vm
	for ns in p$i-gw p$i-fab p$i-vm; do in_ns "$ns" ip link set lo up; done
	# underlay
	ip link add $P-u$i type veth peer name ul0 netns $P-p$i-gw
	ip link set $P-u$i netns $P-ul
	in_ns ul ip link set $P-u$i master br0 up
	in_ns p$i-gw ip addr add 198.51.100.1$i/24 dev ul0
	in_ns p$i-gw ip link set ul0 mtu 1600 up
	in_ns ul ip link set $P-u$i mtu 1600
	# pod-local segment: a bridge in the pod's fabric, the gateway's seg<VNI> on it
	in_ns p$i-fab ip link add seg type bridge
	in_ns p$i-fab ip link set seg up
	ip link add $P-s$i type veth peer name "seg$VNI" netns $P-p$i-gw
	ip link set $P-s$i netns $P-p$i-fab
	in_ns p$i-fab ip link set $P-s$i master seg up
	# the VM
	ip link add $P-v$i type veth peer name eth0 netns $P-p$i-vm
	ip link set $P-v$i netns $P-p$i-fab
	in_ns p$i-fab ip link set $P-v$i master seg up
	in_ns p$i-vm sysctl -qw net.ipv6.conf.eth0.accept_dad=0
	in_ns p$i-vm ip link set eth0 address fa:16:3e:00:00:0$i mtu 1450 up
	in_ns p$i-vm ip addr add 203.0.113.1$i/24 dev eth0
	in_ns p$i-vm ip addr add 2001:db8::1$i/64 dev eth0 nodad
	# the agent
	ip netns exec $P-p$i-gw "$BIN/l2span-agent" --pod pod$i --gateway-id pod$i-gw --brain-url http://198.51.100.1:9696 \
		--vtep 198.51.100.1$i --underlay-dev ul0 --gossip-bind 198.51.100.1$i:7946 \
		--gossip-seeds 198.51.100.11:7946,198.51.100.12:7946 --gossip-key-file "$WORK/gossip.key" --local-interface 'seg{vni}' \
		--state-dir "$WORK/agent$i" --metrics-listen 127.0.0.1:9697 --bpf-pin-dir "$WORK/bpffs/agent$i" \
		>"$WORK/agent$i.log" 2>&1 &
	PIDS+=($!)
done

say "before the brain knows the VMs' ports, nothing crosses"
if in_ns p1-vm ping -c 1 -W 1 203.0.113.12 >/dev/null 2>&1; then echo "unexpected: ping crossed"; exit 1; fi
echo "ping 203.0.113.12 from pod1's VM: no answer (as it should be)"

say "bind the two VMs' ports in the brain"
ctl port create net1 --pod pod1 --mac fa:16:3e:00:00:01 --ip 203.0.113.11 --ip 2001:db8::11
ctl port create net1 --pod pod2 --mac fa:16:3e:00:00:02 --ip 203.0.113.12 --ip 2001:db8::12

say "the span"
ctl network show net1
ctl gateway list

say "pod1's gateway kernel: FDB and neighbor entries for pod2's VM"
for i in 1 2; do
	other=$((3 - i))
	for _ in $(seq 100); do in_ns p$i-gw bridge fdb show dev "l2sv$VNI" 2>/dev/null | grep -q "fa:16:3e:00:00:0$other dst" && break; sleep 0.1; done
done
in_ns p1-gw bridge fdb show dev "l2sv$VNI"
in_ns p1-gw ip neigh show dev "l2sb$VNI"

say "VM in pod1 pings VM in pod2 across the overlay (IPv4, then IPv6)"
in_ns p1-vm ping -c 3 -i 0.2 203.0.113.12
in_ns p1-vm ping -6 -c 3 -i 0.2 2001:db8::12

say "pod1's gateway: eBPF isolation attached to seg$VNI, counters in its metrics"
in_ns p1-gw curl -s 127.0.0.1:9697/metrics | grep '^l2span_agent_bpf_packets_total' || true

if [ -t 0 ] && [ "${DEMO_HOLD:-1}" = 1 ]; then
	say "lab is up: try e.g. 'ip netns exec $P-p2-vm ping 203.0.113.11' or '$BIN/l2spanctl' in $P-ul; Ctrl-C tears it down"
	while true; do sleep 3600; done
fi
