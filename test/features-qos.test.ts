// QoS, cache and thin provisioning end to end over gRPC: StorageClass parameters land in the back end's
// record and, once the volume is attached through the node service, in the host's cgroup v1 blkio throttle
// for the loop device; ControllerModifyVolume changes them live; the chart's VolumeAttributesClasses use
// exactly the keys the driver accepts; GetCapacity before and after thin and thick volumes.
import { readFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitDeviceNumber } from '../src/mount/index.js';
import { projectRoot } from '../src/util/paths.js';
import { failure, status } from './support/csi-client.js';
import { backendPool, blockCap, eventually, MiB, stageVolume, unstageVolume } from './support/features.js';
import { startStack, type Stack } from './support/stack.js';
import { backendVolume } from './support/vbs.js';

const BLKIO = '/sys/fs/cgroup/blkio';
const THROTTLE_FILES = ['read_iops', 'write_iops', 'read_bps', 'write_bps'] as const;
const R = 'sdshypervisor.io/';

let stack: Stack;
let seq = 0;
const volumeName = () => `pvc-qos-${process.pid}-${++seq}`;

beforeAll(async () => {
  stack = await startStack({ mode: 'all', pools: ['pool0:2G'] });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
});

async function create(parameters: Record<string, string>, bytes = 32 * MiB, name = volumeName()) {
  const res = await stack.csi.controller.CreateVolume({
    name,
    volume_capabilities: [blockCap()],
    capacity_range: { required_bytes: String(bytes) },
    parameters,
  });
  return res.volume!.volume_id;
}

/** The throttle rules of one device: `{ read_iops: '300', ... }`, only the files that have a line for it. */
function throttleOf(majMin: string): Partial<Record<(typeof THROTTLE_FILES)[number], string>> {
  const rules: Partial<Record<(typeof THROTTLE_FILES)[number], string>> = {};
  for (const f of THROTTLE_FILES) {
    const line = readFileSync(join(BLKIO, `blkio.throttle.${f}_device`), 'utf8')
      .split('\n')
      .find((l) => l.startsWith(`${majMin} `));
    if (line) rules[f] = line.split(' ')[1]!;
  }
  return rules;
}

async function reported(id: string): Promise<Record<string, string>> {
  return (await stack.csi.controller.ControllerGetVolume({ volume_id: id })).volume!.volume_context;
}

/** The volume's QoS as the back end records it, and as ControllerGetVolume reports it (keys without R). */
async function expectQos(id: string, onBackend: Record<string, string>, inContext: Record<string, string>) {
  expect(await backendVolume(stack.vbsSocket, id)).toMatchObject(onBackend);
  expect(await reported(id)).toMatchObject(Object.fromEntries(Object.entries(inContext).map(([k, v]) => [R + k, v])));
}

/** A device's throttle rules: the same limits for reads and writes. */
const readAndWrite = (iops: string, bps: string) => ({
  read_iops: iops,
  write_iops: iops,
  read_bps: bps,
  write_bps: bps,
});

