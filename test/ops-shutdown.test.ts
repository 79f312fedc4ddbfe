// Graceful shutdown of the real driver process: SIGTERM during a slow RPC (the emulator frozen with SIGSTOP)
// lets it finish while new calls are refused, then the socket is removed, the metrics listener and the
// back-end client are closed and the process exits 0. The drain is bounded by --shutdown-grace-ms, and a
// second SIGTERM exits at once with status 1.
import { lstat } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VolumeCapability } from '../src/generated/csi/v1/VolumeCapability.js';
import { connectCsi, settle } from './support/csi-client.js';
import { eventually, httpRequest, logLines, metricsAddressFrom, Scrape } from './support/ops.js';
import { startStack, type Stack } from './support/stack.js';

const blockCap: VolumeCapability = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
const MiB = 1024 * 1024;

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ mode: 'controller', startDriver: false });
});
afterAll(async () => {
  await stack?.stop();
});

async function gone(path: string): Promise<boolean> {
  return lstat(path).then(
    () => false,
    (err: NodeJS.ErrnoException) => err.code === 'ENOENT',
  );
}

/** Starts the driver and a CreateVolume that hangs on the frozen emulator; returns the call and the thaw. */
async function slowCallUnderWay(name: string, driverArgs: string[]) {
  const mark = stack.driverLog().length;
  await stack.startDriver(['--metrics-address=127.0.0.1:0', ...driverArgs]);
  /** this run's log lines */
  const log = () => logLines(stack.driverLog().slice(mark));
  const address = metricsAddressFrom(stack.driverLog());
  const thaw = stack.freezeEmulator();
  const call = settle(
    stack.csi.controller.CreateVolume(
      { name, volume_capabilities: [blockCap], capacity_range: { required_bytes: String(64 * MiB) } },
      { timeoutMs: 30_000 },
    ),
  );
  // Wait until the driver holds it (a scrape may take up to 2 s while the back end is frozen).
  await eventually(
    'CreateVolume in flight',
    async () => (await Scrape.of(address)).value('sdshypervisor_csi_rpc_in_flight', { method: 'CreateVolume' }) === 1,
  );
  return { address, thaw, call, log, exited: stack.driverExited(), driver: stack.driverProcess()! };
}

describe('SIGTERM', () => {
  it('lets a slow RPC finish, refuses new calls meanwhile, then removes the socket, closes everything and exits 0', async () => {
    const { address, thaw, call, log, exited, driver } = await slowCallUnderWay('pvc-drained', []);
    try {
      driver.kill('SIGTERM');
      await eventually('the drain to begin', () => log().some((l) => l.msg === 'draining in-flight RPCs'));
      // A new client (a new connection) is refused while the old call drains; the process is still there.
      const late = connectCsi(stack.csiSocket);
      try {
        const refused = await settle(late.identity.Probe({}, { timeoutMs: 5_000 }));
        expect(refused).toMatchObject({ ok: false, codeName: 'UNAVAILABLE' });
      } finally {
        late.close();
      }
      const health = await httpRequest(`http://${address}/healthz`);
      expect(health).toMatchObject({ status: 503, body: 'not ready: shutting down\n' });
      expect(driver.exitCode).toBeNull();
    } finally {
      thaw();
    }
    const answer = await call;
    expect(answer.ok).toBe(true);
    expect(await exited).toBe(0);
    expect(await gone(stack.csiSocket)).toBe(true);
    await expect(httpRequest(`http://${address}/healthz`, { timeoutMs: 2_000 })).rejects.toMatchObject({
      code: 'ECONNREFUSED',
    });
    const msgs = log().map((l) => l.msg);
    const steps = [
      'stopping: draining in-flight calls',
      'draining in-flight RPCs',
      'CSI endpoint closed',
      'back-end client closed',
    ].map((m) => msgs.indexOf(m));
    expect(steps.every((i) => i >= 0)).toBe(true);
    expect(steps).toEqual([...steps].sort((a, b) => a - b));
    expect(msgs).not.toContain('grace period over: in-flight RPCs cut');
    // The drained call's own line: it finished OK after the signal.
    expect(log().find((l) => l.msg === 'rpc' && l.method === 'CreateVolume')).toMatchObject({
      code: 'OK',
      volumeId: 'pvc-drained',
    });
  });

  it('waits no longer than --shutdown-grace-ms: the call still hanging is cut and the process exits 0', async () => {
    const { thaw, call, log, exited } = await slowCallUnderWay('pvc-grace-over', ['--shutdown-grace-ms=1000']);
    try {
      stack.driverProcess()!.kill('SIGTERM');
      // Exits although the back end is still frozen.
      expect(await exited).toBe(0);
      const answer = await call;
      expect(answer.ok).toBe(false);
      expect(await gone(stack.csiSocket)).toBe(true);
      expect(log().some((l) => l.msg === 'grace period over: in-flight RPCs cut')).toBe(true);
    } finally {
      thaw();
    }
  });

  it('a second SIGTERM stops at once with exit status 1, and the socket is removed', async () => {
    const { thaw, call, log, exited, driver } = await slowCallUnderWay('pvc-second-signal', [
      '--shutdown-grace-ms=60000',
    ]);
    try {
      driver.kill('SIGTERM');
      const first = Date.now();
      await eventually('the drain to begin', () => log().some((l) => l.msg === 'draining in-flight RPCs'));
      // The driver takes a repeat within 100 ms (src/main.ts DUPLICATE_SIGNAL_MS) as the same signal
      // delivered twice (terminal + npm); a second request comes later.
      await new Promise((r) => setTimeout(r, Math.max(0, first + 250 - Date.now())));
      driver.kill('SIGTERM');
      expect(await exited).toBe(1);
      expect((await call).ok).toBe(false);
      expect(await gone(stack.csiSocket)).toBe(true);
      expect(log().some((l) => l.msg === 'second signal: stopping at once')).toBe(true);
    } finally {
      thaw();
    }
    // A driver that exits 1 fails stack.stop(): leave a clean one behind.
    await stack.startDriver();
  });
});
