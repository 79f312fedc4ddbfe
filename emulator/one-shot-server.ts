// The base of the emulator's socket servers: accepting on a unix socket or TCP, framing one request per
// connection (docs/socket-api.md §1.1), replying, closing, and draining on shutdown.
import { chmodSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { findRequestEnd } from '../src/protocol/vbs.js';
import type { Logger } from './log.js';

const INCOMPLETE_REQUEST_TIMEOUT_MS = 10_000;
// After the reply the client closes; a client that never does is cut off after this long.
const LINGER_MS = 5_000;
/** A request id the servers log and echo: printable, at most 128 characters. */
export const REQUEST_ID_PATTERN = /^[\x20-\x7e]{1,128}$/;

export interface Framing {
  maxBytes: number;
  /** 0: no quiet-period framing */
  quietMs: number;
  /** handles one complete request; resolves with the reply bytes */
  onRequest(bytes: Buffer): Promise<Buffer>;
  /** the reply to a request over maxBytes, undefined to drop the connection */
  tooLarge(): Buffer | undefined;
  log: Logger;
}

/** Base of both servers: accepting, framing one request per connection, draining on shutdown. */
export class OneShotServer {
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();
  private inflight = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly framing: Framing) {}

  get inFlight(): number {
    return this.inflight;
  }

  private server(): net.Server {
    const server = net.createServer({ allowHalfOpen: true }, (socket) => this.serve(socket));
    server.on('error', (err) => this.framing.log.error({ err }, 'listener error'));
    this.servers.push(server);
    return server;
  }

  listenTcp(host: string, port: number): Promise<number> {
    const server = this.server();
    return new Promise((resolvePromise, reject) => {
      server.once('error', reject);
      server.listen({ host, port, exclusive: true }, () => {
        server.off('error', reject);
        resolvePromise((server.address() as net.AddressInfo).port);
      });
    });
  }

  /** Listens on a unix socket created with mode 0600; a stale socket file is replaced. */
  async listenUnix(path: string): Promise<void> {
    if (await isListening(path)) throw new Error(`${path} is in use by a running server`);
    try {
      unlinkSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const server = this.server();
    // bind(2) creates the socket file with the umask applied: make it 0600 from the first moment.
    const previous = process.umask(0o177);
    try {
      await new Promise<void>((resolvePromise, reject) => {
        server.once('error', reject);
        server.listen(path, () => {
          server.off('error', reject);
          resolvePromise();
        });
      });
    } finally {
      process.umask(previous);
    }
    chmodSync(path, 0o600);
  }

  /** Stops accepting; connections already open are served. */
  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }

  /** Waits until no request is being handled, at most `timeoutMs`; then cuts the remaining connections. */
  async drain(timeoutMs: number): Promise<boolean> {
    if (this.inflight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((r) => this.idleWaiters.push(r)),
        new Promise<void>((r) => {
          timer = setTimeout(r, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    const idle = this.inflight === 0;
    for (const s of this.sockets) s.destroy();
    return idle;
  }

  private serve(socket: net.Socket): void {
    const { framing } = this;
    this.sockets.add(socket);
    let chunks: Buffer[] = [];
    let length = 0;
    let done = false;
    let quietTimer: NodeJS.Timeout | undefined;
    const deadline = setTimeout(() => {
      if (!done) {
        done = true;
        socket.destroy();
      }
    }, INCOMPLETE_REQUEST_TIMEOUT_MS);
    let linger: NodeJS.Timeout | undefined;

    const respond = (bytes: Buffer | undefined): void => {
      if (socket.destroyed) return;
      if (bytes === undefined) {
        socket.destroy();
        return;
      }
      socket.end(bytes);
      linger = setTimeout(() => socket.destroy(), LINGER_MS);
    };

    const complete = (bytes: Buffer): void => {
      if (done) return;
      done = true;
      clearTimeout(deadline);
      clearTimeout(quietTimer);
      this.inflight++;
      framing
        .onRequest(bytes)
        .then(respond, (err: unknown) => {
          framing.log.error({ err }, 'request handling failed');
          respond(undefined);
        })
        .finally(() => {
          this.inflight--;
          if (this.inflight === 0) {
            const waiters = this.idleWaiters;
            this.idleWaiters = [];
            for (const w of waiters) w();
          }
        });
    };

    socket.on('data', (chunk: Buffer) => {
      if (done) return; // after the request: ignored
      chunks.push(chunk);
      length += chunk.length;
      clearTimeout(quietTimer);
      if (chunks.length > 1) chunks = [Buffer.concat(chunks, length)];
      const buf = chunks[0]!;
      const end = findRequestEnd(buf);
      if (end !== -1 && end <= framing.maxBytes) {
        complete(buf.subarray(0, end));
        return;
      }
      if (length > framing.maxBytes) {
        done = true;
        clearTimeout(deadline);
        respond(framing.tooLarge());
        return;
      }
      // The original client never ends its request: it is complete when it ends in \n and the line goes quiet.
      if (framing.quietMs > 0 && buf[buf.length - 1] === 0x0a) {
        quietTimer = setTimeout(() => complete(buf), framing.quietMs);
      }
    });
    socket.on('end', () => {
      if (done) return;
      if (length === 0) {
        done = true;
        clearTimeout(deadline);
        socket.end();
        return;
      }
      complete(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length));
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      clearTimeout(deadline);
      clearTimeout(quietTimer);
      clearTimeout(linger);
      this.sockets.delete(socket);
    });
  }
}

function isListening(path: string): Promise<boolean> {
  return new Promise((resolvePromise) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolvePromise(true);
    });
    probe.once('error', () => resolvePromise(false));
  });
}
