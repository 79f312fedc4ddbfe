// The embedded emulator of all mode (issue #15, item 4): it serves the socket API on its 0600 unix socket
// only (no TCP port unless --vbs-port / SDS_VBS_PORT asks for one) and always requires a token: the one configured
// (here --vbs-token-file, which was not passed on before) or a random one the driver makes at start and
// keeps to itself. A request without the token is AUTH_FAILED; the driver itself is served (Probe ready).
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RetCode } from '../src/protocol/vbs.js';
import { projectRoot } from '../src/util/paths.js';
import { call } from './support/emulator.js';
import { connectCsi } from './support/csi-client.js';
import { type AllModeRun, startAllMode } from './support/all-mode.js';
import { cleanEnv, leftovers } from './support/stack.js';

/**
 * Runs body against a driver in all mode started in a fresh temp dir with the args argsIn(dir) gives,
 * then stops it and checks it left nothing behind.
 */
async function inAllMode(
  prefix: string,
  argsIn: (dir: string) => string[],
  body: (run: AllModeRun, dir: string) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    const run = await startAllMode(dir, argsIn(dir));
    try {
      await body(run, dir);
    } finally {
      await run.stop();
    }
    expect(await leftovers(dir)).toEqual([]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('all mode: the embedded emulator', () => {
  it('with no token configured: a random one, no TCP port, and a request without it is refused', async () => {
    await inAllMode(
      'csi-allmode-token-',
      () => [],
      async (run, dir) => {
        expect(run.info.tcpPort ?? -1).toBe(-1);
        const a = await call(run.info.controlSocket, 'QUERY_CAPABILITY_REQ');
        expect(a.retcode).toBe(RetCode.AUTH_FAILED);
        const b = await call(run.info.controlSocket, 'LIST_VOLUMES_REQ', { auth_token: 'guess' });
        expect(b.retcode).toBe(RetCode.AUTH_FAILED);
        // The random token is root's alone (0600), and `sdshypervisor-csi export` on this host finds it.
        const tokenFile = join(dir, 'data', 'vbs.token');
        expect((statSync(tokenFile).mode & 0o777).toString(8)).toBe('600');
        expect(
          (
            await call(run.info.controlSocket, 'QUERY_CAPABILITY_REQ', {
              auth_token: readFileSync(tokenFile, 'utf8').trim(),
            })
          ).retcode,
        ).toBe(0);
        const clients = connectCsi(run.csi);
        try {
          const created = await clients.controller.CreateVolume({
            name: 'pvc-export',
            capacity_range: { required_bytes: String(1024 * 1024) },
            volume_capabilities: [{ block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
          });
          const out = join(dir, 'out.raw');
          const exported = spawnSync(
            process.execPath,
            [
              join(projectRoot(), 'dist', 'src', 'main.js'),
              'export',
              '--volume',
              created.volume!.volume_id!,
              '--out',
              out,
              '--quiet',
            ],
            {
              env: cleanEnv({ SDS_DATA_DIR: join(dir, 'data') }),
              encoding: 'utf8',
            },
          );
          expect([exported.status, exported.stderr]).toEqual([0, '']);
          expect(statSync(out).size).toBe(1024 * 1024);
        } finally {
          clients.close();
        }
      },
    );
  });

  it('with --vbs-token-file: the emulator requires that very token', async () => {
    const withTokenFile = (dir: string) => {
      const tokenFile = join(dir, 'token');
      writeFileSync(tokenFile, 'file-token-4f2a\n', { mode: 0o600 });
      return [`--vbs-token-file=${tokenFile}`];
    };
    await inAllMode('csi-allmode-token-', withTokenFile, async (run) => {
      expect(run.info.tcpPort ?? -1).toBe(-1);
      expect((await call(run.info.controlSocket, 'QUERY_CAPABILITY_REQ')).retcode).toBe(RetCode.AUTH_FAILED);
      expect(
        (await call(run.info.controlSocket, 'QUERY_CAPABILITY_REQ', { auth_token: 'file-token-4f2a' })).retcode,
      ).toBe(0);
    });
  });

  it('with --vbs-port: the emulator also listens on that TCP port, and requires its token there too', async () => {
    const port = await freePort();
    await inAllMode(
      'csi-allmode-port-',
      () => [`--vbs-port=${port}`],
      async (run, dir) => {
        expect(run.info.tcpPort).toBe(port);
        expect((await call({ port }, 'QUERY_CAPABILITY_REQ')).retcode).toBe(RetCode.AUTH_FAILED);
        const token = readFileSync(join(dir, 'data', 'vbs.token'), 'utf8').trim();
        expect((await call({ port }, 'QUERY_CAPABILITY_REQ', { auth_token: token })).retcode).toBe(0);
      },
    );
  });
});

/** A TCP port free on 127.0.0.1 a moment ago (the kernel's pick, released). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}
