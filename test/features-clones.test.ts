// Linked and full clones end to end over gRPC, with data written and read back through volumes staged by the
// node service: a linked clone shares its source's blocks (reflink) but depends on neither the snapshot nor
// the volume it came from, so deleting those is allowed and loses nothing; deleting the clone gives every
// block back. On a directory pool, which cannot link, an explicit `cloneMode: linked` is FAILED_PRECONDITION
// and a clone without cloneMode is a full copy.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure, status } from './support/csi-client.js';
import {
  backendPool,
  blockCap,
  eventually,
  MiB,
  pattern,
  readDevice,
  sha256,
  stageVolume,
  unstageVolume,
  writeDevice,
  type Staged,
} from './support/features.js';
import { startStack, type Stack } from './support/stack.js';
import { backendVolume, vbsRequest } from './support/vbs.js';

const SIZE = 32 * MiB;

async function volumeWith(stack: Stack, name: string, data: Buffer): Promise<Staged> {
  await stack.csi.controller.CreateVolume({
    name,
    volume_capabilities: [blockCap()],
    capacity_range: { required_bytes: String(data.length) },
  });
  const staged = await stageVolume(stack, name, blockCap());
  await writeDevice(staged.target, data);
  return staged;
}

async function cloneOf(
  stack: Stack,
  name: string,
  source: { snapshot: string } | { volume: string },
  parameters: Record<string, string> = {},
) {
  const volume_content_source =
    'snapshot' in source ? { snapshot: { snapshot_id: source.snapshot } } : { volume: { volume_id: source.volume } };
  return stack.csi.controller.CreateVolume({
    name,
    volume_capabilities: [blockCap()],
    volume_content_source,
    parameters,
    capacity_range: { required_bytes: String(SIZE) },
  });
}

/** The clone's content as a pod would read it: staged on the node, read from its block device. */
async function readThroughNode(stack: Stack, id: string, length: number): Promise<Buffer> {
  const staged = await stageVolume(stack, id, blockCap());
  try {
    return await readDevice(staged.target, length);
  } finally {
    await unstageVolume(stack, staged);
  }
}

/**
 * Deletes `snapshot` and checks each clone still reads `data` (a copy, or its own link to the blocks); then
 * unstages the source and deletes the clones and the source.
 */
async function expectClonesOutliveSnapshot(
  stack: Stack,
  snapshot: string,
  clones: string[],
  data: Buffer,
  source: Staged,
): Promise<void> {
  await stack.csi.controller.DeleteSnapshot({ snapshot_id: snapshot });
  for (const id of clones) expect(sha256(await readThroughNode(stack, id, SIZE)), id).toBe(sha256(data));
  await unstageVolume(stack, source);
  for (const id of [...clones, source.id]) await stack.csi.controller.DeleteVolume({ volume_id: id });
}

function poolFiles(stack: Stack): string[] {
  const root = join(stack.emulatorDataDir, 'pools', 'pool0');
  return [
    ...readdirSync(join(root, 'volumes')).map((f) => `volumes/${f}`),
    ...readdirSync(join(root, 'snapshots')).map((f) => `snapshots/${f}`),
    ...readdirSync(join(root, '.tmp')),
  ];
}

