// Stock Docker hosts and the real-host install path: the pure parts.
import test from 'ava';
import { computeDockerUserRules, diffDockerUser, IptablesDockerFirewall } from '../../agent/net/docker-firewall.js';
import { computeNftRuleset, parseGatewayAllow } from '../../agent/net/nat.js';
import { resolveAgentConfig } from '../../agent/config.js';
import { agentEnvFile } from '../../coordinator/agent-env.js';
import { parseEnvFile } from '../../deploy/lab/mesh.js';
import { coordinatorTls, hostOf, COORDINATOR_SNI } from '../../common/grpc-tls.js';
import { ExecError, type ExecOptions, type ExecResult } from '../../common/exec.js';

const gw = {
  port: 'gmgw1',
  network: 'default',
  greKey: 1,
  ip: '198.18.64.1',
  prefixLen: 18,
  mac: '0a:58:c6:12:40:01',
  mtu: 1458,
  networkCidr: '198.18.64.0/18',
};

test('DOCKER-USER: our two rules first; nothing to do when they are; others never touched', (t) => {
  const want = computeDockerUserRules(true);
  t.is(want.length, 2);
  const fresh = '-N DOCKER-USER\n-A DOCKER-USER -j RETURN\n';
  t.deepEqual(diffDockerUser(fresh, want), { add: [want[1]!, want[0]!], del: [] }, 'inserted at the top in reverse');
  const done = `-N DOCKER-USER\n${want.map((r) => `-A DOCKER-USER ${r}`).join('\n')}\n-A DOCKER-USER -j RETURN\n`;
  t.deepEqual(diffDockerUser(done, want), { add: [], del: [] });
  // an operator's rule above ours: ours are moved back to the top; theirs stays
  const theirs = `-N DOCKER-USER\n-A DOCKER-USER -s 10.9.0.0/16 -j DROP\n${want.map((r) => `-A DOCKER-USER ${r}`).join('\n')}\n`;
  const d = diffDockerUser(theirs, want);
  t.deepEqual(d.del, want);
  t.deepEqual(d.add, [want[1]!, want[0]!]);
  // duplicated by an earlier crash: all ours go, the right ones come back
  const dup = `-N DOCKER-USER\n-A DOCKER-USER ${want[0]}\n-A DOCKER-USER ${want[1]}\n-A DOCKER-USER ${want[0]}\n`;
  t.is(diffDockerUser(dup, want).del.length, 3);
  // no gateway any more: ours are removed, the rest stays
  t.deepEqual(diffDockerUser(done, computeDockerUserRules(false)), { add: [], del: want });
  t.deepEqual(diffDockerUser(fresh, computeDockerUserRules(false)), { add: [], del: [] });
});

function fakeRun(answers: Record<string, Partial<ExecResult> | Error>, calls: string[][]) {
  return async (argv: string[], _o?: ExecOptions): Promise<ExecResult> => {
    calls.push(argv);
    const a = answers[argv.join(' ')] ?? answers[argv.slice(0, 4).join(' ')];
    if (a instanceof Error) throw a;
    return { stdout: '', stderr: '', exitCode: 0, durationMs: 1, ...a };
  };
}

test('DOCKER-USER driver: no chain or no iptables means no Docker firewall, nothing made; otherwise typed inserts', async (t) => {
  const calls: string[][] = [];
  const noChain = new IptablesDockerFirewall(fakeRun({ 'iptables -w 5 -S DOCKER-USER': { exitCode: 1 } }, calls));
  t.false(await noChain.ensure(true));
  t.is(calls.length, 1);
  const missing = new ExecError(['iptables'], undefined, 'ENOENT', 1, false);
  t.false(await new IptablesDockerFirewall(fakeRun({ 'iptables -w 5 -S DOCKER-USER': missing }, [])).ensure(true));
  const calls2: string[][] = [];
  const fw = new IptablesDockerFirewall(
    fakeRun({ 'iptables -w 5 -S DOCKER-USER': { stdout: '-N DOCKER-USER\n-A DOCKER-USER -j RETURN' } }, calls2),
  );
  t.true(await fw.ensure(true));
  t.deepEqual(
    calls2.slice(1).map((c) => c.slice(0, 7).join(' ')),
    ['iptables -w 5 -I DOCKER-USER 1 -o', 'iptables -w 5 -I DOCKER-USER 1 -i'],
  );
});

