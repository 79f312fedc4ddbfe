// A VBS that is alive but momentarily saturated must not turn a CSI call into UNAVAILABLE. Found by the
// soak load (10,000 concurrent CreateVolume): connects to the emulator's unix socket failed with EAGAIN —
// the kernel's accept queue was full — and the client gave up at once, as if the VBS were down. The
// request was never sent, so the client retries it, backing off, within the call's deadline.
// Here a fake VBS in a child process is stopped (SIGSTOP) with its accept queue filled, so the next
// connect gets EAGAIN; it is resumed shortly after and must then answer the very same call.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SdsClient } from '../src/sds/client.js';
import { SdsError } from '../src/sds/errors.js';

const FAKE_VBS = `
const net = require('node:net');
const server = net.createServer({ allowHalfOpen: true }, (s) => {
  let buf = '';
  s.on('data', (d) => {
    buf += d;
    if (buf.includes('\\n\\n')) s.end('retcode=0\\nproduct=SDSHypervisor\\nversion=1\\napi_version=1\\nhost_id=host-x\\n');
  });
  s.on('error', () => {});
});
server.listen({ path: process.argv[1], backlog: 1 }, () => process.stdout.write('up\\n'));
`;

let dir: string;
let vbs: ChildProcess;
let socket: string;
const fillers: net.Socket[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sds-overload-'));
  socket = join(dir, 'vbs.sock');
  vbs = spawn(process.execPath, ['-e', FAKE_VBS, socket], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => vbs.stdout!.once('data', () => resolve()));
});
afterAll(async () => {
  for (const f of fillers) f.destroy();
  if (vbs.exitCode === null) {
    vbs.kill('SIGCONT');
    vbs.kill('SIGKILL');
    await new Promise((r) => vbs.once('exit', r));
  }
  await rm(dir, { recursive: true, force: true });
});

/** Connects until the kernel refuses with EAGAIN: the accept queue of the stopped server is full. */
async function fillAcceptQueue(path: string): Promise<void> {
  for (let i = 0; i < 64; i++) {
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect(path);
      s.once('connect', () => {
        fillers.push(s);
        resolve(false);
      });
      s.once('error', (err: NodeJS.ErrnoException) => {
        s.destroy();
        resolve(err.code === 'EAGAIN');
      });
    });
    if (refused) return;
  }
  throw new Error('the accept queue never filled');
}

describe('a saturated VBS (accept queue full: EAGAIN on connect)', () => {
  it('is retried within the deadline, not reported Unavailable at once', async () => {
    expect(existsSync(socket)).toBe(true);
    vbs.kill('SIGSTOP');
    await fillAcceptQueue(socket);
    const client = new SdsClient({ addresses: `unix://${socket}`, requestTimeoutMs: 10_000 });
    try {
      const pending = client.systemInfo().then(
        (info) => ({ ok: true as const, info }),
        (err: unknown) => ({ ok: false as const, err }),
      );
      // Still refused a while: the client must be backing off, not failing.
      await new Promise((r) => setTimeout(r, 400));
      for (const f of fillers.splice(0)) f.destroy();
      vbs.kill('SIGCONT');
      const outcome = await pending;
      if (!outcome.ok) throw outcome.err;
      expect(outcome.info.hostId).toBe('host-x');
    } finally {
      client.close();
    }
  });

  it('a VBS that is really gone (nothing listening) is still Unavailable at once', async () => {
    const client = new SdsClient({ addresses: `unix://${join(dir, 'nobody.sock')}`, requestTimeoutMs: 60_000 });
    try {
      const started = Date.now();
      const err = await client.systemInfo().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(SdsError);
      expect((err as SdsError).kind).toBe('Unavailable');
      // No back-off for a refusal: far inside the 60 s deadline (a retry loop would run to it).
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      client.close();
    }
  });
});
