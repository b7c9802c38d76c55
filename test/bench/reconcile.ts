// Benchmark: one reconcile pass against a real ovs-vswitchd (userspace datapath) with
// 32 peers and 200 endpoints (50 local ports on the bridge, 150 remote ones from
// peers): the first pass (builds everything), a pass with nothing to do, and a pass
// after one peer joined or left.
// Usage: node dist/test/bench/reconcile.js [--repeat 20] [--locals 50]
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';
import { BIN, cli, tempDir } from '../helpers/cli.js';
import { readState } from '../../deploy/lab/lab.js';
import { hostPaths } from '../../deploy/lab/plan.js';
import { createRunner, processesStarted } from '../../common/exec.js';
import { silentLogger } from '../../common/log.js';
import { OvsdbOvsDriver } from '../../agent/ovs/driver.js';
import { act, flow } from '../../agent/ovs/flows/flow.js';
import { OpenflowConnection } from '../../agent/ovs/openflow/connection.js';
import type { OvsOp } from '../../agent/ovs/ops.js';
import { IpLinkDriver } from '../../agent/net/link-driver.js';
import { Reconciler } from '../../agent/bridge/reconciler.js';
import type { Snapshot } from '../../agent/model.js';
import { formatIp, macFromIp, parseIp } from '../../common/ipv4.js';
import { summarize } from './stats.js';

