// Fakes at the agent's driver boundaries for unit tests. FakeOvsDriver: an in-memory OVS
// that typed operations change (ports get OpenFlow numbers), recording transactions and
// flow writes. fakeLinks: a kernel that accepts every link operation.
import type { LinkDriver } from '../../agent/link-driver.js';
import type { OvsDriver } from '../../agent/ovs-driver.js';
import type { OvsOp } from '../../agent/ovs-ops.js';
import type { OvsState } from '../../agent/model.js';

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
  async replaceFlows(_b: string, flows: string[]) {
    this.flowSets.push(flows);
  }
  async updateFlows(_b: string, remove: string[], add: string[]) {
    this.flowUpdates.push({ remove, add });
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
