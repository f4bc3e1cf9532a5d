#!/bin/sh
# deps.sh - install the Debian packages that l2span's tests and demo need.
#
# Idempotent and non-interactive: when every package is already installed it
# only runs dpkg-query and exits. Otherwise it runs `apt-get update` once and
# installs what is missing. Services that the packages would start at install
# time (postgresql, openvswitch) are blocked with a temporary policy-rc.d, so
# nothing is left running. Must run as root (CI runs as root; no sudo).
set -eu

PACKAGES="
postgresql
iproute2
iputils-ping
ethtool
tcpdump
procps
openvswitch-switch
openvswitch-vtep
openvswitch-common
clang
llvm
libbpf-dev
systemd
jq
curl
nftables
neutron-server
python3-openstackclient
rabbitmq-server
neutron-linuxbridge-agent
frr
gnuplot-nox
"

say() { printf 'deps: %s\n' "$*"; }
die() { printf 'deps: ERROR: %s\n' "$*" >&2; exit 1; }

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script needs a Debian system"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: this script needs a Debian system"

missing=""
for p in $PACKAGES; do
	status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case "$status" in
	ii*) ;;
	*) missing="$missing $p" ;;
	esac
done

if [ -z "$missing" ]; then
	say "all $(echo $PACKAGES | wc -w) packages already installed"
	exit 0
fi

say "missing:$missing"
[ "$(id -u)" -eq 0 ] || die "must run as root to install:$missing"

export DEBIAN_FRONTEND=noninteractive
export NEEDRESTART_MODE=a

# Block service start-up during the install. Keep any policy-rc.d that is
# already there (e.g. Docker's) and put it back afterwards.
POLICY=/usr/sbin/policy-rc.d
backup=""
restore_policy() {
	rm -f "${log:-}"
	if [ -n "$backup" ]; then
		mv -f "$backup" "$POLICY" && say "restored original $POLICY"
	else
		rm -f "$POLICY" && say "removed temporary $POLICY"
	fi
}
if [ -e "$POLICY" ]; then
	backup=$(mktemp /usr/sbin/.policy-rc.d.l2span.XXXXXX)
	cp -p "$POLICY" "$backup"
fi
trap 'restore_policy' EXIT
trap 'exit 130' INT TERM
printf '#!/bin/sh\n# l2span deps.sh: do not start services during install\nexit 101\n' >"$POLICY"
chmod 0755 "$POLICY"
say "installed temporary $POLICY (services will not start)"

log=$(mktemp /tmp/l2span-deps.XXXXXX.log)
run_logged() {
	# run "$@" with its output in $log; show the tail of it on failure
	if ! "$@" >"$log" 2>&1; then
		tail -n 40 "$log" >&2
		return 1
	fi
}

say "apt-get update"
run_logged apt-get update -q || die "apt-get update failed (see output above)"

say "apt-get install$missing"
# shellcheck disable=SC2086
run_logged apt-get install -y -q --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
	$missing || die "apt-get install failed for:$missing (see output above)"

still=""
for p in $missing; do
	status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case "$status" in
	ii*) ;;
	*) still="$still $p" ;;
	esac
done
[ -z "$still" ] || die "still not installed after apt-get:$still"
say "installed:$missing"
