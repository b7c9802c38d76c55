// The OVSDB client and driver against a real ovsdb-server, started by the test in a temp
// dir (no root, no ovs-vswitchd: a second client plays its part where cur_cfg matters).
import test from 'ava';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { tempDir } from '../helpers/cli.js';
import { silentLogger } from '../../common/log.js';
import { OvsdbClient } from '../../agent/ovs/ovsdb/client.js';
import { MONITORED, OvsdbOvsDriver } from '../../agent/ovs/driver.js';
import { systemPath } from '../../common/exec.js';

const SCHEMA = '/usr/share/openvswitch/vswitch.ovsschema';
const have =
  fs.existsSync(SCHEMA) && spawnSync('ovsdb-server', ['--version'], { env: { PATH: systemPath() } }).status === 0;
const t0 = have ? test.serial : test.skip;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Server {
  dir: string;
  sock: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

async function startServer(dir = tempDir('gmdb')): Promise<Server> {
  const db = path.join(dir, 'conf.db');
  if (!fs.existsSync(db)) spawnSync('ovsdb-tool', ['create', db, SCHEMA], { env: { PATH: systemPath() } });
  const sock = path.join(dir, 'db.sock');
  const proc = spawn(
    'ovsdb-server',
    [db, `--remote=punix:${sock}`, `--unixctl=${path.join(dir, 'ctl')}`, `--log-file=${path.join(dir, 'log')}`],
    { stdio: 'ignore', env: { PATH: systemPath() } },
  );
  for (let i = 0; i < 200 && !fs.existsSync(sock); i++) await sleep(10);
  const exited = new Promise<void>((r) => proc.on('exit', () => r()));
  return {
    dir,
    sock,
    proc,
    async stop() {
      proc.kill('SIGKILL');
      await exited;
      fs.rmSync(sock, { force: true });
    },
  };
}

const waitFor = async (f: () => boolean, ms = 5000) => {
  const end = Date.now() + ms;
  while (!f() && Date.now() < end) await sleep(10);
  return f();
};

/** plays ovs-vswitchd's part: whenever next_cfg grows, sets cur_cfg to it */
function fakeVswitchd(sock: string): OvsdbClient {
  const c: OvsdbClient = new OvsdbClient({
    target: `unix:${sock}`,
    tables: { Open_vSwitch: ['next_cfg', 'cur_cfg'] },
    log: silentLogger,
    onChange: () => {
      const row = c.rows('Open_vSwitch')[0];
      if (row && Number(row.next_cfg) !== Number(row.cur_cfg))
        void c
          .transact([{ op: 'update', table: 'Open_vSwitch', where: [], row: { cur_cfg: Number(row.next_cfg) } }])
          .catch(() => {});
    },
  });
  c.start();
  return c;
}

t0('monitor fills the replica, updates follow, transact is atomic', async (t) => {
  const s = await startServer();
  t.teardown(() => s.stop());
  // ovsdb-tool create makes an empty database: the root row comes first
  const admin = new OvsdbClient({ target: `unix:${s.sock}`, tables: { Open_vSwitch: ['cur_cfg'] }, log: silentLogger });
  admin.start();
  await admin.whenReady();
  await admin.transact([{ op: 'insert', table: 'Open_vSwitch', row: {} }]);
  let changes = 0;
  const c = new OvsdbClient({
    target: `unix:${s.sock}`,
    tables: MONITORED,
    log: silentLogger,
    onChange: () => changes++,
  });
  c.start();
  t.teardown(() => {
    c.stop();
    admin.stop();
  });
  await c.whenReady();
  t.is(c.rows('Open_vSwitch').length, 1, 'the initial contents');
  t.is(c.rows('Bridge').length, 0);
  await admin.transact([
    { op: 'insert', table: 'Interface', row: { name: 'br0', type: 'internal' }, 'uuid-name': 'i' },
    { op: 'insert', table: 'Port', row: { name: 'br0', interfaces: ['named-uuid', 'i'] }, 'uuid-name': 'p' },
    { op: 'insert', table: 'Bridge', row: { name: 'br0', ports: ['named-uuid', 'p'] }, 'uuid-name': 'b' },
    {
      op: 'mutate',
      table: 'Open_vSwitch',
      where: [],
      mutations: [['bridges', 'insert', ['set', [['named-uuid', 'b']]]]],
    },
  ]);
  t.true(await waitFor(() => c.rows('Bridge').some((b) => b.name === 'br0')), 'an update reaches the replica');
  t.true(changes >= 2);
  // one failing operation: nothing of the transaction is applied
  await t.throwsAsync(
    c.transact([{ op: 'insert', table: 'Interface', row: { name: 'x1' }, 'uuid-name': 'x' }, { op: 'abort' }]),
    { message: /transaction failed/ },
  );
  await sleep(100);
  t.false(c.rows('Interface').some((i) => i.name === 'x1'));
});

t0(
  'the driver applies typed operations in one transaction and waits until ovs-vswitchd has applied them',
  async (t) => {
    const s = await startServer();
    t.teardown(() => s.stop());
    const boot = new OvsdbClient({
      target: `unix:${s.sock}`,
      tables: { Open_vSwitch: ['cur_cfg'] },
      log: silentLogger,
    });
    boot.start();
    await boot.transact([{ op: 'insert', table: 'Open_vSwitch', row: {} }]);
    boot.stop();
    const ovs = new OvsdbOvsDriver({
      db: `unix:${s.sock}`,
      run: async () => ({ stdout: '', stderr: '', exitCode: 0, durationMs: 0 }),
      log: silentLogger,
      applyTimeoutMs: 1500,
    });
    ovs.start();
    t.teardown(() => ovs.stop());
    const ops = [
      {
        op: 'ensure-bridge' as const,
        bridge: 'gremesh0',
        datapath: 'netdev',
        failMode: 'secure',
        protocols: ['OpenFlow14'],
        externalIds: { 'gremesh-owner': 'agent' },
      },
      {
        op: 'add-port' as const,
        bridge: 'gremesh0',
        port: 'gre-c612000c',
        iface: { type: 'gre', options: { remote_ip: '198.18.0.12' }, externalIds: { 'gremesh-owner': 'agent' } },
      },
    ];
    // nobody plays ovs-vswitchd: the change is committed, but apply says it was not applied
    await t.throwsAsync(ovs.apply(ops), { message: /ovs-vswitchd did not apply the change/ });
    const vswitchd = fakeVswitchd(s.sock);
    t.teardown(() => vswitchd.stop());
    await ovs.apply([
      { op: 'add-port', bridge: 'gremesh0', port: 'gm1', iface: { externalIds: { 'gremesh-ip': '198.18.64.5' } } },
    ]);
    const o = await ovs.observe();
    t.deepEqual(
      o.bridges.map((b) => [b.name, b.datapathType, b.failMode]),
      [['gremesh0', 'netdev', 'secure']],
    );
    t.deepEqual(o.interfaces.map((i) => `${i.bridge}/${i.name}`).sort(), [
      'gremesh0/gm1',
      'gremesh0/gre-c612000c',
      'gremesh0/gremesh0',
    ]);
    // a key someone else wrote stays; ours is merged in
    await ovs.apply([{ op: 'set-interface', name: 'gm1', iface: { externalIds: { 'other-tool': 'x' } } }]);
    await ovs.apply([{ op: 'set-interface', name: 'gm1', iface: { externalIds: { 'gremesh-ip': '198.18.64.6' } } }]);
    const gm1 = (await ovs.observe()).interfaces.find((i) => i.name === 'gm1')!;
    t.deepEqual(gm1.externalIds, { 'gremesh-ip': '198.18.64.6', 'other-tool': 'x' });
    await ovs.apply([
      { op: 'delete-port', bridge: 'gremesh0', port: 'gm1' },
      { op: 'delete-port', bridge: 'gremesh0', port: 'never-was' },
    ]);
    t.false(
      (await ovs.observe()).interfaces.some((i) => i.name === 'gm1'),
      'the port and its interface are gone',
    );
  },
);

t0('the server restarts: the client reconnects by itself and the replica is rebuilt', async (t) => {
  let s = await startServer();
  const dir = s.dir;
  let changes = 0;
  const c = new OvsdbClient({
    target: `unix:${s.sock}`,
    tables: MONITORED,
    log: silentLogger,
    backoffMaxMs: 200,
    onChange: () => changes++,
  });
  c.start();
  t.teardown(async () => {
    c.stop();
    await s.stop();
  });
  await c.whenReady();
  await c.transact([{ op: 'insert', table: 'Open_vSwitch', row: {} }]);
  const gen = c.generation;
  await s.stop();
  t.true(await waitFor(() => !c.connected), 'the loss is noticed');
  await t.throwsAsync(c.whenReady(300), { message: /not reachable/ });
  s = await startServer(dir);
  t.true(await waitFor(() => c.connected, 10_000), 'back by itself');
  t.true(c.generation > gen);
  t.is(c.rows('Open_vSwitch').length, 1, 'the replica holds what the database holds');
  await c.transact([{ op: 'insert', table: 'Interface', row: { name: 'after' } }]);
});

t0(
  'a server that accepts but never answers: the request times out, the connection is dropped and tried again',
  async (t) => {
    const dir = tempDir('gmdb');
    const sock = path.join(dir, 'mute.sock');
    let accepted = 0;
    const mute = net.createServer((conn) => {
      accepted++;
      conn.on('error', () => {});
    });
    await new Promise<void>((r) => mute.listen(sock, r));
    const c = new OvsdbClient({
      target: `unix:${sock}`,
      tables: MONITORED,
      log: silentLogger,
      timeoutMs: 300,
      backoffMaxMs: 100,
    });
    c.start();
    t.teardown(() => {
      c.stop();
      mute.close();
    });
    await t.throwsAsync(c.whenReady(1000), { message: /not reachable within 1000 ms/ });
    t.true(
      await waitFor(() => accepted >= 2, 3000),
      `reconnected after the unanswered monitor (${accepted} connections)`,
    );
    t.false(c.connected);
  },
);
