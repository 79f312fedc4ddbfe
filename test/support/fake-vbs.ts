// An in-test fake VBS built from the shared codec: it frames requests as the contract says (empty line, EOF
// or a quiet period), records what it saw, and answers whatever the test's handler says, including nothing.
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import {
  encodeRecord,
  encodeReply,
  findRequestEnd,
  parseRequest,
  type FieldInput,
  type VbsRequest,
} from '../../src/protocol/vbs.js';

export type FakeAnswer =
  | Buffer
  /** accept the request and never answer (the connection stays open until the client leaves) */
  | { hang: true }
  /** close the connection without a reply */
  | { close: true }
  /** reset the connection (RST on TCP) without a reply */
  | { reset: true };

export interface SeenRequest extends VbsRequest {
  raw: Buffer;
  /** whether the client half-closed its socket before the fake answered */
  halfClosedBeforeReply: boolean;
}

export type FakeHandler = (req: VbsRequest, index: number) => FakeAnswer | Promise<FakeAnswer>;

export function reply(
  retcode: number,
  fields: Record<string, FieldInput> | Array<readonly [string, string]> = [],
): Buffer {
  return encodeReply(retcode, fields as Record<string, FieldInput>);
}

export function volumeRecord(overrides: Record<string, string | number> = {}): string {
  return encodeRecord({
    status: 1,
    vol_name: 'v1',
    vol_size: 1024,
    pool_id: 'pool0',
    thin_flag: 1,
    alloc_size: 0,
    create_time: 1_700_000_000,
    src_type: 'none',
    src_name: '',
    clone_type: '',
    max_iops: 0,
    max_mbps: 0,
    IOPRIORITY: 2,
    cache_policy: 'none',
    mapped_hosts: '',
    health: 'ok',
    fault_reason: '',
    snap_num: 0,
    ...overrides,
  });
}

export function snapshotRecord(overrides: Record<string, string | number> = {}): string {
  return encodeRecord({
    status: 1,
    snap_name: 's1',
    vol_name: 'v1',
    vol_size: 1024,
    pool_id: 'pool0',
    alloc_size: 0,
    create_time: 1_700_000_000,
    dependents: 0,
    group_name: '',
    ...overrides,
  });
}

export class FakeVbs {
  readonly seen: SeenRequest[] = [];
  private readonly sockets = new Set<Socket>();
  private constructor(
    private readonly server: Server,
    /** `unix:///...` or `127.0.0.1:port`, as the client takes it */
    readonly address: string,
    public handler: FakeHandler,
  ) {}

  /** Listens on a unix socket `name` in `dir`, or on 127.0.0.1:0 when no dir is given. */
  static async start(handler: FakeHandler, where?: { dir: string; name?: string }): Promise<FakeVbs> {
    const server = createServer();
    let fake!: FakeVbs;
    server.on('connection', (socket) => fake.serve(socket));
    if (where) {
      const path = join(where.dir, where.name ?? 'vbs.sock');
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve));
      fake = new FakeVbs(server, `unix://${path}`, handler);
    } else {
      await new Promise<void>((resolve, reject) =>
        server.once('error', reject).listen({ port: 0, host: '127.0.0.1' }, resolve),
      );
      const port = (server.address() as { port: number }).port;
      fake = new FakeVbs(server, `127.0.0.1:${port}`, handler);
    }
    return fake;
  }

  types(): string[] {
    return this.seen.map((r) => r.type);
  }

  count(type: string): number {
    return this.seen.filter((r) => r.type === type).length;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    let ended = false;
    let handled = false;
    let quiet: NodeJS.Timeout | undefined;
    const handle = (bytes: Buffer): void => {
      if (handled) return;
      handled = true;
      clearTimeout(quiet);
      void this.answer(socket, bytes, () => ended);
    };
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = findRequestEnd(buf);
      if (end !== -1) handle(buf.subarray(0, end));
      else if (buf[buf.length - 1] === 0x0a) {
        clearTimeout(quiet);
        quiet = setTimeout(() => handle(buf), 25); // the original client's framing: a quiet period
      }
    });
    socket.on('end', () => {
      ended = true;
      handle(buf);
    });
  }

  private async answer(socket: Socket, bytes: Buffer, halfClosed: () => boolean): Promise<void> {
    let req: VbsRequest;
    try {
      req = parseRequest(bytes);
    } catch {
      socket.end(reply(-900001, { ret_desc: 'malformed' }));
      return;
    }
    const index = this.seen.length;
    const seen: SeenRequest = { ...req, raw: Buffer.from(bytes), halfClosedBeforeReply: false };
    this.seen.push(seen);
    const answer = await this.handler(req, index);
    seen.halfClosedBeforeReply = halfClosed();
    if (Buffer.isBuffer(answer)) socket.end(answer);
    else if ('close' in answer) socket.end();
    else if ('reset' in answer) {
      if (socket.remotePort !== undefined) socket.resetAndDestroy();
      else socket.destroy(); // a unix socket cannot send RST; an abrupt close is the nearest
    }
    // hang: leave the socket open; stop() or the client closes it
  }
}
