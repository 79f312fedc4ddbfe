// The SDSHypervisor daemon crashes (kill -9) and comes back on the same sockets under a running driver
// process: meanwhile Probe and /healthz say not ready and RPCs answer UNAVAILABLE; afterwards both succeed
// again, and the driver was never restarted.
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { VolumeCapability } from '../src/generated/csi/v1/VolumeCapability.js';
import { failure } from './support/csi-client.js';
import { eventually, httpRequest, logLines, metricsAddressFrom, Scrape } from './support/ops.js';
import { startStack, type Stack } from './support/stack.js';

const blockCap: VolumeCapability = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
const MiB = 1024 * 1024;

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ mode: 'controller', driverArgs: ['--metrics-address=127.0.0.1:0'] });
});
afterAll(async () => {
  await stack?.stop();
});

it('reconnects after the emulator is killed and restarted, without a restart of its own', async () => {
  const address = metricsAddressFrom(stack.driverLog());
  const driverPid = stack.driverProcess()!.pid;
  const create = (name: string) =>
    stack.csi.controller.CreateVolume({
      name,
      volume_capabilities: [blockCap],
      capacity_range: { required_bytes: String(64 * MiB) },
    });
  await create('pvc-before-crash');

  for (let round = 1; round <= 2; round++) {
    await stack.killEmulator();
    expect((await stack.csi.identity.Probe({}, { timeoutMs: 10_000 })).ready?.value).toBe(false);
    const health = await httpRequest(`http://${address}/healthz`);
    expect(health.status).toBe(503);
    expect(health.body).toMatch(/^not ready: QUERY_CAPABILITY_REQ: no VBS could be reached/);
    expect((await failure(create(`pvc-during-crash-${round}`))).codeName).toBe('UNAVAILABLE');
    expect((await failure(stack.csi.controller.ListVolumes({}))).codeName).toBe('UNAVAILABLE');

    await stack.startEmulator();
    expect((await stack.csi.identity.Probe({})).ready?.value).toBe(true);
    expect(await httpRequest(`http://${address}/healthz`)).toMatchObject({ status: 200, body: 'ok\n' });
    expect((await create(`pvc-during-crash-${round}`)).volume?.volume_id).toBe(`pvc-during-crash-${round}`);
  }
  const names = (await stack.csi.controller.ListVolumes({})).entries.map((e) => e.volume?.volume_id).sort();
  expect(names).toEqual(['pvc-before-crash', 'pvc-during-crash-1', 'pvc-during-crash-2']);

  // The same process throughout; the outage and the recovery are one line each per round, not one per probe.
  expect(stack.driverProcess()!.pid).toBe(driverPid);
  expect(stack.driverProcess()!.exitCode).toBeNull();
  // (The log is written asynchronously: the last line may trail the last answer.)
  await eventually(
    'the second recovery line',
    () => logLines(stack.driverLog()).filter((l) => l.msg === 'back end ready again').length >= 2,
  );
  const lines = logLines(stack.driverLog());
  expect(lines.filter((l) => l.msg?.startsWith('back end not ready'))).toHaveLength(2);
  expect(lines.filter((l) => l.msg === 'back end ready again')).toHaveLength(2);
  const scrape = await Scrape.of(address);
  expect(scrape.value('sdshypervisor_csi_rpc_requests_total', { method: 'CreateVolume', code: 'UNAVAILABLE' })).toBe(2);
  expect(
    scrape.value('sdshypervisor_csi_backend_request_duration_seconds_count', {
      request_type: 'QUERY_CAPABILITY_REQ',
      result: 'Unavailable',
    }),
  ).toBeGreaterThanOrEqual(2);
});
