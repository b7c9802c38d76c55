// The host tools the lab needs (and the Debian package of each), checked before `up`.
import * as fs from 'node:fs';
import { which } from '../../common/exec.js';
import { LabError } from './state.js';

/** Debian package providing each tool the lab needs. */
export const REQUIRED_TOOLS: Record<string, string> = {
  ip: 'iproute2',
  nsenter: 'util-linux',
  ethtool: 'ethtool',
  'ovsdb-tool': 'openvswitch-switch',
  'ovsdb-server': 'openvswitch-switch',
  'ovs-vswitchd': 'openvswitch-switch',
  'ovs-vsctl': 'openvswitch-switch',
  dockerd: 'docker.io',
  busybox: 'busybox-static',
  nft: 'nftables',
};

export const VSWITCH_SCHEMA_PATHS = ['/usr/share/openvswitch/vswitch.ovsschema'];

export async function checkTools(): Promise<void> {
  const missing: string[] = [];
  for (const [tool, pkg] of Object.entries(REQUIRED_TOOLS)) {
    if (!(await which(tool))) missing.push(`${tool} (Debian package ${pkg})`);
  }
  if (missing.length) {
    throw new LabError('LAB_MISSING_TOOL', `missing ${missing.join(', ')}: run deploy/install-deps.sh as root`);
  }
}

export function dockerCli(): string {
  // docker.io's client matches the 20.10 daemon; a newer client elsewhere on PATH works too
  return fs.existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
}
