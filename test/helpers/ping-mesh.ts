// A ping mesh that runs through a whole test file: every member pings every other at
// 10/s (iputils ping -O inside the member's network namespace), and each test asks how
// many pings were lost between two marks. Lost means never answered: a reply that comes
// late still counts as received.
import { spawn, type ChildProcess } from 'node:child_process';
import { systemPath } from '../../common/exec.js';

export interface Member {
  name: string;
  pid: string;
  ip: string;
}

interface Run {
  proc: ChildProcess;
  maxSeq: number;
  replies: Set<number>;
  noAnswerAt: Map<number, number>;
  pid: string;
  ip: string;
  exited: boolean;
}
interface Pair {
  src: string;
  dst: string;
  runs: Run[];
}

/** when, and per pair where its pinger was */
export interface Mark {
  at: number;
  pos: Map<string, { run: number; seq: number }>;
}

/** lostAt: seconds after the first mark at which ping said each lost one had no answer yet */
export interface PairLoss {
  pair: string;
  sent: number;
  lost: number;
  lostAt: number[];
}
export interface Loss {
  pairs: PairLoss[];
  sent: number;
  lost: number;
}

export class PingMesh {
  private pairs = new Map<string, Pair>();

  constructor(private readonly intervalS = 0.1) {}

  /** Starts pingers for every ordered pair of members; restarts those whose source or target changed or whose ping exited. Pairs of members no longer listed stop. */
  update(members: Member[]): void {
    const byName = new Map(members.map((m) => [m.name, m]));
    for (const [key, p] of this.pairs) {
      if (!byName.has(p.src) || !byName.has(p.dst)) {
        this.stopRun(p.runs.at(-1));
        this.pairs.delete(key);
      }
    }
    for (const a of members) {
      for (const b of members) {
        if (a.name === b.name) continue;
        const key = `${a.name}>${b.name}`;
        const p = this.pairs.get(key) ?? { src: a.name, dst: b.name, runs: [] };
        this.pairs.set(key, p);
        const cur = p.runs.at(-1);
        if (cur && !cur.exited && cur.pid === a.pid && cur.ip === b.ip) continue;
        this.stopRun(cur);
        p.runs.push(this.startRun(a.pid, b.ip));
      }
    }
  }

  private startRun(pid: string, ip: string): Run {
    const proc = spawn('nsenter', ['-t', pid, '-n', 'ping', '-O', '-n', '-i', String(this.intervalS), ip], {
      stdio: ['ignore', 'pipe', 'ignore'],
      env: { PATH: systemPath() },
    });
    const run: Run = { proc, maxSeq: 0, replies: new Set(), noAnswerAt: new Map(), pid, ip, exited: false };
    let buf = '';
    proc.stdout!.on('data', (d) => {
      buf += String(d);
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) {
        const m = /icmp_seq=(\d+)/.exec(l);
        if (!m) continue;
        const seq = Number(m[1]);
        run.maxSeq = Math.max(run.maxSeq, seq);
        if (l.includes(' bytes from ')) run.replies.add(seq);
        else if (l.startsWith('no answer yet')) run.noAnswerAt.set(seq, Date.now());
      }
    });
    proc.on('exit', () => {
      run.exited = true;
    });
    return run;
  }

  private stopRun(r: Run | undefined): void {
    if (r && !r.exited) r.proc.kill('SIGTERM');
  }

  mark(): Mark {
    const pos: Mark['pos'] = new Map();
    for (const [key, p] of this.pairs) pos.set(key, { run: p.runs.length - 1, seq: p.runs.at(-1)?.maxSeq ?? 0 });
    return { at: Date.now(), pos };
  }

  /**
   * Pings sent between mark `from` and now, and how many got no answer. The last
   * `graceS` seconds are left out (their answers may be on the way).
   */
  lossSince(from: Mark, graceS = 1.5): Promise<Loss> {
    return this.lossBetween(from, this.mark(), graceS);
  }

  /** the same between two marks; waits until graceS after `to` */
  async lossBetween(from: Mark, to: Mark, graceS = 1.5): Promise<Loss> {
    await new Promise((r) => setTimeout(r, Math.max(0, to.at + graceS * 1000 - Date.now())));
    const pairs: PairLoss[] = [];
    for (const [key, p] of this.pairs) {
      const a = from.pos.get(key) ?? { run: 0, seq: 0 };
      const b = to.pos.get(key)!;
      let sent = 0;
      let lost = 0;
      const lostAt: number[] = [];
      for (let r = a.run; r <= b.run; r++) {
        const run = p.runs[r];
        if (!run) continue;
        const lo = r === a.run ? a.seq : 0;
        const hi = r === b.run ? b.seq : run.maxSeq;
        for (let s = lo + 1; s <= hi; s++) {
          sent++;
          if (!run.replies.has(s)) {
            lost++;
            lostAt.push(((run.noAnswerAt.get(s) ?? to.at) - from.at) / 1000);
          }
        }
      }
      pairs.push({ pair: key, sent, lost, lostAt });
    }
    return { pairs, sent: pairs.reduce((n, x) => n + x.sent, 0), lost: pairs.reduce((n, x) => n + x.lost, 0) };
  }

  /** one line for a test log: totals and the pairs that lost any */
  static describe(l: Loss): string {
    const when = (xs: number[]) =>
      xs.length ? ` at ${xs[0]!.toFixed(1)}${xs.length > 1 ? `..${xs.at(-1)!.toFixed(1)}` : ''} s` : '';
    const bad = l.pairs.filter((p) => p.lost > 0).map((p) => `${p.pair} ${p.lost}/${p.sent}${when(p.lostAt)}`);
    return `ping mesh: ${l.pairs.length} pairs, ${l.sent} pings, ${l.lost} lost${bad.length ? ` (${bad.join(', ')})` : ''}`;
  }

  stop(): void {
    for (const p of this.pairs.values()) this.stopRun(p.runs.at(-1));
  }
}
