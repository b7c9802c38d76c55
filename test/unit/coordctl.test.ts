// coordctl's dispatcher and argument parsing: help, usage errors and the command table,
// in-process (parseGlobal, commandFor) and as a user runs it (the built binary, nothing dialled).
import test from 'ava';
import { UsageError } from '../../common/cli.js';
import { HELP, parseGlobal } from '../../coordinator/cli/args.js';
import { COMMANDS, commandFor } from '../../coordinator/cli/dispatch.js';
import { ago, printer } from '../../coordinator/cli/output.js';
import { joinCommandLine } from '../../coordinator/cli/commands/hosts.js';
import { BIN, cli } from '../helpers/cli.js';

const run = (...args: string[]) => cli(BIN.coordctl, args, { GREMESH_DATA_DIR: '/nonexistent' });

test('the command table holds every command the help lists, and nothing else', (t) => {
  t.deepEqual(Object.keys(COMMANDS).sort(), [
    'events',
    'host',
    'hosts',
    'join',
    'leave',
    'names',
    'network',
    'networks',
    'policy',
    'rotate-keys',
    'status',
    'token',
    'trace',
  ]);
  for (const c of Object.keys(COMMANDS)) t.regex(HELP, new RegExp(`\\n  ${c} `));
});

test('parseGlobal: --help exits 0, no command exits 2; defaults for address, timeout, output', (t) => {
  t.deepEqual(parseGlobal(['--help']), { help: true, code: 0 });
  t.deepEqual(parseGlobal(['hosts', '-h']), { help: true, code: 0 });
  t.deepEqual(parseGlobal([]), { help: true, code: 2 });
  const g = parseGlobal(['hosts'], {});
  t.like(g, { help: false, cmd: 'hosts', args: [], fmt: 'table', addr: '127.0.0.1:7420', timeoutS: 10 });
  t.like(parseGlobal(['network', 'delete', 'n', '-o', 'json'], { GREMESH_COORDINATOR: 'a:1,b:2' }), {
    cmd: 'network',
    args: ['delete', 'n'],
    fmt: 'json',
    addr: 'a:1,b:2',
  });
  t.like(parseGlobal(['join', 'h', '-o', 'env']), { fmt: 'env' });
  t.throws(() => parseGlobal(['hosts', '-o', 'env']), {
    instanceOf: UsageError,
    message: '-o must be one of table, json, got env',
  });
  t.throws(() => parseGlobal(['--timeout', 'x', 'hosts']), { message: '--timeout must be a duration such as 10s' });
  t.throws(() => parseGlobal(['--bogus', 'hosts']), { instanceOf: UsageError, message: /^Unknown option '--bogus'/ });
});

test('commandFor: unknown command, and the checks trace and events make before dialling', (t) => {
  const v = (o: Record<string, string>) => o;
  t.throws(() => commandFor('foo', {}, []), { instanceOf: UsageError, message: 'unknown command "foo" (try --help)' });
  t.throws(() => commandFor('constructor', {}, []), { message: 'unknown command "constructor" (try --help)' });
  t.throws(() => commandFor('trace', {}, ['a']), {
    message: 'usage: coordctl trace SRC DST [--proto icmp|tcp|udp] [--port N]',
  });
  t.throws(() => commandFor('trace', v({ proto: 'x' }), ['a', 'b']), {
    message: '--proto must be icmp, tcp or udp, got "x"',
  });
  t.throws(() => commandFor('trace', v({ proto: 'tcp', port: '65536' }), ['a', 'b']), {
    message: '--port must be 1-65535, got "65536"',
  });
  t.throws(() => commandFor('trace', v({ port: '80' }), ['a', 'b']), { message: '--port needs --proto tcp or udp' });
  t.is(commandFor('trace', v({ proto: 'udp', port: '53' }), ['a', 'b']), COMMANDS.trace!);
  t.throws(() => commandFor('events', {}, ['x']), { message: 'usage: coordctl events [--since DUR] [--follow]' });
  t.throws(() => commandFor('events', v({ since: 'x' }), []), {
    message: '--since must be a duration such as 10m, got "x"',
  });
  // the other commands check their arguments once dialled (as they always have)
  t.is(commandFor('hosts', {}, ['extra']), COMMANDS.hosts!);
});