const { values } = parseArgs({
  options: { repeat: { type: 'string', default: '20' }, locals: { type: 'string', default: '50' } },
});
const LOCALS = Number(values.locals);
const repeat = Number(values.repeat);
const dir = tempDir('gmr');
const up = await cli(BIN.lab, ['up', '--hosts', '1', '--dir', dir], {}, 600_000);
if (up.exitCode !== 0) throw new Error(up.stderr);
const node = readState(dir)!.plan.nodes.find((n) => n.name === 'h1')!;
const run = createRunner({ prefix: ['nsenter', `--net=/run/netns/${node.ns}`] });
const ovs = new OvsdbOvsDriver({ db: `unix:${hostPaths(dir, 'h1').dbSock}`, run, log: silentLogger });
ovs.start();
const PEERS = 32;
const snap = (peers: number): Snapshot => ({
  revision: peers,
  host: 'h1',
  underlayIp: '198.18.0.11',
  networks: [{ name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, greKey: 1, mtu: 0 }],
  slices: [{ network: 'default', cidr: '198.18.64.0/24' }],
  peers: Array.from({ length: peers }, (_, i) => ({
    name: `p${i}`,
    underlayIp: `198.18.1.${i + 1}`,
    slices: [{ network: 'default', cidr: `198.18.${65 + i}.0/24` }],
    endpoints: Array.from({ length: i < 22 ? 5 : 4 }, (_, j) => {
      const ip = parseIp(`198.18.${65 + i}.${10 + j}`)!;
      return { network: 'default', host: `p${i}`, mac: macFromIp(ip), ip: formatIp(ip), containerId: '' };
    }),
  })),
});
try {
  // LOCALS local ports, as the Docker attachment makes them (internal ports stand in for veths)
  const ops: OvsOp[] = [
    {
      op: 'ensure-bridge',
      bridge: 'gremesh0',
      datapath: 'netdev',
      failMode: 'secure',
      protocols: ['OpenFlow10', 'OpenFlow13', 'OpenFlow14'],
      externalIds: { 'gremesh-owner': 'agent' },
    },
  ];
  for (let i = 0; i < LOCALS; i++) {
    const ip = `198.18.64.${10 + i}`;
    ops.push({
      op: 'add-port',
      bridge: 'gremesh0',
      port: `lp${i}`,
      iface: {
        type: 'internal',
        externalIds: { 'gremesh-network': 'default', 'gremesh-ip': ip, 'gremesh-mac': macFromIp(parseIp(ip)!) },
      },
    });
  }
  await ovs.apply(ops);
  const r = new Reconciler({
    ovs,
    links: new IpLinkDriver(run),
    params: { bridge: 'gremesh0', datapath: 'netdev', underlayMtu: 1500 },
    log: silentLogger,
    resyncMs: 3_600_000,
    probeMs: 3_600_000,
  });
  const s0 = snap(PEERS);
  const endpoints = s0.peers.reduce((a, p) => a + p.endpoints.length, 0) + LOCALS;
  r.setSnapshot(s0);
  await r.nextPass();
  const first = r.lastPass!;
  console.log(
    `first pass (bridge, ${PEERS} GRE ports with BFD, gateway, ${first.flows} flows; ${endpoints} endpoints): ${first.ms} ms`,
  );
  const steady: number[] = [];
  const before = processesStarted();
  for (let i = 0; i < repeat; i++) {
    const p = (await r.pass())!;
    steady.push(p.ms);
  }
  const idleProcesses = processesStarted() - before;
  // the flow delta of a change through each writer, interleaved: one ovs-ofctl --bundle
  // process, or a native OpenFlow 1.4 bundle on the agent's persistent connection
  const openflow = new OpenflowConnection({
    socket: ovs.mgmtSocket('gremesh0')!,
    log: silentLogger,
    onReconnect: () => {},
  });
  openflow.start();
  for (let i = 0; i < 100 && !openflow.connected; i++) await new Promise((x) => setTimeout(x, 20));
  if (!openflow.connected) throw new Error('no OpenFlow connection to gremesh0');
  const change = { ofctl: [] as number[], native: [] as number[] };
  for (let i = 0; i < 2 * repeat; i++) {
    const native = i % 4 >= 2; // each writer sees a leave, then a join
    ovs.useOpenflow(native ? openflow : undefined);
    r.setSnapshot(snap(i % 2 === 0 ? PEERS - 1 : PEERS));
    await r.nextPass();
    change[native ? 'native' : 'ofctl'].push(r.lastPass!.ms);
  }
  // one container port's flows (4 added, then removed), the writer alone
  const from = { inPort: 900, dlSrc: '0a:58:c6:12:40:fe' };
  const port = [
    flow('classify', 100, { inPort: 900 }, [act.load('NXM_NX_REG6', 1), act.resubmit('portSecurity')]),
    flow('portSecurity', 100, { ...from, ethType: 'ip', nwSrc: '198.18.64.254' }, [act.resubmit('forward')]),
    flow('portSecurity', 100, { ...from, ethType: 'arp', arpSpa: '198.18.64.254', arpSha: from.dlSrc }, [
      act.resubmit('forward'),
    ]),
    flow('forward', 100, { reg6: 1, dlDst: from.dlSrc }, [act.output(900)]),
  ];
  const delta = { ofctl: [] as number[], native: [] as number[] };
  for (let i = 0; i < 4 * repeat; i++) {
    const native = i % 4 >= 2;
    ovs.useOpenflow(native ? openflow : undefined);
    const t0 = performance.now();
    if (i % 2 === 0) await ovs.updateFlows('gremesh0', [], port);
    else await ovs.updateFlows('gremesh0', port, []);
    delta[native ? 'native' : 'ofctl'].push(performance.now() - t0);
  }
  openflow.stop();
  const ss = summarize(steady);
  const sc = { ofctl: summarize(change.ofctl), native: summarize(change.native) };
  const sd = { ofctl: summarize(delta.ofctl), native: summarize(delta.native) };
  console.log(
    `pass with nothing to do: p50=${ss.p50} ms p99=${ss.p99} ms (n=${repeat}), processes started: ${idleProcesses}`,
  );
  console.log(
    `pass after one peer left/joined, flow delta by ovs-ofctl --bundle: p50=${sc.ofctl.p50} ms p99=${sc.ofctl.p99} ms; ` +
      `by a native OpenFlow bundle: p50=${sc.native.p50} ms p99=${sc.native.p99} ms (n=${repeat} each, interleaved)`,
  );
  console.log(
    `one container port's 4 flows added or removed: ovs-ofctl --bundle p50=${sd.ofctl.p50.toFixed(2)} ms p99=${sd.ofctl.p99.toFixed(2)} ms; ` +
      `native bundle p50=${sd.native.p50.toFixed(2)} ms p99=${sd.native.p99.toFixed(2)} ms (n=${2 * repeat} each)`,
  );
  r.stop();
  if (process.env.GREMESH_BENCH_JSON)
    fs.writeFileSync(
      process.env.GREMESH_BENCH_JSON,
      JSON.stringify(
        {
          peers: PEERS,
          endpoints,
          firstMs: first.ms,
          flows: first.flows,
          steady: ss,
          change: sc,
          delta: sd,
          idleProcesses,
        },
        null,
        2,
      ),
    );
} finally {
  ovs.stop();
  await cli(BIN.lab, ['down', '--dir', dir], {}, 600_000);
  fs.rmSync(dir, { recursive: true, force: true });
}
