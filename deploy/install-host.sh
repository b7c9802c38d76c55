#!/usr/bin/env bash
# Installs gremesh on a real Debian 12 host (as root), from a checkout of this repository:
# the Debian packages, the build, the binaries on PATH and the systemd units.
#   deploy/install-host.sh coordinator    # the control plane host
#   deploy/install-host.sh agent          # every Docker host (then fill /etc/default/gremesh-agent)
set -euo pipefail
role=${1:-}
case "$role" in coordinator|agent) ;; *) echo "usage: $0 coordinator|agent" >&2; exit 2;; esac
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/deploy/install-deps.sh"
(cd "$here" && npm ci --no-audit --no-fund && npm run --silent build)
install -d /opt/gremesh
cp -a "$here/dist" "$here/node_modules" "$here/package.json" /opt/gremesh/
for b in gremesh-coordinator:coordinator/main.js coordctl:coordinator/cli.js gremesh-agent:agent/main.js; do
  printf '#!/bin/sh\nexec node /opt/gremesh/dist/%s "$@"\n' "${b#*:}" > "/usr/local/bin/${b%%:*}"
  chmod 755 "/usr/local/bin/${b%%:*}"
done
install -m 644 "$here/deploy/systemd/gremesh-$role.service" /etc/systemd/system/
if [ "$role" = agent ] && [ ! -f /etc/default/gremesh-agent ]; then
  printf 'GREMESH_COORDINATOR=\nGREMESH_NAME=%s\nGREMESH_JOIN_TOKEN=\n' "$(hostname -s)" > /etc/default/gremesh-agent
  echo "fill in /etc/default/gremesh-agent from 'coordctl join $(hostname -s)', then: systemctl enable --now gremesh-agent"
else
  echo "systemctl daemon-reload && systemctl enable --now gremesh-$role"
fi
