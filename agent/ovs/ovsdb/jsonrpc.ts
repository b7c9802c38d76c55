// JSON-RPC 1.0 over a stream socket, as OVSDB speaks it (RFC 7047 §4): JSON texts one
// after the other, requests with an id, responses matched by id, notifications with
// id null. The server's "echo" is answered here; a request not answered in time fails
// and closes the connection (the caller reconnects).
import * as net from 'node:net';

export class JsonRpcError extends Error {
  constructor(
    message: string,
    readonly error?: unknown,
  ) {
    super(message);
    this.name = 'JsonRpcError';
  }
}

/** Pure: splits a byte stream of back-to-back JSON texts; keeps the unfinished tail. */
export class JsonSplitter {
  private buf = '';
  private depth = 0;
  private inString = false;
  private escaped = false;
  private scanned = 0;

  push(chunk: string): unknown[] {
    this.buf += chunk;
    const out: unknown[] = [];
    let start = 0;
    for (let i = this.scanned; i < this.buf.length; i++) {
      const ch = this.buf[i]!;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (ch === '\\') this.escaped = true;
        else if (ch === '"') this.inString = false;
        continue;
      }
      if (ch === '"') this.inString = true;
      else if (ch === '{' || ch === '[') this.depth++;
      else if (ch === '}' || ch === ']') {
        this.depth--;
        if (this.depth === 0) {
          out.push(JSON.parse(this.buf.slice(start, i + 1)));
          start = i + 1;
        }
      } else if (this.depth === 0 && !/\s/.test(ch)) throw new JsonRpcError(`unexpected "${ch}" between messages`);
    }
    this.buf = this.buf.slice(start);
    this.scanned = this.buf.length;
    return out;
  }
}

export interface Message {
  id?: unknown;
  method?: string;
  params?: unknown[];
  result?: unknown;
  error?: unknown;
}

export interface JsonRpcOptions {
  /** a request not answered within this is an error, and the connection is closed */
  timeoutMs: number;
  onNotify: (method: string, params: unknown[]) => void;
  onClose: (err?: Error) => void;
}

export class JsonRpcConnection {
  private nextId = 1;
  private pending = new Map<
    number,
    { resolve: (r: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();
  private readonly splitter = new JsonSplitter();
  private closed = false;

  private constructor(
    private readonly sock: net.Socket,
    private readonly o: JsonRpcOptions,
  ) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      let msgs: unknown[];
      try {
        msgs = this.splitter.push(d);
      } catch (e) {
        this.close(e as Error);
        return;
      }
      for (const m of msgs) this.handle(m as Message);
    });
    sock.on('error', (e) => this.close(e));
    sock.on('close', () => this.close(new Error('connection closed by the server')));
  }

  /** "unix:PATH" or "tcp:HOST:PORT" (the forms ovs-vsctl --db takes) */
  static connect(target: string, o: JsonRpcOptions, connectTimeoutMs = 5000): Promise<JsonRpcConnection> {
    return new Promise((resolve, reject) => {
      const unix = /^unix:(.+)$/.exec(target);
      const tcp = /^tcp:(.+):(\d+)$/.exec(target);
      if (!unix && !tcp)
        return reject(new JsonRpcError(`OVSDB target must be unix:PATH or tcp:HOST:PORT, got ${target}`));
      const sock = unix ? net.connect(unix[1]!) : net.connect(Number(tcp![2]), tcp![1]);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new JsonRpcError(`no connection to ${target} within ${connectTimeoutMs} ms`));
      }, connectTimeoutMs);
      sock.once('connect', () => {
        clearTimeout(timer);
        sock.removeAllListeners('error');
        resolve(new JsonRpcConnection(sock, o));
      });
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(new JsonRpcError(`cannot connect to ${target}: ${e.message}`));
      });
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  request(method: string, params: unknown[], timeoutMs = this.o.timeoutMs): Promise<unknown> {
    if (this.closed) return Promise.reject(new JsonRpcError('connection is closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new JsonRpcError(`${method}: no answer within ${timeoutMs} ms`));
        this.close(new Error(`${method} not answered`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.sock.write(JSON.stringify({ method, params, id }));
    });
  }

  private handle(m: Message): void {
    if (m.method === 'echo' && m.id !== undefined && m.id !== null) {
      this.sock.write(JSON.stringify({ result: m.params ?? [], error: null, id: m.id }));
      return;
    }
    if (m.method && (m.id === null || m.id === undefined)) {
      this.o.onNotify(m.method, m.params ?? []);
      return;
    }
    if (typeof m.id !== 'number') return;
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.error !== null && m.error !== undefined)
      p.reject(new JsonRpcError(`OVSDB error: ${JSON.stringify(m.error)}`, m.error));
    else p.resolve(m.result);
  }

  close(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.destroy();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new JsonRpcError(`connection closed: ${err?.message ?? 'closed'}`));
    }
    this.pending.clear();
    this.o.onClose(err);
  }
}
