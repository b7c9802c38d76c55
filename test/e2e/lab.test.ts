// The lab as a user drives it: gremesh-lab up/status/exec/down, real namespaces,
// real ovsdb-server/ovs-vswitchd and dockerd per host.
import test from 'ava';
import * as fs from 'node:fs';
import { BIN, cli, tempDir, isRoot } from '../helpers/cli.js';
import { labUp, downAlways } from '../helpers/lab.js';
import { IMAGE, OUTSIDE_IP, TEST_PREFIX, hostPaths } from '../../deploy/lab/plan.js';

const t0 = isRoot ? test : test.skip;

t0(
  'a 3-host lab: distinct OVS and Docker per host, underlay mesh, outside reachable, containers run, down leaves nothing',
  async (t) => {
    const lab = await labUp(3);
    downAlways(t, lab);
    const hosts = ['h1', 'h2', 'h3'];
    const ovsIds = new Set<string>();
    const dockerIds = new Set<string>();
    for (const h of hosts) {
      const show = await lab.exec(h, ['ovs-vsctl', 'show']);
      t.regex(show.stdout, /Bridge br-phy/);
      ovsIds.add((await lab.exec(h, ['ovs-vsctl', 'get', 'Open_vSwitch', '.', '_uuid'])).stdout.trim());
      // (.ID comes from the shared /etc/docker/key.json in 20.10; the data root is per instance)
      dockerIds.add((await lab.exec(h, ['docker', 'info', '--format', '{{.DockerRootDir}}'])).stdout.trim());
    }
    t.is(ovsIds.size, 3, 'three distinct ovsdb instances');
    t.is(dockerIds.size, 3, 'three distinct dockerd instances');
    // each dockerd sees only its own host's plugin directory at /run/docker/plugins
    for (const h of hosts) fs.writeFileSync(`${hostPaths(lab.dir, h).dockerPlugins}/marker-${h}`, '');
    for (const h of hosts) {
      const dockerd = lab.state.procs.find((p) => p.node === h && p.what === 'dockerd')!.pid;
      const seen = fs.readdirSync(`/proc/${dockerd}/root/run/docker/plugins`);
      t.deepEqual(seen, [`marker-${h}`], `${h}'s dockerd finds its own plugin directory`);
    }

    const ipOf = (h: string) => lab.state.plan.nodes.find((n) => n.name === h)!.ip;
    for (const a of hosts) {
      for (const b of hosts) {
        if (a === b) continue;
        const p = await lab.exec(a, ['ping', '-c', '1', '-W', '2', ipOf(b)], { reject: false });
        if (p.exitCode !== 0) await lab.exec(a, ['ping', '-c', '2', '-W', '2', ipOf(b)]); // first packet may meet ARP resolution
        t.pass(`${a} -> ${b}`);
      }
      await lab.exec(a, ['ping', '-c', '2', '-W', '2', OUTSIDE_IP]);
    }
    for (const h of hosts) {
      const id = (await lab.exec(h, ['docker', 'run', '-d', '--net=none', IMAGE, 'sleep', '600'])).stdout.trim();
      const st = (await lab.exec(h, ['docker', 'inspect', '-f', '{{.State.Running}}', id])).stdout.trim();
      t.is(st, 'true', `container runs on ${h}`);
    }
    const status = await cli(BIN.lab, ['status', '--dir', lab.dir, '-o', 'json']);
    t.is(status.exitCode, 0);
    const s = JSON.parse(status.stdout) as { nodes: { name: string; processes: { running: boolean }[] }[] };
    t.true(
      s.nodes
        .filter((n) => n.name.startsWith('h'))
        .every((n) => n.processes.length === 4 && n.processes.every((p) => p.running)),
    );

    const pids = lab.state.procs.map((p) => p.pid);
    await lab.down();
    const netns = fs.readdirSync('/run/netns').filter((n) => n.startsWith(`${lab.state.plan.prefix}-${lab.state.id}-`));
    t.deepEqual(netns, [], 'no namespace left');
    const stillAlive = pids.filter((p) => {
      try {
        return !fs.readFileSync(`/proc/${p}/stat`, 'utf8').includes(') Z');
      } catch {
        return false;
      }
    });
    t.deepEqual(stillAlive, [], 'no process left');
    const mounts = fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => l.includes(lab.dir));
    t.deepEqual(mounts, [], 'no mount left');
    t.deepEqual(fs.readdirSync(lab.dir), [], 'lab dir emptied (the test made it, so the lab keeps it)');
  },
);

