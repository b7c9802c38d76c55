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

/**
 * One JSON state file: its value kept in memory and written through, durably, on every
 * change. A missing or unreadable file reads as `empty()`; with `parse`, a file that is
 * there but not valid is never read as empty: it is moved aside (FILE.corrupt-TIME) and
 * `corrupt` says why and where (the owner decides how to rebuild).
 */
export class JsonFile<T> {
  value: T;
  /** set when the file was there but not valid (only with `parse`): why, and where it went */
  corrupt: { reason: string; movedTo: string } | undefined;
  constructor(
    readonly file: string,
    private readonly empty: () => T,
    /** pure: the value of the file's text, or why it is not one */
    parse?: (text: string) => T | string,
  ) {
    if (!parse) {
      this.value = this.read();
      return;
    }
    let text: string | undefined;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      this.value = empty(); // no file yet: a first start
      return;
    }
    const v = parse(text);
    if (typeof v !== 'string') {
      this.value = v;
      return;
    }
    const movedTo = `${file}.corrupt-${Date.now()}`;
    fs.renameSync(file, movedTo);
    this.corrupt = { reason: v, movedTo };
    this.value = empty();
  }
  /** the file as it is on disk now (empty when missing or unreadable) */
  read(): T {
    return readJson<T>(this.file) ?? this.empty();
  }
  save(next: T): void {
    this.value = next;
    writeFileAtomic(this.file, JSON.stringify(next, null, 1));
  }
}

/** A JSON table kept in memory and written through, durably, on every change (empty when missing). */
export class JsonTable<T> extends JsonFile<Record<string, T>> {
  constructor(file: string) {
    super(file, () => ({}));
  }
}
