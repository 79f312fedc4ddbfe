// /metrics and /healthz of the real driver process (--mode=all over the emulator process, real sds_cli):
// scraped over HTTP after real CSI calls, the counters must have moved by exactly what was done.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VolumeCapability } from '../src/generated/csi/v1/VolumeCapability.js';
import { failure, settle } from './support/csi-client.js';
import { eventually, httpRequest, metricsAddressFrom, Scrape } from './support/ops.js';
import { startStack, type Stack } from './support/stack.js';

const P = 'sdshypervisor_csi_';
const MiB = 1024 * 1024;
const blockCap: VolumeCapability = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };

let stack: Stack;
let address: string;

beforeAll(async () => {
  stack = await startStack({ mode: 'all', driverArgs: ['--metrics-address=127.0.0.1:0'] });
  address = metricsAddressFrom(stack.driverLog());
});
afterAll(async () => {
  await stack?.stop();
});

/** How much each counter-like sample moved between two scrapes. */
function delta(before: Scrape, after: Scrape, name: string, labels: Record<string, string>): number {
  return after.value(name, labels) - before.value(name, labels);
}

describe('metrics of the running driver', () => {
  // First, before anything filled the back-end cache: a frozen back end must not hang the scrape.
  it('a scrape answers while the back end hangs: RPC series, process metrics, no pool figures, backend_up 0', async () => {
    const thaw = stack.freezeEmulator();
    try {
      const scrape = await Scrape.of(address);
      expect(scrape.value(`${P}rpc_requests_total`, { method: 'Probe', code: 'OK' })).toBeGreaterThanOrEqual(1);
      expect(scrape.has('process_cpu_seconds_total')).toBe(true);
      expect(scrape.has('nodejs_eventloop_lag_seconds')).toBe(true);
      expect(scrape.all(`${P}volumes`)).toEqual([]);
      expect(scrape.value(`${P}backend_up`)).toBe(0);
      const health = await httpRequest(`http://${address}/healthz`);
      expect(health.status).toBe(503);
      expect(health.body).toMatch(/^not ready: QUERY_CAPABILITY_REQ/);
    } finally {
      thaw();
    }
    const health = await httpRequest(`http://${address}/healthz`);
    expect(health).toMatchObject({ status: 200, body: 'ok\n' });
  });

  it('counts RPCs by method and code, with durations, back-end requests and sds_cli runs', async () => {
    const before = await Scrape.of(address);
    const { volume } = await stack.csi.controller.CreateVolume({
      name: 'pvc-metrics-1',
      volume_capabilities: [blockCap],
      capacity_range: { required_bytes: String(64 * MiB) },
    });
    expect(
      (await failure(stack.csi.controller.CreateVolume({ name: 'pvc-metrics-bad', volume_capabilities: [] }))).codeName,
    ).toBe('INVALID_ARGUMENT');
    await stack.csi.controller.ListVolumes({});
    // Unstaging a volume that is not attached runs sds_cli querydev (not attached) and detach.
    await stack.csi.node.NodeUnstageVolume({
      volume_id: volume!.volume_id,
      staging_target_path: `${stack.dir}/staging-1`,
    });
    expect(
      (
        await failure(
          stack.csi.node.NodeUnstageVolume({
            volume_id: 'pvc-metrics-missing',
            staging_target_path: `${stack.dir}/staging-2`,
          }),
        )
      ).codeName,
    ).toBe('NOT_FOUND');
    await stack.csi.controller.DeleteVolume({ volume_id: volume!.volume_id });
    const after = await Scrape.of(address);

    const rpcs: Array<[string, string, number]> = [
      ['CreateVolume', 'OK', 1],
      ['CreateVolume', 'INVALID_ARGUMENT', 1],
      ['ListVolumes', 'OK', 1],
      ['NodeUnstageVolume', 'OK', 1],
      ['NodeUnstageVolume', 'NOT_FOUND', 1],
      ['DeleteVolume', 'OK', 1],
      ['DeleteVolume', 'NOT_FOUND', 0],
    ];
    for (const [method, code, n] of rpcs) {
      expect(delta(before, after, `${P}rpc_requests_total`, { method, code }), `${method} ${code}`).toBe(n);
      expect(
        delta(before, after, `${P}rpc_duration_seconds_count`, { method, code }),
        `${method} ${code} duration count`,
      ).toBe(n);
    }
    const create = { method: 'CreateVolume', code: 'OK' };
    expect(after.value(`${P}rpc_duration_seconds_bucket`, { ...create, le: '+Inf' })).toBe(
      after.value(`${P}rpc_duration_seconds_count`, create),
    );
    expect(after.value(`${P}rpc_duration_seconds_bucket`, { ...create, le: '60' })).toBe(
      after.value(`${P}rpc_duration_seconds_count`, create),
    );
    expect(after.all(`${P}rpc_duration_seconds_bucket`, create).map((s) => s.labels.le)).toEqual([
      '0.001',
      '0.0025',
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.1',
      '0.25',
      '0.5',
      '1',
      '2.5',
      '5',
      '10',
      '30',
      '60',
      '+Inf',
    ]);
    expect(after.value(`${P}rpc_duration_seconds_sum`, create)).toBeGreaterThan(0);
    expect(after.value(`${P}rpc_in_flight`, { method: 'CreateVolume' })).toBe(0);

    const backend = `${P}backend_request_duration_seconds_count`;
    expect(delta(before, after, backend, { request_type: 'CREATE_VOLUME_REQ', result: 'ok' })).toBe(1);
    expect(delta(before, after, backend, { request_type: 'DELETE_VOLUME_REQ', result: 'ok' })).toBe(1);
    // A plain create is one request (no look-up first), and our VBS says in its reply that the delete is
    // done, so nothing is polled.
    expect(delta(before, after, backend, { request_type: 'QUERY_VOLUME_REQ', result: 'NotFound' })).toBe(0);

    const cli = `${P}connector_call_duration_seconds_count`;
    expect(delta(before, after, cli, { method: 'querydev', result: 'ok' })).toBe(1);
    expect(delta(before, after, cli, { method: 'detach', result: 'ok' })).toBe(1);
    expect(delta(before, after, cli, { method: 'querydev', result: 'VolumeNotFound' })).toBe(1);
    expect(delta(before, after, cli, { method: 'attach', result: 'ok' })).toBe(0);
  });

  it('shows an RPC in flight while the back end holds it', async () => {
    const thaw = stack.freezeEmulator();
    let pending;
    try {
      pending = settle(
        stack.csi.controller.CreateVolume({
          name: 'pvc-metrics-slow',
          volume_capabilities: [blockCap],
          capacity_range: { required_bytes: String(64 * MiB) },
        }),
      );
      await eventually(
        'CreateVolume in flight',
        async () => (await Scrape.of(address)).value(`${P}rpc_in_flight`, { method: 'CreateVolume' }) === 1,
      );
    } finally {
      thaw();
    }
    expect((await pending).ok).toBe(true);
    expect((await Scrape.of(address)).value(`${P}rpc_in_flight`, { method: 'CreateVolume' })).toBe(0);
  });

  it('reports volumes per pool and pool capacities from the back end', async () => {
    const names = ['pvc-metrics-a', 'pvc-metrics-b'];
    for (const name of names)
      await stack.csi.controller.CreateVolume({
        name,
        volume_capabilities: [blockCap],
        capacity_range: { required_bytes: String(96 * MiB) },
      });
    const listed = (await stack.csi.controller.ListVolumes({})).entries.map((e) => e.volume!);
    const provisioned = listed.reduce((sum, v) => sum + Number(v.capacity_bytes), 0);
    let scrape: Scrape | undefined;
    // The figures are cached for 10 s: wait for a collection that saw the new volumes.
    await eventually('volumes{pool0} to count the new volumes', async () => {
      scrape = await Scrape.of(address);
      return scrape.value(`${P}volumes`, { pool: 'pool0' }) === listed.length;
    });
    const capacity = (kind: string) => scrape!.value(`${P}pool_capacity_bytes`, { pool: 'pool0', kind });
    expect(listed.length).toBe(3);
    expect(capacity('provisioned')).toBe(provisioned);
    expect(capacity('total')).toBeGreaterThan(3 * 1024 * MiB);
    expect(capacity('free')).toBeGreaterThan(0);
    expect(capacity('free')).toBeLessThanOrEqual(capacity('total'));
    expect(capacity('allocated')).toBeGreaterThanOrEqual(0);
    const { available_capacity } = await stack.csi.controller.GetCapacity({ volume_capabilities: [blockCap] });
    expect(capacity('thin_available')).toBe(Number(available_capacity));
    expect(scrape!.value(`${P}backend_up`)).toBe(1);
  });

  it('serves build info, 404 for other paths and 405 for other methods', async () => {
    const scrape = await Scrape.of(address);
    expect(scrape.all(`${P}build_info`)).toEqual([
      {
        name: `${P}build_info`,
        labels: { version: expect.stringMatching(/^\d+\.\d+\.\d+/), mode: 'all', driver_name: 'csi.sdshypervisor.io' },
        value: 1,
      },
    ]);
    const metrics = await httpRequest(`http://${address}/metrics`);
    expect(metrics.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await httpRequest(`http://${address}/nope`)).toMatchObject({ status: 404 });
    expect(await httpRequest(`http://${address}/`)).toMatchObject({ status: 404 });
    expect(await httpRequest(`http://${address}/metrics`, { method: 'POST' })).toMatchObject({
      status: 405,
      headers: { allow: 'GET, HEAD' },
    });
    expect(await httpRequest(`http://${address}/healthz`, { method: 'HEAD' })).toMatchObject({ status: 200, body: '' });
  });
});
