#!/usr/bin/env bash
# `make test`: lint, unit + integration, then e2e; prints how long each part took.
set -uo pipefail
cd "$(dirname "$0")/.."
times=()
step() {
  local name=$1 start=$SECONDS
  shift
  "$@"
  local r=$?
  times+=("$(printf '%5d s  %s' $((SECONDS - start)) "$name")")
  if [ "$r" -ne 0 ]; then
    printf 'make test: %s failed\n' "$name"
    printf '  %s\n' "${times[@]}"
    exit "$r"
  fi
}
step lint npm run --silent lint
step unit+integration npm run --silent test:unit
step e2e bash test/run-e2e.sh
echo "make test, per part:"
printf '  %s\n' "${times[@]}"
