#!/usr/bin/env bash
# Runs every fuzz target for a few seconds (FUZZTIME, default 3s), one after
# the other. A crash fails the script; the crashing input is written under
# the package's testdata/fuzz/<target>/ (commit it as a regression seed once
# the bug is fixed). The seed corpora also run in plain `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-3s}
targets=(
	"./brain/httpapi FuzzAPIRequest"
	"./brain FuzzInputRules"
	"./brain FuzzRanges"
	"./brain/api FuzzDecodeEvents"
	"./brain/jobs FuzzLoadConfig"
	"./agent FuzzReadKeyFile"
	"./agent FuzzReadCache"
	"./agent FuzzInterfaceTemplate"
	"./agent/gossip FuzzMetaUnmarshal"
	"./internal/flagfile FuzzApply"
	"./vtep/hwvtep FuzzPlanFromState"
	"./bpf FuzzGatewayReadBack"
)
start=$SECONDS
for t in "${targets[@]}"; do
	set -- $t
	echo "fuzz $2 ($1, $FUZZTIME)"
	if ! "$GO" test -count=1 -run '^$' -fuzz "^$2\$" -fuzztime "$FUZZTIME" "$1" >/tmp/l2span-fuzz.$$ 2>&1; then
		cat /tmp/l2span-fuzz.$$
		rm -f /tmp/l2span-fuzz.$$
		echo "fuzz $2 failed: see the input under $1/testdata/fuzz/$2/" >&2
		exit 1
	fi
done
rm -f /tmp/l2span-fuzz.$$
echo "fuzz: ${#targets[@]} targets in $((SECONDS - start))s"
