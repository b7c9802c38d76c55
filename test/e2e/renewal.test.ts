// Certificates that renew: with a short --host-cert-ttl every agent renews over its
// current certificate again and again and stays up and reporting, its data plane never cut.
// make test: a 10 s lifetime (the least the coordinator allows; renewed at 60 %) for 20 s; make soak (GREMESH_SOAK=1): 30 s for 3 minutes.
import test from 'ava';
import * as fs from 'node:fs';
import { isRoot } from '../helpers/cli.js';
import { labUp, type TestLab } from '../helpers/lab.js';
import { waitUntil } from '../helpers/endpoint.js';
import { PingMesh } from '../helpers/ping-mesh.js';
import { agentLog, coordctl, joinAll, startCoordinator } from '../../deploy/lab/mesh.js';
import { IMAGE } from '../../deploy/lab/plan.js';

const serial = isRoot ? test.serial : test.skip;
const SOAK = process.env.GREMESH_SOAK === '1';
const TTL_S = Number(process.env.GREMESH_RENEW_TTL_S ?? (SOAK ? 30 : 10));
const RUN_S = Number(process.env.GREMESH_RENEW_RUN_S ?? (SOAK ? 180 : 20));
let lab: TestLab;

test.before(async () => {
  if (!isRoot) return;
  lab = await labUp(2);
  await startCoordinator(lab.dir, ['--host-cert-ttl', `${TTL_S}s`]);
  await joinAll(lab.dir, ['h1', 'h2']);
});
test.after.always(async () => {
  if (lab) await lab.down();
});

serial(
  `host certificates of ${TTL_S} s: agents renew them and stay up and reporting for ${RUN_S} s, no ping lost`,
  async (t) => {
    for (const h of ['h1', 'h2'])
      await lab.exec(h, [
        'docker',
        'run',
        '-d',
        '--net=none',
        '--name',
        `c-${h}`,
        '--label',
        'gremesh.network=default',
        IMAGE,
        'sleep',
        '3600',
      ]);
    interface Status {
      hosts: { name: string; state: string; lastSeenMs: string; certNotAfterMs: string; endpoints: string }[];
      warnings: string[];
    }
    const status = async () => JSON.parse((await coordctl(lab.dir, ['status', '-o', 'json'])).stdout) as Status;
    const ready = await waitUntil(async () => (await status()).hosts.every((h) => Number(h.endpoints) >= 2), 30_000);
    t.not(ready, undefined, 'both containers reported (beside the gateways)');
    /** the container's pid and address, once its interface is up (the agent raises it after its flows) */
    const member = async (h: string) => {
      const pid = (await lab.exec(h, ['docker', 'inspect', '-f', '{{.State.Pid}}', `c-${h}`])).stdout.trim();
      let ip: string | undefined;
      await waitUntil(async () => {
        const j = JSON.parse(
          (await lab.exec(h, ['nsenter', '-t', pid, '-n', 'ip', '-j', '-4', 'addr', 'show', 'eth0'], { reject: false }))
            .stdout || '[]',
        ) as { flags?: string[]; addr_info: { local: string }[] }[];
        ip = j[0]?.flags?.includes('UP') ? j[0].addr_info[0]?.local : undefined;
        return ip !== undefined;
      }, 30_000);
      if (!ip) throw new Error(`c-${h} never came up`);
      return { name: h, pid, ip };
    };
    const mesh = new PingMesh(0.2);
    t.teardown(() => mesh.stop());
    mesh.update([await member('h1'), await member('h2')]);
    // the first pings of a pair may meet ARP resolution: start counting once both directions answer
    const first = mesh.mark();
    await new Promise((r) => setTimeout(r, 3000));
    const warm = await mesh.lossSince(first, 1);
    t.true(
      warm.pairs.length === 2 && warm.pairs.every((p) => p.sent - p.lost > 0),
      `the containers ping each other: ${PingMesh.describe(warm)}`,
    );
    const from = mesh.mark();
    const seenAfter = new Map<string, number[]>();
    const end = Date.now() + RUN_S * 1000;
    while (Date.now() < end) {
      await new Promise((r) => setTimeout(r, 3000));
      const s = await status();
      for (const h of s.hosts) {
        t.is(h.state, 'up', `${h.name} up at ${Math.round((end - Date.now()) / 1000)} s before the end`);
        t.true(Number(h.certNotAfterMs) > Date.now(), `${h.name} reports a certificate that has not expired`);
        seenAfter.set(h.name, [...(seenAfter.get(h.name) ?? []), Number(h.certNotAfterMs)]);
      }
      t.deepEqual(s.warnings, [], 'no certificate left to expire');
    }
    const loss = await mesh.lossSince(from);
    mesh.stop();
    t.log(PingMesh.describe(loss));
    t.is(loss.lost, 0, 'renewals never cut the data plane');
    for (const h of ['h1', 'h2']) {
      const renewed = fs
        .readFileSync(agentLog(lab.dir, h), 'utf8')
        .split('\n')
        .filter((l) => l.includes('"client certificate renewed"')).length;
      t.log(`${h}: ${renewed} renewals in ${RUN_S} s with ${TTL_S} s certificates`);
      t.true(renewed >= Math.floor(RUN_S / TTL_S) - 1, `${h} renewed ${renewed} times`);
      t.true(new Set(seenAfter.get(h)).size >= 2, `${h} reported new certificates`);
    }
  },
);
