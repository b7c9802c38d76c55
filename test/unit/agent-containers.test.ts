// The container reconciler against fakes at its boundaries (Docker, OVS, the kernel):
// Docker is read in O(what changed).
import test from 'ava';
import * as fs from 'node:fs';
import { ContainerReconciler } from '../../agent/docker/containers.js';
import type { Snapshot } from '../../agent/model.js';
import { FileIpam } from '../../agent/docker/ipam.js';
import { silentLogger } from '../../common/log.js';
import { tempDir } from '../helpers/cli.js';
import { FakeOvsDriver, FakeRuntime, fakeLinks as links } from '../helpers/fakes.js';

const snap: Snapshot = {
  revision: 1,
  host: 'h1',
  underlayIp: '198.18.0.11',
  networks: [{ name: 'default', cidr: '198.18.64.0/18', hostPrefixLen: 24, greKey: 1, mtu: 0 }],
  slices: [{ network: 'default', cidr: '198.18.64.0/24' }],
  peers: [],
};

test('Docker in O(changed): a start inspects only that container, a die drops it; only a resync lists them all', async (t) => {
  const dir = tempDir('gmct');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rt = new FakeRuntime();
  for (let i = 0; i < 100; i++) rt.start(i);
  const ovs = new FakeOvsDriver();
  const c = new ContainerReconciler({
    runtime: rt,
    links,
    ovs,
    ipam: new FileIpam(`${dir}/ipam.json`),
    bridge: 'gremesh0',
    underlayMtu: 1500,
    userspace: true,
    stateDir: dir,
    snapshot: () => snap,
    onChange: async () => {},
    log: silentLogger,
  });
  c.start(3_600_000);
  await c.nextPass();
  t.is(rt.calls.running, 1, 'the first pass lists every container');
  t.is(ovs.state.interfaces.length, 100, '100 ports plugged');
  const id = rt.start(100);
  rt.calls.find = [];
  rt.emit('start', id);
  await c.nextPass();
  t.is(rt.calls.running, 1, 'no full list for one start');
  t.deepEqual(rt.calls.find, [id], 'one inspect, of that container');
  t.is(ovs.state.interfaces.length, 101);
  rt.containers.delete(id);
  rt.emit('die', id);
  rt.emit('destroy', id);
  const released = () => !Object.values(new FileIpam(`${dir}/ipam.json`).table.default ?? {}).includes(id);
  for (let i = 0; i < 100 && !(released() && ovs.state.interfaces.length === 100); i++)
    await new Promise((r) => setTimeout(r, 10));
  t.is(rt.calls.running, 1);
  t.is(ovs.state.interfaces.length, 100, 'its port is gone');
  t.false(Object.values(new FileIpam(`${dir}/ipam.json`).table.default ?? {}).includes(id), 'its address is released');
  rt.emit('reconnect', '');
  await c.nextPass();
  t.is(rt.calls.running, 2, 'dockerd came back: everything is listed again');
  c.stop();
});

test('a corrupt address table is moved aside, said loudly, and rebuilt from the bridge: no address handed out twice', async (t) => {
  const dir = tempDir('gmct');
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const rt = new FakeRuntime();
  for (let i = 0; i < 3; i++) rt.start(i);
  const ovs = new FakeOvsDriver();
  const opts = (ipam: FileIpam, log = silentLogger) => ({
    runtime: rt,
    links,
    ovs,
    ipam,
    bridge: 'gremesh0',
    underlayMtu: 1500,
    userspace: true,
    stateDir: dir,
    snapshot: () => snap,
    onChange: async () => {},
    log,
  });
  const first = new ContainerReconciler(opts(new FileIpam(`${dir}/ipam.json`)));
  first.start(3_600_000);
  await first.nextPass();
  first.stop();
  const before = new FileIpam(`${dir}/ipam.json`).table;
  t.is(Object.keys(before.default ?? {}).length, 3);
  fs.writeFileSync(`${dir}/ipam.json`, '{"default": {"198.18.64.2": '); // a torn write
  const ipam = new FileIpam(`${dir}/ipam.json`);
  t.truthy(ipam.corrupt, 'not silently read as empty');
  t.regex(ipam.corrupt!.reason, /not JSON/);
  t.true(fs.existsSync(ipam.corrupt!.movedTo), 'the bad file is kept aside');
  const said: string[] = [];
  const log = { ...silentLogger, error: (_o: object, m?: string) => void said.push(m ?? '') };
  const again = new ContainerReconciler(opts(ipam, log as typeof silentLogger));
  rt.start(3); // a new container arrives: it must not get an address the others hold
  again.start(3_600_000);
  await again.nextPass();
  again.stop();
  const after = new FileIpam(`${dir}/ipam.json`).table.default ?? {};
  t.is(Object.keys(after).length, 4);
  t.is(new Set(Object.keys(after)).size, 4, 'four containers, four addresses');
  for (const [ip, id] of Object.entries(before.default ?? {})) t.is(after[ip], id, `${ip} kept by its container`);
  t.regex(said.join('\n'), /address table was corrupt .* rebuilt from the 3 container ports/);
});
