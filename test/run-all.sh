#!/usr/bin/env bash
# `make test`: lint alongside unit + integration (lint is CPU and the unit run mostly waits on
# processes it starts), then e2e; prints how long each part took.
set -uo pipefail
cd "$(dirname "$0")/.."
times=()
record() { times+=("$(printf '%5d s  %s' "$2" "$1")"); }
fail() {
  printf 'make test: %s failed\n' "$1"
  printf '  %s\n' "${times[@]}"
  exit "$2"
}
start=$SECONDS
lint_log=$(mktemp)
trap 'rm -f "$lint_log"' EXIT
# lint's output waits in a file (printed after the unit run); its last line is how long it took
( npm run --silent lint >"$lint_log" 2>&1; r=$?; echo $((SECONDS - start)) >>"$lint_log"; exit $r ) &
lint_pid=$!
npm run --silent test:unit
unit_rc=$?
record unit+integration $((SECONDS - start))
wait "$lint_pid"
lint_rc=$?
head -n -1 "$lint_log"
record 'lint (alongside)' "$(tail -n 1 "$lint_log")"
[ "$lint_rc" -ne 0 ] && fail lint "$lint_rc"
[ "$unit_rc" -ne 0 ] && fail unit+integration "$unit_rc"
start=$SECONDS
bash test/run-e2e.sh
r=$?
record e2e $((SECONDS - start))
[ "$r" -ne 0 ] && fail e2e "$r"
echo "make test, per part:"
printf '  %s\n' "${times[@]}"
