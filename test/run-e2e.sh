#!/usr/bin/env bash
# End-to-end tests (root): every lab they make carries the `gmt` prefix. Leftovers of an
# earlier interrupted run are swept first, and the labs of this run are swept after it,
# whether it passed, failed, timed out or was interrupted (Ctrl-C, SIGTERM).
set -uo pipefail
cd "$(dirname "$0")/.."
sweep() { node dist/deploy/lab/main.js sweep --prefix gmt; }
sweep
trap 'trap - INT TERM; kill -TERM "$ava" 2>/dev/null; wait "$ava"; sweep; exit 130' INT TERM
npx ava --config ava.e2e.config.js "$@" &
ava=$!
wait "$ava"
rc=$?
sweep
exit "$rc"