describe('linked clones on an xfs-reflink pool', () => {
  let stack: Stack;
  let baselineMb: number;
  beforeAll(async () => {
    stack = await startStack({ mode: 'all', pools: ['pool0:2G'] });
    baselineMb = Number((await backendPool(stack.vbsSocket)).allocated_mb);
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  /** Every block the test used is back: allocation at its baseline, no file of any object left in the pool. */
  async function expectNothingLeaked() {
    expect(
      await eventually(
        async () => Math.abs(Number((await backendPool(stack.vbsSocket)).allocated_mb) - baselineMb) <= 1,
      ),
    ).toBe(true);
    expect(poolFiles(stack)).toEqual([]);
  }

  it('a linked clone of a snapshot outlives the snapshot: deleted, the clone still reads the data byte for byte; nothing leaks', async () => {
    const data = pattern(SIZE, 'linked-from-snapshot');
    const source = await volumeWith(stack, 'pvc-src-1', data);
    const { snapshot } = await stack.csi.controller.CreateSnapshot({ name: 'snap-1', source_volume_id: 'pvc-src-1' });
    await writeDevice(source.target, Buffer.alloc(MiB, 0xab)); // after the snapshot: not in the clone

    const usedBefore = Number((await backendPool(stack.vbsSocket)).allocated_mb);
    await cloneOf(stack, 'pvc-linked-1', { snapshot: snapshot!.snapshot_id }, { cloneMode: 'linked' });
    expect(await backendVolume(stack.vbsSocket, 'pvc-linked-1')).toMatchObject({
      clone_type: 'linked',
      src_type: 'snapshot',
      src_name: 'snap-1',
    });
    // Copy-on-write: the clone took (almost) no new blocks.
    expect(Number((await backendPool(stack.vbsSocket)).allocated_mb) - usedBefore).toBeLessThan(4);
    const snapRecord = (await vbsRequest(stack.vbsSocket, 'QUERY_SNAPSHOT_REQ', { snap_name: 'snap-1' })).records(
      'snapshot',
    )[0];
    expect(snapRecord).toMatchObject({ status: '2', dependents: '1' });

    // Deleting the snapshot that a linked clone came from is allowed, and final.
    await stack.csi.controller.DeleteSnapshot({ snapshot_id: 'snap-1' });
    expect((await failure(stack.csi.controller.GetSnapshot({ snapshot_id: 'snap-1' }))).code).toBe(status.NOT_FOUND);
    expect((await stack.csi.controller.ListSnapshots({ source_volume_id: 'pvc-src-1' })).entries).toEqual([]);
    expect(sha256(await readThroughNode(stack, 'pvc-linked-1', SIZE))).toBe(sha256(data));
    expect(await stack.csi.controller.ControllerGetVolume({ volume_id: 'pvc-linked-1' })).toMatchObject({
      status: { volume_condition: { abnormal: false } },
      volume: {
        content_source: { snapshot: { snapshot_id: 'snap-1' } },
        volume_context: { 'sdshypervisor.io/cloneMode': 'linked' },
      },
    });

    // The source changed after the snapshot; the clone did not see it and the source kept its own data.
    const sourceNow = await readDevice(source.target, SIZE);
    expect(sha256(sourceNow)).toBe(sha256(Buffer.concat([Buffer.alloc(MiB, 0xab), data.subarray(MiB)])));
    await unstageVolume(stack, source);
    await stack.csi.controller.DeleteVolume({ volume_id: 'pvc-linked-1' });
    await stack.csi.controller.DeleteVolume({ volume_id: 'pvc-src-1' });
    await expectNothingLeaked();
  });

  it('a linked clone of a volume outlives the volume; the clone is written independently; nothing leaks', async () => {
    const data = pattern(SIZE, 'linked-from-volume');
    const source = await volumeWith(stack, 'pvc-src-2', data);
    const clone = await cloneOf(stack, 'pvc-linked-2', { volume: 'pvc-src-2' }, { cloneMode: 'linked' });
    expect(clone.volume?.content_source?.volume?.volume_id).toBe('pvc-src-2');
    expect(await backendVolume(stack.vbsSocket, 'pvc-linked-2')).toMatchObject({
      clone_type: 'linked',
      src_type: 'volume',
      src_name: 'pvc-src-2',
    });
    await unstageVolume(stack, source);
    await stack.csi.controller.DeleteVolume({ volume_id: 'pvc-src-2' });
    expect(await backendVolume(stack.vbsSocket, 'pvc-src-2')).toBeUndefined();

    const staged = await stageVolume(stack, 'pvc-linked-2', blockCap());
    expect(sha256(await readDevice(staged.target, SIZE))).toBe(sha256(data));
    await writeDevice(staged.target, Buffer.alloc(2 * MiB, 0x11)); // its own blocks now (copy on write)
    expect(sha256(await readDevice(staged.target, SIZE))).toBe(
      sha256(Buffer.concat([Buffer.alloc(2 * MiB, 0x11), data.subarray(2 * MiB)])),
    );
    await unstageVolume(stack, staged);
    await stack.csi.controller.DeleteVolume({ volume_id: 'pvc-linked-2' });
    await expectNothingLeaked();
  });

  it('a full clone is an independent copy: it takes its own blocks, and defaults stay linked where the pool can link', async () => {
    const data = pattern(SIZE, 'full-clone');
    const source = await volumeWith(stack, 'pvc-src-3', data);
    await stack.csi.controller.CreateSnapshot({ name: 'snap-3', source_volume_id: 'pvc-src-3' });
    const before = Number((await backendPool(stack.vbsSocket)).allocated_mb);
    await cloneOf(stack, 'pvc-full-3', { snapshot: 'snap-3' }, { cloneMode: 'full' });
    expect(await backendVolume(stack.vbsSocket, 'pvc-full-3')).toMatchObject({ clone_type: 'full', alloc_size: '32' });
    expect(Number((await backendPool(stack.vbsSocket)).allocated_mb) - before).toBeGreaterThanOrEqual(32);
    await cloneOf(stack, 'pvc-default-3', { snapshot: 'snap-3' });
    expect(await backendVolume(stack.vbsSocket, 'pvc-default-3')).toMatchObject({ clone_type: 'linked' });
    await expectClonesOutliveSnapshot(stack, 'snap-3', ['pvc-full-3', 'pvc-default-3'], data, source);
    await expectNothingLeaked();
  });
});

describe('clones on a directory pool (no reflink)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ mode: 'all', pools: ['pool0:1G'], emulatorArgs: ['--pool-type', 'directory'] });
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('refuses an explicit cloneMode linked with FAILED_PRECONDITION, and makes full copies when cloneMode is not given', async () => {
    expect((await backendPool(stack.vbsSocket)).linked_clone).toBe('0');
    const data = pattern(SIZE, 'directory-pool');
    const source = await volumeWith(stack, 'pvc-dir-src', data);
    await stack.csi.controller.CreateSnapshot({ name: 'snap-dir', source_volume_id: 'pvc-dir-src' });

    for (const from of [{ snapshot: 'snap-dir' }, { volume: 'pvc-dir-src' }] as const) {
      const f = await failure(cloneOf(stack, 'pvc-dir-linked', from, { cloneMode: 'linked' }));
      expect({ from, code: f.codeName }).toEqual({ from, code: 'FAILED_PRECONDITION' });
      expect(f.message).toMatch(/parameters\.cloneMode: pool pool0 \(directory\) cannot make linked clones/);
    }
    expect(await backendVolume(stack.vbsSocket, 'pvc-dir-linked')).toBeUndefined();

    await cloneOf(stack, 'pvc-dir-default', { snapshot: 'snap-dir' });
    await cloneOf(stack, 'pvc-dir-full', { volume: 'pvc-dir-src' }, { cloneMode: 'full' });
    expect(await backendVolume(stack.vbsSocket, 'pvc-dir-default')).toMatchObject({
      clone_type: 'full',
      src_type: 'snapshot',
    });
    expect(await backendVolume(stack.vbsSocket, 'pvc-dir-full')).toMatchObject({
      clone_type: 'full',
      src_type: 'volume',
    });
    await expectClonesOutliveSnapshot(stack, 'snap-dir', ['pvc-dir-default', 'pvc-dir-full'], data, source);
    expect(poolFiles(stack)).toEqual([]);
  });
});
