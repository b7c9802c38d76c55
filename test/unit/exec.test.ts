import test from 'ava';
import { createRunner, ExecError } from '../../common/exec.js';

test('runner returns trimmed stdout and the duration', async (t) => {
  const run = createRunner();
  const r = await run(['sh', '-c', 'echo "  hi  "; echo']);
  t.is(r.stdout, 'hi');
  t.is(r.exitCode, 0);
  t.true(r.durationMs >= 0);
});

test('a failing command throws ExecError with argv, exit code and stderr', async (t) => {
  const run = createRunner();
  const e = await t.throwsAsync(run(['sh', '-c', 'echo boom >&2; exit 3']), { instanceOf: ExecError });
  t.deepEqual(e!.argv, ['sh', '-c', 'echo boom >&2; exit 3']);
  t.is(e!.exitCode, 3);
  t.is(e!.stderr.trim(), 'boom');
  t.regex(e!.message, /exited 3: boom$/);
});

test('okCodes turn an exit code into a result', async (t) => {
  const r = await createRunner()(['sh', '-c', 'exit 1'], { okCodes: [1] });
  t.is(r.exitCode, 1);
});

test('timeout kills the command and says so', async (t) => {
  const e = await t.throwsAsync(createRunner({ timeoutMs: 100 })(['sleep', '5']), { instanceOf: ExecError });
  t.true(e!.timedOut);
  t.regex(e!.message, /timed out/);
});

test('a missing binary is an ExecError, not a crash', async (t) => {
  const e = await t.throwsAsync(createRunner()(['/nonexistent/tool']), { instanceOf: ExecError });
  t.is(e!.exitCode, undefined);
});

test('prefix and env are applied', async (t) => {
  const run = createRunner({ prefix: ['env'], env: { GM_X: 'a' } });
  const r = await run(['sh', '-c', 'echo $GM_X$GM_Y'], { env: { GM_Y: 'b' } });
  t.is(r.stdout, 'ab');
});

test('systemPath puts system dirs first and drops node_modules/.bin (ava ships a binary named nft)', async (t) => {
  const { systemPath } = await import('../../common/exec.js');
  const p = systemPath('/work/main/node_modules/.bin:/root/bin:/usr/bin').split(':');
  t.is(p[0], '/usr/local/sbin');
  t.false(p.some((d) => d.includes('node_modules')));
  t.true(p.includes('/root/bin'));
  const r = await createRunner()(['sh', '-c', 'command -v nft || echo none'], { env: {} });
  t.false(r.stdout.includes('node_modules'), r.stdout);
});
