// The agent's small state files (cached desired state, address table, status): read
// leniently, written whole by rename.
import * as fs from 'node:fs';
import * as path from 'node:path';

export function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/**
 * Written whole (by rename) and, unless `durable` is false, durable: the new file is
 * fsynced before the rename and the directory after it, so a power cut leaves the old
 * file or the new one. Status and caches, rewritten often and rebuilt at start, skip it.
 */
export function writeFileAtomic(file: string, data: string, mode = 0o644, durable = true): void {
  const tmp = `${file}.tmp${process.pid}`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.writeFileSync(fd, data);
    if (durable) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  if (!durable) return;
  const dir = fs.openSync(path.dirname(file), 'r');
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}

/** A JSON table kept in memory and written through, durably, on every change (empty when missing). */
export class JsonTable<T> {
  value: Record<string, T>;
  constructor(private readonly file: string) {
    this.value = readJson<Record<string, T>>(file) ?? {};
  }
  save(next: Record<string, T>): void {
    this.value = next;
    writeFileAtomic(this.file, JSON.stringify(next, null, 1));
  }
}
