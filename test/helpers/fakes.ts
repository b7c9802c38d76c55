// Fakes at the agent's driver boundaries for unit tests. FakeOvsDriver: an in-memory OVS
// that typed operations change (ports get OpenFlow numbers), recording transactions and
// flow writes. fakeLinks: a kernel that accepts every link operation.
import type { LinkDriver } from '../../agent/net/link-driver.js';
import type { ContainerRuntime } from '../../agent/docker/runtime.js';
import type { ContainerInfo } from '../../agent/docker/attachment.js';
import type { OvsDriver } from '../../agent/ovs/driver.js';
import type { OvsOp } from '../../agent/ovs/ops.js';
import type { OvsState } from '../../agent/model.js';
import type { Flow } from '../../agent/ovs/flows/flow.js';
import { renderFlow, renderKey } from '../../agent/ovs/flows/render.js';

/** FakeOvsDriver: applies typed operations to an in-memory OVS, records transactions and flow changes. */
export class FakeOvsDriver implements OvsDriver {
  state: OvsState = { bridges: [], interfaces: [] };
  transactions: OvsOp[][] = [];
  flowSets: string[][] = [];
  flowUpdates: { remove: string[]; add: string[] }[] = [];
  private nextOfport = 1;
  async observe() {
    return structuredClone(this.state);
  }
  async apply(ops: OvsOp[]) {
    this.transactions.push(ops);
    for (const o of ops) {
      if (o.op === 'ensure-bridge') {
        this.state.bridges = this.state.bridges.filter((b) => b.name !== o.bridge);
        this.state.bridges.push({
          name: o.bridge,
          datapathType: o.datapath,
          failMode: o.failMode,
          protocols: o.protocols,
          externalIds: o.externalIds,
        });
      } else if (o.op === 'add-port' || o.op === 'set-interface') {
        const name = o.op === 'add-port' ? o.port : o.name;
        let it = this.state.interfaces.find((x) => x.name === name);
        if (!it) {
          if (o.op === 'set-interface') throw new Error(`no interface ${name}`);
          it = {
            name,
            bridge: o.bridge,
            type: '',
            ofport: this.nextOfport++,
            options: {},
            externalIds: {},
            portExternalIds: { ...(o.portExternalIds ?? {}) },
            bfdStatus: {},
            macInUse: '',
            mtu: 0,
            error: '',
            linkState: 'up',
            ifindex: 0,
          };
          this.state.interfaces.push(it);
        }
        const f = o.iface;
        if (f.type !== undefined) it.type = f.type;
        if (f.options !== undefined) it.options = { ...f.options };
        if (f.mac !== undefined) it.macInUse = f.mac;
        if (f.mtuRequest !== undefined) it.mtu = f.mtuRequest;
        Object.assign(it.externalIds, f.externalIds ?? {});
      } else {
        this.state.interfaces = this.state.interfaces.filter((x) => x.name !== o.port);
      }
    }
  }
  /** kept as ovs-ofctl text (the flows rendered, the removed ones as their delete_strict keys) */
  async replaceFlows(_b: string, flows: Flow[]) {
    this.flowSets.push(flows.map(renderFlow));
  }
  async updateFlows(_b: string, remove: Flow[], add: Flow[]) {
    this.flowUpdates.push({ remove: remove.map(renderKey), add: add.map(renderFlow) });
  }
  async flowCount() {
    return this.flowSets.at(-1)?.length ?? 0;
  }
  monitor() {
    return () => {};
  }
}

export const fakeLinks: LinkDriver = {
  ensureAddress: async () => {},
  mtuOfAddress: async () => 1500,
  sourceFor: async () => undefined,
  underlayOf: async () => undefined,
  ensureUnderlay: async () => {},
  plugContainer: async () => {},
  makeVeth: async () => {},
  activateContainer: async () => {},
  deleteLink: async () => {},
  linkExists: async () => false,
  sysctl: async () => {},
};

/** Docker as the container reconciler sees it: containers started by hand, events emitted by hand */
export class FakeRuntime implements ContainerRuntime {
  containers = new Map<string, ContainerInfo & { running: boolean }>();
  calls = { running: 0, existing: 0, find: [] as string[] };
  emit: (kind: string, id: string) => void = () => {};
  async running() {
    this.calls.running++;
    return [...this.containers.values()].filter((c) => c.running);
  }
  async existing() {
    this.calls.existing++;
    return new Set(this.containers.keys());
  }
  async find(ref: string) {
    this.calls.find.push(ref);
    return this.containers.get(ref);
  }
  watch(onEvent: (kind: string, id: string) => void) {
    this.emit = onEvent;
    return () => {};
  }
  /** the endpoints Docker lists on gremesh networks */
  dockerEndpoints = new Set<string>();
  async endpointsOfDriver() {
    return new Set(this.dockerEndpoints);
  }
  start(n: number) {
    const id = `${n.toString(16).padStart(11, '0')}${'a'.repeat(53)}`; // ports are named after the first 11 hex digits
    this.containers.set(id, {
      id,
      name: `web${n}`,
      pid: 1000 + n,
      running: true,
      networkMode: 'none',
      labels: { 'gremesh.network': 'default' },
    });
    return id;
  }
}
