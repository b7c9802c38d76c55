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
  # it will hold a one-time join token: readable by root only, from the first byte
  (umask 077 && printf '# from "coordctl join %s -o env" on the coordinator host\nGREMESH_COORDINATOR=\nGREMESH_NAME=%s\nGREMESH_JOIN_TOKEN=\nGREMESH_CA_HASH=\n' \
    "$(hostname -s)" "$(hostname -s)" > /etc/default/gremesh-agent)
  echo "replace /etc/default/gremesh-agent with what 'coordctl join $(hostname -s) -o env' prints (keep mode 0600), then: systemctl enable --now gremesh-agent"
else
  echo "systemctl daemon-reload && systemctl enable --now gremesh-$role"
fi
