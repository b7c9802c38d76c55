// The agent's small state files (cached desired state, address table, status): read
// leniently, written whole by rename.
import * as fs from 'node:fs';

export function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

export function writeFileAtomic(file: string, data: string, mode = 0o644): void {
  const tmp = `${file}.tmp${process.pid}`;
  fs.writeFileSync(tmp, data, { mode });
  fs.renameSync(tmp, file);
}