test('gateway input policy: ICMP and replies in, the rest dropped; link-local not forwarded; --gateway-allow opens ports', (t) => {
  const r = computeNftRuleset([gw]);
  t.regex(r, /chain input \{\n\s+type filter hook input priority filter; policy accept;/);
  t.regex(
    r,
    /iifname "gmgw\*" ct state established,related accept\n\s+iifname "gmgw\*" ip protocol icmp accept\n\s+iifname "gmgw\*" drop/,
  );
  t.regex(r, /iifname "gmgw\*" ip daddr 169\.254\.0\.0\/16 drop/);
  t.true(r.indexOf('169.254.0.0/16 drop') < r.indexOf('iifname "gmgw1" ip saddr'), 'before the accept');
  const allow = parseGatewayAllow('tcp/53, udp/53,link-local');
  t.deepEqual(allow, [{ proto: 'tcp', port: 53 }, { proto: 'udp', port: 53 }, { linkLocal: true }]);
  const open = computeNftRuleset([gw], allow as never);
  t.regex(
    open,
    /iifname "gmgw\*" tcp dport 53 accept\n\s+iifname "gmgw\*" udp dport 53 accept\n\s+iifname "gmgw\*" drop/,
  );
  t.notRegex(open, /169\.254/);
  for (const bad of ['tcp', 'tcp/0', 'tcp/70000', 'icmp/1', 'sctp/5', 'linklocal'])
    t.regex(parseGatewayAllow(bad) as string, /--gateway-allow takes/, bad);
  t.notRegex(computeNftRuleset([]), /drop/, 'no gateway: no policy at all');
});

test('nftables: with the userspace datapath the host stack drops what container veths send (by name, not per attach)', (t) => {
  const r = computeNftRuleset([gw], [], true);
  t.regex(r, /table inet gremesh_ports \{\n\s+chain prerouting \{\n\s+type filter hook prerouting priority raw;/);
  t.regex(r, /table arp gremesh_ports \{\n\s+chain input \{/);
  t.is(r.match(/iifname "gm\*" iifname != "gmgw\*" drop/g)?.length, 2, 'ARP and IP, gateways excluded');
  t.regex(r, /delete table netdev gremesh_ports/, 'the per-veth chains of earlier agents go');
  const kernel = computeNftRuleset([gw], [], false);
  t.notRegex(kernel, /inet gremesh_ports|arp gremesh_ports/, 'kernel datapath: nothing to drop');
});

test('agent config: --gateway-allow from flag or GREMESH_GATEWAY_ALLOW; bad input is one line', (t) => {
  const base = { GREMESH_COORDINATOR: '10.0.0.5:7420', GREMESH_NAME: 'h1' };
  t.deepEqual(resolveAgentConfig({ ...base, GREMESH_GATEWAY_ALLOW: 'udp/53' }, {}).gatewayAllow, [
    { proto: 'udp', port: 53 },
  ]);
  t.deepEqual(resolveAgentConfig(base, {}).gatewayAllow, []);
  t.throws(() => resolveAgentConfig(base, { 'gateway-allow': 'tcp/x' }), { message: /--gateway-allow takes/ });
});

test('coordctl join -o env: exactly the agent’s EnvironmentFile, which the agent config reads back', (t) => {
  const text = agentEnvFile({
    coordinator: '10.0.0.5:7420',
    name: 'h1',
    token: 'abcdef.0123456789abcdef',
    caHash: `sha256:${'a'.repeat(64)}`,
  });
  const env = parseEnvFile(text);
  t.deepEqual(env, {
    GREMESH_COORDINATOR: '10.0.0.5:7420',
    GREMESH_NAME: 'h1',
    GREMESH_JOIN_TOKEN: 'abcdef.0123456789abcdef',
    GREMESH_CA_HASH: `sha256:${'a'.repeat(64)}`,
  });
  const cfg = resolveAgentConfig(env, {});
  t.is(cfg.caHash, `sha256:${'a'.repeat(64)}`);
  t.is(cfg.joinToken, 'abcdef.0123456789abcdef');
  t.false(cfg.insecure);
  const insecure = parseEnvFile(
    agentEnvFile({
      coordinator: 'c:1',
      name: 'h2',
      token: 'abcdef.0123456789abcdef',
      caHash: '',
      underlayIp: '10.0.0.9',
    }),
  );
  t.is(insecure.GREMESH_INSECURE, '1');
  t.is(insecure.GREMESH_UNDERLAY_IP, '10.0.0.9');
  t.deepEqual(parseEnvFile('# c\n\nA="x y"\nB=\'z\'\nnot a line\n'), { A: 'x y', B: 'z' });
});

test('dialling the coordinator by address sends a name in SNI (no DEP0123) and still checks the address', (t) => {
  t.is(hostOf('198.18.0.2:7420'), '198.18.0.2');
  const byIp = coordinatorTls('198.18.0.2:7420', Buffer.from(''));
  t.deepEqual(byIp.options, { 'grpc.ssl_target_name_override': COORDINATOR_SNI });
  const byName = coordinatorTls('coord.example:7420', Buffer.from(''));
  t.deepEqual(byName.options, {});
});
