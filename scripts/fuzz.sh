#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 5s).
# make check uses the default; make fuzz runs longer.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
status=0
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
		echo "fuzz: $pkg $target ($fuzztime)"
		if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/xenblk-fuzz.log 2>&1; then
			cat /tmp/xenblk-fuzz.log
			status=1
		fi
	done
done
exit $status
