// The plugin's socket: HTTP + JSON on DIR/gremesh.sock, where dockerd discovers plugins
// (/run/docker/plugins). Every answer is 200 with a JSON body; a refusal carries the reason
// as "Err" (what the NetworkDriver reads) and "Error" (the IpamDriver), and Docker shows it
// on the command that caused it (docker network create, docker run).
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { Logger } from '../../../common/log.js';
import type { PluginHandler } from './driver.js';
import { PluginError } from './driver.js';

const CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';

/**
 * Serve the plugin API on sock. `routes` may come later (the agent listens at once, so a
 * dockerd started right after it finds the socket; calls wait until Docker's side is up).
 */
export function servePlugin(
  sock: string,
  routes: Record<string, PluginHandler> | Promise<Record<string, PluginHandler>>,
  log: Logger,
): http.Server {
  fs.mkdirSync(sock.replace(/\/[^/]+$/, ''), { recursive: true });
  fs.rmSync(sock, { force: true });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (d: Buffer) => {
      size += d.length;
      if (size > 1 << 20) req.destroy();
      else chunks.push(d);
    });
    req.on('end', async () => {
      const path = (req.url ?? '').split('?')[0]!;
      const reply = (code: number, v: unknown) => {
        res.writeHead(code, { 'content-type': CONTENT_TYPE });
        res.end(JSON.stringify(v));
      };
      const h = (await routes)[path];
      if (!h) return reply(404, { Err: `gremesh does not implement ${path}` });
      let body: Record<string, unknown> = {};
      try {
        const text = Buffer.concat(chunks).toString();
        body = text.trim() ? (JSON.parse(text) as Record<string, unknown>) : {};
      } catch {
        return reply(400, { Err: 'gremesh: the request is not JSON' });
      }
      const started = performance.now();
      h(body ?? {}).then(
        (v) => {
          log.debug({ call: path, ms: Math.round(performance.now() - started) }, 'docker plugin call');
          reply(200, v);
        },
        (e: Error) => {
          const message = e.message.replace(/\s+/g, ' ');
          if (e instanceof PluginError) log.info({ call: path, reason: message }, `docker plugin: refused ${path}`);
          else log.warn({ call: path, err: message }, `docker plugin: ${path} failed`);
          reply(200, { Err: `gremesh: ${message}`, Error: `gremesh: ${message}` });
        },
      );
    });
  });
  server.on('error', (e) => log.error({ socket: sock, err: e.message }, `cannot serve the Docker plugin on ${sock}`));
  server.listen(sock);
  return server;
}
