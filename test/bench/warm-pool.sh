#!/bin/bash
# Does a warm pool of veth pairs pay? Per attach: the veth made the way the agent makes it
# (peer created in the container's namespace with its name, MAC, MTU; address and offload
# in one nsenter) against one taken from a pool (pair made beforehand, host side up and
# offload off, not timed): its end moved into the namespace, renamed and configured there.
# Usage (root): bash test/bench/warm-pool.sh [N]
set -euo pipefail
N=${1:-20}
ns=gmx-pool-$$
ip netns add "$ns"
ip netns exec "$ns" sleep 600 &
holder=$!
cleanup() {
  kill "$holder" 2>/dev/null || true
  for i in $(seq "$N"); do ip link del "gmxa$i" 2>/dev/null || true; ip link del "gmxb$i" 2>/dev/null || true; done
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
sleep 0.2
pid=$(pgrep -P "$holder" || echo "$holder")
made=0
pooled=0
us() { echo $(($(date +%s%N) / 1000)); }
for i in $(seq "$N"); do
  s=$(us)
  sh -c 'ip link add "$2" mtu 1458 up type veth peer name eth0 address 0a:58:00:00:00:05 mtu 1458 netns "$1"
         nsenter -t "$1" -n sh -c "ip addr add 10.9.0.5/24 dev eth0 && ethtool -K eth0 tx off >/dev/null"
         ethtool -K "$2" tx off >/dev/null' sh "$pid" "gmxa$i"
  made=$((made + $(us) - s))
  ip link del "gmxa$i"
  ip link add "gmxb$i" mtu 1458 up type veth peer name "gpxb$i" mtu 1458
  ethtool -K "gmxb$i" tx off >/dev/null
  s=$(us)
  sh -c 'ip link set "$2" netns "$1"
         nsenter -t "$1" -n sh -c "ip link set \"\$1\" name eth0 address 0a:58:00:00:00:05 && ip addr add 10.9.0.5/24 dev eth0 && ethtool -K eth0 tx off >/dev/null" sh "$2"' sh "$pid" "gpxb$i"
  pooled=$((pooled + $(us) - s))
  ip link del "gmxb$i"
done
echo "per attach, mean of $N: veth made at attach $((made / N / 1000)).$((made / N % 1000 / 100)) ms; taken from a warm pool $((pooled / N / 1000)).$((pooled / N % 1000 / 100)) ms"
