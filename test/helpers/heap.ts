// The live JavaScript heap of a running Node process, exactly: a heap snapshot (which
// V8 takes after a full garbage collection) summed over its objects. The process must
// have been started with NODE_OPTIONS="--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=DIR".
// RSS says little about leaks in a garbage-collected process (V8 and malloc keep freed
// memory); the live heap after a collection does.
import * as fs from 'node:fs';

export const heapSnapshotOptions = (dir: string) => `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${dir}`;

interface Snapshot {
  snapshot: { meta: { node_fields: string[] } };
  nodes: number[];
}

/** bytes of live objects in a .heapsnapshot file */
export function liveHeapBytes(file: string): number {
  const j = JSON.parse(fs.readFileSync(file, 'utf8')) as Snapshot;
  const fields = j.snapshot.meta.node_fields;
  const self = fields.indexOf('self_size');
  let total = 0;
  for (let i = self; i < j.nodes.length; i += fields.length) total += j.nodes[i]!;
  return total;
}

/** signals pid to write a heap snapshot into dir, waits for it, returns its live bytes and removes the file */
export async function liveHeap(pid: number, dir: string, timeoutMs = 60_000): Promise<number> {
  const mine = () =>
    fs.readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot') && f.split('.').includes(String(pid)));
  const before = new Set(mine());
  process.kill(pid, 'SIGUSR2');
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 250));
    for (const f of mine().filter((x) => !before.has(x))) {
      const path = `${dir}/${f}`;
      try {
        const bytes = liveHeapBytes(path); // a snapshot still being written does not parse yet
        fs.rmSync(path);
        return bytes;
      } catch {
        /* not complete yet */
      }
    }
  }
  throw new Error(
    `process ${pid} wrote no heap snapshot into ${dir} within ${timeoutMs} ms (started without ${heapSnapshotOptions(dir)}?)`,
  );
}