describe('QoS and cache', () => {
  it('StorageClass QoS and cache land on the back end and on the attached loop device; ControllerModifyVolume changes them live', async () => {
    const id = await create({ maxIOPS: '300', maxMBps: '20', qosLevel: 'high', cache: 'read' });
    await expectQos(
      id,
      { max_iops: '300', max_mbps: '20', IOPRIORITY: '3', cache_policy: 'read' },
      { maxIOPS: '300', maxMBps: '20', qosLevel: 'high', cache: 'read', thin: 'true' },
    );

    const staged = await stageVolume(stack, id, blockCap());
    const { major, minor } = splitDeviceNumber((await stat(staged.target)).rdev);
    const majMin = `${major}:${minor}`;
    const dio = async () => (await readFile(`/sys/dev/block/${majMin}/loop/dio`, 'utf8')).trim();
    expect(throttleOf(majMin)).toEqual(readAndWrite('300', '20000000'));
    expect(await dio()).toBe('0'); // cache read: the host page cache is used

    // VolumeAttributesClass change: only the keys given change, on the live device.
    await stack.csi.controller.ControllerModifyVolume({
      volume_id: id,
      mutable_parameters: { maxIOPS: '1000', qosLevel: 'low', cache: 'none' },
    });
    expect(throttleOf(majMin)).toEqual(readAndWrite('1000', '20000000'));
    expect(await dio()).toBe('1'); // cache none: direct I/O, no second page cache
    await expectQos(
      id,
      { max_iops: '1000', max_mbps: '20', IOPRIORITY: '1', cache_policy: 'none' },
      { maxIOPS: '1000', qosLevel: 'low', cache: 'none' },
    );

    await stack.csi.controller.ControllerModifyVolume({
      volume_id: id,
      mutable_parameters: { maxMBps: '5', cache: 'readwrite' },
    });
    expect(throttleOf(majMin)).toEqual(readAndWrite('1000', '5000000'));
    expect(await dio()).toBe('0');

    // 0 is unlimited: the rules go.
    await stack.csi.controller.ControllerModifyVolume({
      volume_id: id,
      mutable_parameters: { maxIOPS: '0', maxMBps: '0' },
    });
    expect(throttleOf(majMin)).toEqual({});
    await stack.csi.controller.ControllerModifyVolume({ volume_id: id, mutable_parameters: { maxIOPS: '77' } });
    expect(throttleOf(majMin)).toEqual({ read_iops: '77', write_iops: '77' });

    await unstageVolume(stack, staged);
    expect(throttleOf(majMin)).toEqual({}); // removed at detach
    await stack.csi.controller.DeleteVolume({ volume_id: id });
  });

  it('ControllerModifyVolume: advertised, INVALID_ARGUMENT naming the key, NOT_FOUND for an unknown volume', async () => {
    const caps = await stack.csi.controller.ControllerGetCapabilities({});
    expect(caps.capabilities.map((c) => c.rpc?.type)).toContain('MODIFY_VOLUME');
    const id = await create({});
    const bad: Array<[Record<string, string>, string]> = [
      [{ maxIOPS: 'fast' }, 'mutable_parameters.maxIOPS'],
      [{ maxMBps: '-1' }, 'mutable_parameters.maxMBps'],
      [{ qosLevel: 'ultra' }, 'mutable_parameters.qosLevel'],
      [{ cache: 'writeback' }, 'mutable_parameters.cache'],
      [{ thin: 'false' }, '"thin"'],
      [{ pool: 'pool1' }, '"pool"'],
      [{ maxIops: '10' }, '"maxIops"'],
    ];
    for (const [mutable_parameters, key] of bad) {
      const f = await failure(stack.csi.controller.ControllerModifyVolume({ volume_id: id, mutable_parameters }));
      expect({ mutable_parameters, code: f.codeName }).toEqual({ mutable_parameters, code: 'INVALID_ARGUMENT' });
      expect(f.message).toContain(key);
    }
    expect(
      (await failure(stack.csi.controller.ControllerModifyVolume({ volume_id: id, mutable_parameters: {} }))).code,
    ).toBe(status.INVALID_ARGUMENT);
    const missing = await failure(
      stack.csi.controller.ControllerModifyVolume({
        volume_id: 'pvc-no-such-volume',
        mutable_parameters: { maxIOPS: '10' },
      }),
    );
    expect(missing.code).toBe(status.NOT_FOUND);
    // Nothing of the refused changes reached the volume.
    expect(await backendVolume(stack.vbsSocket, id)).toMatchObject({
      max_iops: '0',
      max_mbps: '0',
      IOPRIORITY: '2',
      cache_policy: 'none',
    });
    await stack.csi.controller.DeleteVolume({ volume_id: id });
  });

  it("the chart's VolumeAttributesClasses and StorageClass use exactly the parameters the driver accepts", async () => {
    const chart = join(projectRoot(), 'deploy', 'helm', 'sdshypervisor-csi');
    const values = parseYaml(readFileSync(join(chart, 'values.yaml'), 'utf8')) as {
      storageClasses: Array<{ parameters: Record<string, string> }>;
      volumeAttributesClasses: { items: Array<{ name: string; parameters: Record<string, string> }> };
    };
    const schema = JSON.parse(readFileSync(join(chart, 'values.schema.json'), 'utf8')) as {
      definitions: Record<string, { properties: Record<string, unknown> }>;
    };
    const mutableKeys = Object.keys(schema.definitions.mutableParameters!.properties).sort();
    expect(mutableKeys).toEqual(['cache', 'maxIOPS', 'maxMBps', 'qosLevel']);

    const id = await create(values.storageClasses[0]!.parameters);
    expect(values.volumeAttributesClasses.items.length).toBeGreaterThan(0);
    for (const vac of values.volumeAttributesClasses.items) {
      await stack.csi.controller.ControllerModifyVolume({ volume_id: id, mutable_parameters: vac.parameters });
      const record = await backendVolume(stack.vbsSocket, id);
      const expected: Record<string, string> = {};
      if (vac.parameters.maxIOPS) expected.max_iops = vac.parameters.maxIOPS;
      if (vac.parameters.maxMBps) expected.max_mbps = vac.parameters.maxMBps;
      if (vac.parameters.qosLevel) expected.IOPRIORITY = { high: '3', normal: '2', low: '1' }[vac.parameters.qosLevel]!;
      if (vac.parameters.cache) expected.cache_policy = vac.parameters.cache;
      expect({ vac: vac.name, record }).toMatchObject({ vac: vac.name, record: expected });
    }
    // Every key the schema allows is one the driver takes live.
    for (const key of mutableKeys) {
      const value = { cache: 'read', maxIOPS: '10', maxMBps: '10', qosLevel: 'normal' }[key]!;
      await stack.csi.controller.ControllerModifyVolume({ volume_id: id, mutable_parameters: { [key]: value } });
    }
    await stack.csi.controller.DeleteVolume({ volume_id: id });
  });
});

