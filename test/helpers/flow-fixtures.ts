// Scenarios that make every kind of flow computeFlows writes (two networks, gateways,
// containers, peers with endpoints, a tunnel not up yet, a MAC claimed twice), shared by
// the golden render test and the codec's byte comparison.
import { computeDesired, type DesiredPlane } from '../../agent/bridge/desired.js';
import type { LocalPort, Snapshot } from '../../agent/model.js';

export interface FlowScenario {
  s: Snapshot;
  d: ReturnType<typeof computeDesired>;
  locals: LocalPort[];
  present: Set<string>;
  /** port name -> OpenFlow number (every port of the scenario) */
  ofports: Map<string, number>;
}

const params = { bridge: 'gremesh0', datapath: 'netdev' as const, underlayMtu: 1500 };

/** the local ports a desired plane's gateways are (as localPorts reads them back from OVS) */
export function gatewayPorts(d: DesiredPlane): LocalPort[] {
  return d.gateways.map((g) => ({
    port: g.port,
    network: g.network,
    ip: g.ip,
    mac: g.mac,
    gateway: true,
    containerId: '',
  }));
}

function scenario(s: Snapshot, extra: LocalPort[], present?: (tunnels: string[]) => string[]): FlowScenario {
  const d = computeDesired(s, params);
  const locals: LocalPort[] = [...gatewayPorts(d), ...extra];
  const tunnels = d.tunnels.map((t) => t.port);
  const ports = [...tunnels, ...locals.map((l) => l.port)];
  return {
    s,
    d,
    locals,
    present: new Set(present ? present(tunnels) : tunnels),
    ofports: new Map(ports.map((p, i) => [p, 10 + i])),
  };
}

const peer = (i: number) => ({
  name: `h${i}`,
  underlayIp: `198.18.0.${10 + i}`,
  slices: [{ network: 'default', cidr: `198.18.${63 + i}.0/24` }],
  endpoints: [
    {
      network: 'default',
      host: `h${i}`,
      mac: `0a:58:c6:12:${(63 + i).toString(16)}:02`,
      ip: `198.18.${63 + i}.2`,
      containerId: '',
    },
    { network: 'blue', host: `h${i}`, mac: `0a:58:c6:13:0${i}:05`, ip: `198.19.${i}.5`, containerId: '' },
  ],
});

const base = (peers: Snapshot['peers']): Snapshot => ({
  revision: 7,
  host: 'h1',
  underlayIp: '198.18.0.11',
  networks: [
    { name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, greKey: 1, mtu: 0 },
    { name: 'blue', cidr: '198.19.0.0/16', hostPrefixLen: 24, greKey: 2, mtu: 0 },
  ],
  slices: [
    { network: 'default', cidr: '198.18.64.0/24' },
    { network: 'blue', cidr: '198.19.1.0/24' },
  ],
  peers,
});

const containers: LocalPort[] = [
  {
    port: 'gmaaaaaaaaaaa',
    network: 'default',
    ip: '198.18.64.2',
    mac: '0a:58:c6:12:40:02',
    gateway: false,
    containerId: 'a',
  },
  {
    port: 'gmbbbbbbbbbbb',
    network: 'blue',
    ip: '198.19.1.9',
    mac: '0a:58:c6:13:01:09',
    gateway: false,
    containerId: 'b',
  },
  { port: 'ghost', network: 'nonet', ip: '1.1.1.1', mac: '0a:00:00:00:00:01', gateway: false, containerId: '' },
];

export const FLOW_SCENARIOS: Record<string, FlowScenario> = {
  /** the e2e openflow test's: 2 networks, gateways, containers, 3 peers with endpoints */
  realistic: scenario(base([2, 3, 4].map(peer)), containers.slice(0, 2)),
  /** one tunnel not up yet, a port of an unknown network */
  partial: scenario(base([2, 3].map(peer)), containers, (t) => t.slice(0, 1)),
  /** a MAC claimed by two peers, a multicast endpoint MAC, an endpoint without an IP */
  claims: scenario(
    base([
      {
        ...peer(2),
        endpoints: [
          ...peer(2).endpoints,
          { network: 'default', host: 'h2', mac: '0a:00:00:00:00:99', ip: '198.18.65.3', containerId: '' },
          { network: 'default', host: 'h2', mac: '01:00:5e:00:00:01', ip: '198.18.65.4', containerId: '' },
          { network: 'default', host: 'h2', mac: '0a:00:00:00:00:98', ip: '', containerId: '' },
        ],
      },
      {
        ...peer(3),
        endpoints: [{ network: 'default', host: 'h3', mac: '0a:00:00:00:00:99', ip: '198.18.66.3', containerId: '' }],
      },
    ]),
    containers.slice(0, 1),
  ),
  /** no peers, no tunnels: locals only */
  alone: scenario(base([]), containers.slice(0, 2)),
  /** no locals at all (no slices): tunnels only */
  empty: scenario({ ...base([2].map(peer)), slices: [] }, []),
};
