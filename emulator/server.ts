// The socket servers: the VBS socket API on TCP and a unix socket (docs/socket-api.md §1.1, framing exactly
// as there), and the KV data plane for sds_cli on a unix socket (§3.2). One request per connection; the
// server writes its reply and closes.
import { createHash, timingSafeEqual } from 'node:crypto';
import { chmodSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { isKnownAt, isMutating, Key, ORIGINAL_GENERIC_FAILURE } from '../src/protocol/catalog.js';
import { KV_METHODS, KvCode, MAX_KV_MESSAGE_BYTES, type KvMethod } from '../src/protocol/kv.js';
import {
  encodeReply,
  findRequestEnd,
  isValidName,
  MAX_REQUEST_BYTES,
  parseRequest,
  ProtocolError,
  RetCode,
  type Field,
} from '../src/protocol/vbs.js';
import type { AttachService, KvReply } from './attach.js';
import type { EmulatorProtocol } from './config.js';
import { VbsError } from './errors.js';
import type { Handler, Reply } from './handlers.js';
import type { Logger } from './log.js';
import { encodeOriginalKvReply, handleOriginalRequest } from './original.js';
import { Params } from './params.js';

const INCOMPLETE_REQUEST_TIMEOUT_MS = 10_000;
// After the reply the client closes; a client that never does is cut off after this long.
const LINGER_MS = 5_000;
const REQUEST_ID_PATTERN = /^[\x20-\x7e]{1,128}$/;

interface Framing {
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
class OneShotServer {
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

/** The form a token is kept and compared in: its SHA-256, so every comparison is of 32 bytes. */
export const tokenDigest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/**
 * Whether a request's `auth_token` is the configured one, in constant time: the digests always have the same
 * length, and timingSafeEqual's time does not depend on where they differ, so neither the length nor a
 * prefix of the token can be learnt by timing.
 */
export function tokenMatches(given: string | undefined, expected: Buffer): boolean {
  return given !== undefined && timingSafeEqual(tokenDigest(given), expected);
}

export interface ControlServerOptions {
  handlers: Map<string, Handler>;
  /** `original`: the 2014 product's form (emulator/original.ts); no token, no request id, no ret_desc */
  protocol: EmulatorProtocol;
  token: string | undefined;
  quietMs: number;
  log: Logger;
  /** true once shutdown began: requests that arrive late are answered UNAVAILABLE */
  stopping: () => boolean;
}

/** The VBS socket API. */
export class ControlServer extends OneShotServer {
  private counter = 0;

  constructor(private readonly options: ControlServerOptions) {
    const expected = options.token !== undefined ? tokenDigest(options.token) : undefined;
    const original = options.protocol === 'original';
    super({
      maxBytes: MAX_REQUEST_BYTES,
      quietMs: options.quietMs,
      log: options.log,
      tooLarge: () =>
        original
          ? encodeReply(ORIGINAL_GENERIC_FAILURE)
          : encodeReply(RetCode.TOO_LARGE, { [Key.RET_DESC]: `request exceeds ${MAX_REQUEST_BYTES} bytes` }),
      onRequest: (bytes) =>
        original
          ? handleOriginalRequest(
              bytes,
              { handlers: options.handlers, log: options.log, stopping: options.stopping },
              ++this.counter,
            )
          : this.handle(bytes, expected),
    });
  }

  private async handle(bytes: Buffer, expectedToken: Buffer | undefined): Promise<Buffer> {
    const started = process.hrtime.bigint();
    const { log: baseLog, handlers } = this.options;
    let type = '';
    let requestId: string | undefined;
    let reply: Reply;
    let bindings: { request_id?: string; req?: string } = {};
    // A child logger costs a serialisation: made only when a handler logs.
    let child: Logger | undefined;
    const log = (): Logger => (child ??= baseLog.child(bindings));
    try {
      const req = parseRequest(bytes);
      type = req.type;
      const rid = req.fields.get(Key.REQUEST_ID);
      if (rid !== undefined && REQUEST_ID_PATTERN.test(rid)) requestId = rid;
      bindings = { request_id: requestId ?? `emu-${++this.counter}`, req: type };
      // The token is checked before any other key is looked at.
      if (expectedToken) {
        const given = req.fields.get(Key.AUTH_TOKEN);
        if (!tokenMatches(given, expectedToken)) {
          throw new VbsError(RetCode.AUTH_FAILED, `${Key.AUTH_TOKEN}: ${given === undefined ? 'missing' : 'wrong'}`);
        }
      }
      if (rid !== undefined && requestId === undefined) {
        throw new VbsError(RetCode.INVALID_PARAMETER, `${Key.REQUEST_ID}: must be 1-128 printable characters`);
      }
      const handler = isKnownAt(type, 'extended') ? handlers.get(type) : undefined;
      if (!handler) throw new VbsError(RetCode.UNKNOWN_REQUEST, `unknown request type ${type}`);
      if (this.options.stopping()) throw new VbsError(RetCode.UNAVAILABLE, 'the VBS is shutting down; retry');
      reply = await handler({
        params: new Params(req.fields),
        get log() {
          return log();
        },
      });
    } catch (err) {
      if (err instanceof VbsError)
        reply = { retcode: err.retcode, fields: [[Key.RET_DESC, err.message], ...err.fields] };
      else if (err instanceof ProtocolError) reply = { retcode: err.retcode, fields: [[Key.RET_DESC, err.message]] };
      else {
        log().error({ err }, 'internal error');
        reply = { retcode: RetCode.INTERNAL, fields: [[Key.RET_DESC, `internal error: ${(err as Error).message}`]] };
      }
    }
    const fields: Field[] = [...reply.fields];
    if (requestId !== undefined) fields.push([Key.REQUEST_ID, requestId]);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const entry = {
      retcode: reply.retcode,
      ms: Math.round(ms * 1000) / 1000,
      ...(reply.retcode !== 0 ? { ret_desc: reply.fields[0]?.[1] } : {}),
    };
    if (reply.retcode === RetCode.INTERNAL) baseLog.error({ ...bindings, ...entry }, 'request failed');
    else if (isMutating(type)) baseLog.info({ ...bindings, ...entry }, 'request');
    else if (baseLog.isLevelEnabled('debug')) baseLog.debug({ ...bindings, ...entry }, 'request');
    return encodeReply(reply.retcode, fields);
  }
}

/** Formats a KV reply as sds_cli prints it. */
export function encodeKvReply(r: KvReply): Buffer {
  const desc = r.ret_desc.replace(/[\u0000-\u001f\u007f"]/g, ' ');
  let text = `ret_code=${r.ret_code}\nret_desc="${desc}"\n`;
  if (r.dev_addr) text += `dev_addr=${r.dev_addr}\n`;
  const bytes = Buffer.from(text, 'utf8');
  return bytes.length <= MAX_KV_MESSAGE_BYTES
    ? bytes
    : Buffer.from(`ret_code=${r.ret_code}\nret_desc="reply too long"\n`);
}

/** The KV data plane for sds_cli: `method=..\nvolume=..\n\n`. */
export class KvServer extends OneShotServer {
  /** `hostId`: the host whose data plane this socket is (a data host's own socket, emulator/hosts.ts). */
  constructor(attach: AttachService, log: Logger, protocol: EmulatorProtocol = 'extended', hostId?: string) {
    const encode = (method: KvMethod | undefined, r: KvReply): Buffer =>
      protocol === 'original' ? encodeOriginalKvReply(method, r) : encodeKvReply(r);
    super({
      maxBytes: MAX_KV_MESSAGE_BYTES,
      quietMs: 0,
      log,
      tooLarge: () =>
        encode(undefined, {
          ret_code: KvCode.BAD_ARGUMENTS,
          ret_desc: `request exceeds ${MAX_KV_MESSAGE_BYTES} bytes`,
        }),
      onRequest: async (bytes) => {
        const started = Date.now();
        const parsed = parseKvRequest(bytes);
        if ('error' in parsed) return encode(undefined, { ret_code: KvCode.BAD_ARGUMENTS, ret_desc: parsed.error });
        const reqLog = log.child({ request_id: parsed.requestId, kv: parsed.method, volume: parsed.volume });
        let result: KvReply;
        try {
          result =
            parsed.method === 'attach'
              ? await attach.attach(parsed.volume, hostId)
              : parsed.method === 'detach'
                ? await attach.detach(parsed.volume, hostId)
                : await attach.querydev(parsed.volume, hostId);
        } catch (err) {
          reqLog.error({ err }, 'kv request failed');
          result = { ret_code: KvCode.DEVICE_FAILED, ret_desc: `internal error: ${(err as Error).message}` };
        }
        const entry = {
          ret_code: result.ret_code,
          dev_addr: result.dev_addr,
          ms: Date.now() - started,
          ...(result.ret_code !== 0 ? { ret_desc: result.ret_desc } : {}),
        };
        if (parsed.method === 'querydev') reqLog.debug(entry, 'kv request');
        else reqLog.info(entry, 'kv request');
        return encode(parsed.method, result);
      },
    });
  }
}

function parseKvRequest(bytes: Buffer): { method: KvMethod; volume: string; requestId?: string } | { error: string } {
  if (bytes.includes(0)) return { error: 'request holds a NUL byte' };
  const text = bytes.toString('utf8');
  const values = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '') continue;
    const m = /^([a-z_]+)=([^\u0000-\u001f\u007f]*)$/.exec(line);
    if (!m) return { error: 'request lines must be key=value' };
    if (!values.has(m[1]!)) values.set(m[1]!, m[2]!);
  }
  const method = values.get('method') ?? '';
  const volume = values.get('volume') ?? '';
  if (!(KV_METHODS as readonly string[]).includes(method))
    return { error: `method must be one of ${KV_METHODS.join(', ')}` };
  if (!isValidName(volume)) return { error: 'volume must be a volume name' };
  const rid = values.get(Key.REQUEST_ID);
  return { method: method as KvMethod, volume, requestId: rid && REQUEST_ID_PATTERN.test(rid) ? rid : undefined };
}