describe('thin and thick provisioning', () => {
  const capacity = async (parameters: Record<string, string>) =>
    Number(
      (await stack.csi.controller.GetCapacity({ parameters, volume_capabilities: [blockCap()] })).available_capacity,
    );

  it('GetCapacity: a thick volume takes its full size from both figures at once, a thin one only from what may be provisioned', async () => {
    const thin0 = await capacity({});
    const thick0 = await capacity({ thin: 'false' });
    const pool0 = await backendPool(stack.vbsSocket);
    expect(thin0).toBe(Number(pool0.thin_capacity_mb) * MiB);
    expect(thin0).toBeGreaterThan(Number(pool0.total_capacity_mb) * MiB); // over-subscribed: total × 4
    expect(thick0).toBe(Number(pool0.thick_capacity_mb) * MiB);

    // Thick: preallocated, counted fully at once.
    const thick = await create({ thin: 'false' }, 256 * MiB);
    const thickRecord = await backendVolume(stack.vbsSocket, thick);
    expect(thickRecord).toMatchObject({ thin_flag: '0', vol_size: '256', alloc_size: '256' });
    expect(await reported(thick)).toMatchObject({ [`${R}thin`]: 'false', [`${R}allocatedBytes`]: String(256 * MiB) });
    const thin1 = await capacity({});
    const thick1 = await capacity({ thin: 'false' });
    expect(thin1).toBe(thin0 - 256 * MiB);
    expect(thick1).toBeLessThanOrEqual(thick0 - 256 * MiB);
    expect(thick1).toBeGreaterThanOrEqual(thick0 - 258 * MiB); // + a little file system metadata

    // Thin: nothing allocated, so the free space (thick figure) stays; it counts against the over-subscription.
    const thin = await create({ thin: 'true' }, 256 * MiB);
    expect(await backendVolume(stack.vbsSocket, thin)).toMatchObject({
      thin_flag: '1',
      vol_size: '256',
      alloc_size: '0',
    });
    const thin2 = await capacity({});
    const thick2 = await capacity({ thin: 'false' });
    expect(thin2).toBe(thin1 - 256 * MiB);
    expect(thick2).toBeGreaterThanOrEqual(thick1 - MiB);
    expect(thick2).toBeLessThanOrEqual(thick1);

    // Once the over-subscription limit is nearer than the free space, it bounds thick volumes too.
    const big = await create({}, thin2 - thick2 + 64 * MiB);
    const thin3 = await capacity({});
    const thick3 = await capacity({ thin: 'false' });
    expect(thin3).toBe(thick2 - 64 * MiB);
    expect(thick3).toBe(thin3);
    const tooThick = await failure(
      stack.csi.controller.CreateVolume({
        name: volumeName(),
        volume_capabilities: [blockCap()],
        capacity_range: { required_bytes: String(thick3 + 64 * MiB) },
        parameters: { thin: 'false' },
      }),
    );
    expect(tooThick.code).toBe(status.RESOURCE_EXHAUSTED);
    const tooThin = await failure(
      stack.csi.controller.CreateVolume({
        name: volumeName(),
        volume_capabilities: [blockCap()],
        capacity_range: { required_bytes: String(thin3 + 64 * MiB) },
      }),
    );
    expect(tooThin.code).toBe(status.RESOURCE_EXHAUSTED);

    for (const id of [thick, thin, big]) await stack.csi.controller.DeleteVolume({ volume_id: id });
    expect(await capacity({})).toBe(thin0);
    expect(await eventually(async () => Math.abs((await capacity({ thin: 'false' })) - thick0) <= MiB)).toBe(true);
  });
});
