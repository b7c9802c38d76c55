#!/usr/bin/env bash
# End-to-end tests (root): every lab they make carries the `gmt` prefix. Leftovers of an
# earlier interrupted run are swept first, and the labs of this run are swept after it,
# whether it passed, failed, timed out or was interrupted (Ctrl-C, SIGTERM).
# One ava run per file, so the log shows where the time goes (a table at the end).
# Arguments: ava options (--timeout 30m, --match T) and test files (dist/test/e2e/X.test.js;
# none: all of them).
set -uo pipefail
cd "$(dirname "$0")/.."
sweep() { node dist/deploy/lab/main.js sweep --prefix gmt; }
sweep
ava=
trap 'trap - INT TERM; [ -n "$ava" ] && kill -TERM "$ava" 2>/dev/null; wait; sweep; exit 130' INT TERM
opts=()
files=()
while [ $# -gt 0 ]; do
  case $1 in
    --timeout | --match | -m) opts+=("$1" "$2"); shift 2 ;;
    -*) opts+=("$1"); shift ;;
    *) files+=("$1"); shift ;;
  esac
done
[ ${#files[@]} -eq 0 ] && files=(dist/test/e2e/*.test.js)
rc=0
summary=()
total_start=$SECONDS
for f in "${files[@]}"; do
  start=$SECONDS
  npx ava --config ava.e2e.config.js "${opts[@]}" "$f" &
  ava=$!
  wait "$ava"
  r=$?
  ava=
  [ "$r" -ne 0 ] && rc=$r
  summary+=("$(printf '%5d s  %s  %s' $((SECONDS - start)) "$([ "$r" -eq 0 ] && echo ok || echo FAIL)" "$(basename "$f")")")
done
sweep
echo "e2e per file:"
printf '  %s\n' "${summary[@]}"
printf '  %5d s  total\n' $((SECONDS - total_start))
exit "$rc"