test('output: -o json is indented JSON, table the text; ago; the join command line', (t) => {
  let s = '';
  printer('json', (x) => (s += x))({ a: 1 }, () => 'text');
  t.is(s, '{\n  "a": 1\n}\n');
  s = '';
  printer('table', (x) => (s += x))({ a: 1 }, () => 'text');
  t.is(s, 'text\n');
  t.is(ago(0), 'never');
  t.is(ago(1_000, 31_000), '30s ago');
  t.is(ago(0 + 1, 1 + 300_000), '5m ago');
  t.is(
    joinCommandLine({ coordinator: 'c:1', token: 't.s', caHash: 'sha256:x' }, 'h1', '10.0.0.1'),
    'gremesh-agent --coordinator c:1 --name h1 --join-token t.s --ca-hash sha256:x --underlay-ip 10.0.0.1',
  );
  t.is(
    joinCommandLine({ coordinator: 'c:1', token: 't.s', caHash: '' }, 'h1', undefined),
    'gremesh-agent --coordinator c:1 --name h1 --join-token t.s',
  );
});

test('coordctl binary: --help prints the help (exit 0), also after any command; nothing prints it and exits 2', async (t) => {
  const help = await run('--help');
  t.is(help.exitCode, 0);
  t.is(help.stdout, HELP.replace(/\n$/, ''));
  for (const c of Object.keys(COMMANDS)) {
    const r = await run(c, '--help');
    t.is(r.exitCode, 0, c);
    t.is(r.stdout, help.stdout, c);
  }
  const none = await run();
  t.is(none.exitCode, 2);
  t.is(none.stdout, help.stdout);
});

test('coordctl binary: usage errors are one line on stderr and exit 2, before any certificate is read', async (t) => {
  const cases: [string[], string][] = [
    [['foo'], 'coordctl: unknown command "foo" (try --help)'],
    [['trace', 'a'], 'coordctl: usage: coordctl trace SRC DST [--proto icmp|tcp|udp] [--port N]'],
    [['events', '--since', 'x'], 'coordctl: --since must be a duration such as 10m, got "x"'],
    [['hosts', '-o', 'yaml'], 'coordctl: -o must be one of table, json, got yaml'],
  ];
  for (const [args, err] of cases) {
    const r = await run(...args);
    t.is(r.exitCode, 2, args.join(' '));
    t.is(r.stderr, err);
    t.is(r.stdout, '');
  }
  const noCert = await run('hosts');
  t.is(noCert.exitCode, 1);
  t.regex(noCert.stderr, /^coordctl: cannot read the CA certificate \/nonexistent\/pki\/ca\.crt \(ENOENT\)/);
});

test('coordctl binary: per-command usage errors once dialled (--insecure), exit 2', async (t) => {
  const c = ['--insecure', '--coordinator', '127.0.0.1:1'];
  const cases: [string[], string][] = [
    [['hosts', 'extra'], 'usage: coordctl hosts'],
    [['network'], 'usage: coordctl network create|update|delete ...'],
    [
      ['network', 'create', 'x'],
      'usage: coordctl network create NAME --cidr CIDR --host-prefix-len N [--mtu N] [--isolation none|groups] [--ipv6-cidr PREFIX [--ipv6-host-prefix-len N]]',
    ],
    [['network', 'delete'], 'usage: coordctl network delete NAME'],
    [['token', 'list', 'x'], 'usage: coordctl token list | token revoke ID'],
    [['join', 'x', '--ttl', 'zz'], '--ttl must be a duration such as 30m or 24h, got "zz"'],
    [['leave'], 'usage: coordctl leave NAME'],
  ];
  for (const [args, err] of cases) {
    const r = await run(...c, ...args);
    t.is(r.exitCode, 2, args.join(' '));
    t.is(r.stderr, `coordctl: ${err}`);
  }
});