t0(
  'sweep removes a lab left behind by a killed run, even one whose state file is gone; other prefixes untouched',
  async (t) => {
    // its own prefix: the other labs of this file run at the same time under the test prefix
    const prefix = 'gmsw';
    const dir = tempDir(prefix);
    const r = await cli(BIN.lab, ['up', '--hosts', '1', '--dir', dir, '--prefix', prefix], {}, 300_000);
    t.is(r.exitCode, 0, r.stderr);
    const state = JSON.parse(fs.readFileSync(`${dir}/state.json`, 'utf8')) as {
      id: string;
      procs: { pid: number }[];
    };
    const run = await cli(BIN.lab, [
      'exec',
      '--dir',
      dir,
      'h1',
      '--',
      'docker',
      'run',
      '-d',
      '--net=none',
      IMAGE,
      'sleep',
      '600',
    ]);
    t.is(run.exitCode, 0, run.stderr);
    // the run was killed before it could record anything: no state file to go by
    fs.rmSync(`${dir}/state.json`);
    const other = (await cli(BIN.lab, ['sweep', '--prefix', 'gmzz', '-o', 'json'])).stdout;
    t.deepEqual(JSON.parse(other), { labs: 0, processes: 0, namespaces: 0, dirs: 0 }, 'another prefix sweeps nothing');
    t.true(fs.readdirSync('/run/netns').some((n) => n.startsWith(`${prefix}-${state.id}-`)));
    const s = await cli(BIN.lab, ['sweep', '--prefix', prefix, '-o', 'json']);
    t.is(s.exitCode, 0, s.stderr);
    const res = JSON.parse(s.stdout.split('\n').filter(Boolean).at(-1)!) as { processes: number; namespaces: number };
    t.true(
      res.processes >= 4,
      `processes stopped: ${res.processes} (ovsdb, vswitchd, dockerd, containerd, shim, sleep)`,
    );
    t.true(res.namespaces >= 4, `namespaces removed: ${res.namespaces}`);
    t.deepEqual(
      fs.readdirSync('/run/netns').filter((n) => n.startsWith(`${prefix}-`)),
      [],
      'no namespace left',
    );
    const alive = state.procs
      .map((p) => p.pid)
      .filter((p) => {
        try {
          return !fs.readFileSync(`/proc/${p}/stat`, 'utf8').includes(') Z');
        } catch {
          return false;
        }
      });
    t.deepEqual(alive, [], 'no recorded process left');
    const mounts = fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .filter((l) => l.includes(dir));
    t.deepEqual(mounts, [], 'no mount left');
    t.false(fs.existsSync(dir), 'its dir is gone');
  },
);

t0('bad input: one clear line, non-zero exit, nothing made', async (t) => {
  const dir = tempDir(TEST_PREFIX);
  for (const n of ['0', '33', 'abc', '-1']) {
    const r = await cli(BIN.lab, ['up', '--hosts', n, '--dir', dir]);
    t.not(r.exitCode, 0, `--hosts ${n}`);
    t.regex(r.stderr, /^gremesh-lab: [^\n]*(hosts|option)[^\n]*$/, `--hosts ${n}`);
    t.false(fs.existsSync(`${dir}/state.json`));
  }
  const file = `${dir}/afile`;
  fs.writeFileSync(file, '');
  const nw = await cli(BIN.lab, ['up', '--hosts', '1', '--dir', `${file}/lab`]);
  t.is(nw.exitCode, 1);
  t.regex(nw.stderr, /^gremesh-lab: lab dir [^\n]* is not writable: ENOTDIR$/);

  const d = await cli(BIN.lab, ['down', '--dir', dir]);
  t.is(d.exitCode, 0);
  t.regex(d.stdout, /no lab in .*nothing to do/);
  const e = await cli(BIN.lab, ['exec', '--dir', dir, 'h1', '--', 'true']);
  t.is(e.exitCode, 1);
  t.regex(e.stderr, /no lab in/);
  const u = await cli(BIN.lab, ['frobnicate']);
  t.is(u.exitCode, 2);
  const h = await cli(BIN.lab, ['--help']);
  t.is(h.exitCode, 0);
  t.regex(h.stdout, /gremesh-lab up/);
  fs.rmSync(dir, { recursive: true, force: true });
});

t0('up over an existing lab is an error; exec of an unknown host names the known ones', async (t) => {
  const lab = await labUp(1);
  downAlways(t, lab);
  const again = await cli(BIN.lab, ['up', '--hosts', '1', '--dir', lab.dir]);
  t.is(again.exitCode, 1);
  t.regex(again.stderr, /already in .*gremesh-lab down/);
  const unk = await cli(BIN.lab, ['exec', '--dir', lab.dir, 'h9', '--', 'true']);
  t.is(unk.exitCode, 1);
  t.regex(unk.stderr, /unknown lab host "h9" \(known: out, ctl, h1\)/);
  const env = await cli(BIN.lab, ['env', '--dir', lab.dir, 'h1']);
  t.regex(env.stdout, /export DOCKER_HOST=unix:\/\//);
  const ex = await cli(BIN.lab, ['exec', '--dir', lab.dir, 'h1', '--', 'sh', '-c', 'exit 7']);
  t.is(ex.exitCode, 7, 'exec passes the exit code through');
});
