// The agent's local control socket (STATE_DIR/agent.sock, root only): how
// `gremesh-agent attach|detach|status` reach the running agent, which owns the
// address table.
import * as fs from 'node:fs';
import * as http from 'node:http';

export type Handler = (body: Record<string, unknown>) => Promise<unknown>;

export function controlSocket(stateDir: string): string {
  return `${stateDir}/agent.sock`;
}

export function serveControl(sock: string, routes: Record<string, Handler>): http.Server {
  fs.rmSync(sock, { force: true });
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => {
      body += String(d);
      if (body.length > 65536) req.destroy();
    });
    req.on('end', () => {
      const h = routes[`${req.method} ${req.url}`];
      const reply = (code: number, v: unknown) => {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify(v));
      };
      if (!h) return reply(404, { error: `no route ${req.method} ${req.url}` });
      let parsed: Record<string, unknown> = {};
      try {
        parsed = body ? (JSON.parse(body) as Record<string, unknown>) : {};
      } catch {
        return reply(400, { error: 'body is not JSON' });
      }
      h(parsed).then(
        (v) => reply(200, v),
        (e: Error) => reply(400, { error: e.message }),
      );
    });
  });
  server.listen(sock, () => fs.chmodSync(sock, 0o600));
  return server;
}

export function callControl(
  sock: string,
  method: string,
  path: string,
  body?: unknown,
  timeoutMs = 60_000,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: sock, method, path, timeout: timeoutMs, headers: { 'content-type': 'application/json' } },
      (res) => {
        let data = '';
        res.on('data', (d) => {
          data += String(d);
        });
        res.on('end', () => {
          let v: { error?: string } = {};
          try {
            v = JSON.parse(data) as { error?: string };
          } catch {
            /* empty */
          }
          if (res.statusCode === 200) resolve(v);
          else reject(new Error(v.error ?? `agent answered ${res.statusCode}`));
        });
      },
    );
    req.on('error', (e: NodeJS.ErrnoException) =>
      reject(
        new Error(
          e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
            ? `no agent running with this --state-dir (${sock}: ${e.code})`
            : e.message,
        ),
      ),
    );
    req.on('timeout', () => {
      req.destroy();
      reject(new Error('the agent did not answer in time'));
    });
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
