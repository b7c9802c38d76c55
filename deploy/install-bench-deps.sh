#!/usr/bin/env bash
# Debian packages only the benchmarks need, beside deploy/install-deps.sh: OVN (the
# anchor the join and attach figures are compared with, in the same run) and openssl
# (the old way of signing, measured beside the in-process one). Idempotent; services are
# not started (the benchmarks start their own daemons inside the lab's namespaces).
set -euo pipefail
pkgs=(ovn-central ovn-host openssl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-bench-deps: all ${#pkgs[@]} Debian packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-bench-deps: missing ${missing[*]}; run as root to install them" >&2
  exit 1
fi
echo "install-bench-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# keep apt from starting OVN's system services: the benchmarks run their own, per namespace
policy=/usr/sbin/policy-rc.d
made=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; made=1; fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if [ "$made" = 1 ]; then rm -f "$policy"; fi
echo "install-bench-deps: done"
