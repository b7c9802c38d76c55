// Prometheus metrics (`--metrics ADDR:PORT`, off by default): prom-client's registry
// served as text on GET /metrics. prom-client is loaded only when metrics are on.
import * as http from 'node:http';
import type * as Prom from 'prom-client';

/** Pure: ADDR:PORT for --metrics, or an error message. */
export function parseMetricsAddr(v: string): { host: string; port: number } | string {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:]+\]|localhost):(\d{1,5})$/i.exec(v);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535)
    return `--metrics takes ADDR:PORT (e.g. 127.0.0.1:9477), got "${v}"`;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

export interface MetricsServer {
  prom: typeof Prom;
  registry: Prom.Registry;
  close(): void;
}

/** Starts the HTTP endpoint; `define` registers the component's metrics on the registry. */
export async function serveMetrics(addr: string, prefixLabels: Record<string, string> = {}): Promise<MetricsServer> {
  const a = parseMetricsAddr(addr);
  if (typeof a === 'string') throw new Error(a);
  const prom = await import('prom-client');
  const registry = new prom.Registry();
  registry.setDefaultLabels(prefixLabels);
  prom.collectDefaultMetrics({ register: registry });
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('metrics are at /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (e: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(a.port, a.host, () => resolve());
  });
  return { prom, registry, close: () => server.close() };
}
