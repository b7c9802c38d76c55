#!/usr/bin/env bash
# Installs the Debian packages gremesh's lab, tests and demo need; with `bench`, also
# those only the benchmarks need. Idempotent: packages already present are skipped, apt
# runs only when something is missing.
#   deploy/install-deps.sh          # make demo, make test
#   deploy/install-deps.sh bench    # make bench: + OVN (the anchor the join figure is
#                                   # compared with, same run) and openssl (the old signing)
set -euo pipefail
pkgs=(
  openvswitch-switch   # ovsdb-server, ovs-vswitchd, ovs-vsctl, ovs-ofctl
  openvswitch-common   # ovs-docker (the manual recipe, for side-by-side benchmarks)
  docker.io            # dockerd, containerd, runc
  busybox-static       # the test image, imported with `docker import`
  iproute2             # ip, ip netns
  nftables             # nft (gateway masquerade)
  iptables             # Docker's DOCKER-USER chain, where the agent lets gateway traffic past a stock dockerd's FORWARD DROP
  ethtool              # tx checksum offload off on veths feeding the userspace datapath
  tcpdump              # counting frames in tests
  iperf3               # throughput benchmark
  iputils-ping         # ping (-M do for MTU checks)
  arping               # broadcast checks
  util-linux           # nsenter, setsid
  procps               # ps, used by leak checks
  python3              # crafts raw frames in the security tests
  etcd-server          # etcd 3.4: the EtcdStore's tests (a member on loopback, started by the test)
  etcd-client          # etcdctl, to look at what the coordinators wrote
  wireguard-go         # WireGuard in userspace: the lab's encryption (this kernel has no wireguard module)
  wireguard-tools      # wg: keys and peers by hand, `wg show` in troubleshooting
)
if [ "${1:-}" = bench ]; then pkgs+=(ovn-central ovn-host openssl); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} Debian packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root to install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Services are not started here: the lab starts its own daemons per namespace
# (policy-rc.d keeps apt from starting system ones where an init would)
policy=/usr/sbin/policy-rc.d
made=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; made=1
  trap '[ "$made" = 1 ] && rm -f "$policy"' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# no system etcd: gremesh's etcd members are started by its tests and lab, never at boot
if [[ " ${missing[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null; then
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi
echo "install-deps: done"
