// CSI SnapshotMetadata over the real gRPC socket against the real stack (--mode=all): a raw block volume
// published through the node service is written with a known sparse pattern; GetMetadataAllocated lists
// exactly those ranges, GetMetadataDelta exactly the blocks written between two snapshots — byte-checked
// against the snapshots' back-end files and through volumes restored from them. Stream rules (ascending,
// non-overlapping ranges; max_results; starting_offset resume) and the error codes of the spec.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GetMetadataAllocatedResponse__Output } from '../src/generated/csi/v1/GetMetadataAllocatedResponse.js';
import { failure, type ControllerApi, type SnapshotMetadataApi } from './support/csi-client.js';
import { blockCap, MiB, publishVolume, removeVolume, type Published } from './support/published.js';
import { startStack, type Stack } from './support/stack.js';
import { mergeSpans, readAt, writeAt, type ByteSpan } from './support/block-io.js';

const B = 4096;
type Range = ByteSpan;

let stack: Stack;
let ctl: ControllerApi;
let meta: SnapshotMetadataApi;

/** The ranges of a stream, checked against the stream rules of the spec. */
function rangesOf(
  messages: GetMetadataAllocatedResponse__Output[],
  capacity: number,
  startingOffset = 0,
  maxResults = 0,
): Range[] {
  expect(messages.length).toBeGreaterThan(0);
  const out: Range[] = [];
  for (const m of messages) {
    expect(m.block_metadata_type).toBe('VARIABLE_LENGTH');
    expect(m.volume_capacity_bytes).toBe(String(capacity));
    if (maxResults > 0) expect(m.block_metadata.length).toBeLessThanOrEqual(maxResults);
    for (const b of m.block_metadata) {
      const r = { offset: Number(b.byte_offset), length: Number(b.size_bytes) };
      expect(r.length).toBeGreaterThan(0);
      const last = out[out.length - 1];
      // Strictly ascending, never overlapping, also across messages; merged where they touch.
      if (last) expect(r.offset).toBeGreaterThan(last.offset + last.length - 1);
      else expect(r.offset + r.length).toBeGreaterThan(startingOffset);
      out.push(r);
    }
  }
  return mergeSpans(out);
}

const snapshotFile = (name: string) => join(stack.emulatorDataDir, 'pools', 'pool0', 'snapshots', name);

describe('CSI SnapshotMetadata', () => {
  let vol: Published;
  const SIZE = 128 * MiB;
  // A sparse pattern: single blocks, a run, blocks on both sides of a MiB boundary, the last block.
  const WRITTEN: Range[] = [
    { offset: 0, length: B },
    { offset: 5 * B, length: 3 * B },
    { offset: MiB - B, length: 2 * B },
    { offset: 40 * MiB, length: 64 * 1024 },
    { offset: 77 * MiB + 3 * B, length: B },
    { offset: SIZE - B, length: B },
  ];
  const CHANGED: Range[] = [
    { offset: B, length: B }, // touches the first range
    { offset: 6 * B, length: B }, // inside the run
    { offset: 90 * MiB, length: 3 * B }, // over a hole
    { offset: SIZE - B, length: B }, // the last block again
  ];

  beforeAll(async () => {
    stack = await startStack({ mode: 'all', pools: ['pool0:2G'] });
    ctl = stack.csi.controller;
    meta = stack.csi.snapshotMetadata;
    vol = await publishVolume(stack, 'pvc-meta', blockCap(), { bytes: SIZE });
    write(vol.target, WRITTEN, 0xa1);
    await ctl.CreateSnapshot({ name: 'snapshot-meta-1', source_volume_id: vol.id });
    write(vol.target, CHANGED, 0xb2);
    await ctl.CreateSnapshot({ name: 'snapshot-meta-2', source_volume_id: vol.id });
  });

  afterAll(async () => {
    if (vol) await removeVolume(stack, vol);
    for (const s of ['snapshot-meta-1', 'snapshot-meta-2', 'snapshot-other'])
      await ctl.DeleteSnapshot({ snapshot_id: s }).catch(() => undefined);
    await ctl.DeleteVolume({ volume_id: 'pvc-meta-other' }).catch(() => undefined);
    await stack?.stop();
  });

  it('GetMetadataAllocated lists exactly the written ranges of a sparse snapshot', async () => {
    const messages = await meta.GetMetadataAllocated({ snapshot_id: 'snapshot-meta-1' });
    expect(rangesOf(messages, SIZE)).toEqual(mergeSpans(WRITTEN));
    // One tuple per message with max_results 1; the same ranges.
    const one = await meta.GetMetadataAllocated({ snapshot_id: 'snapshot-meta-1', max_results: 1 });
    expect(one.length).toBe(mergeSpans(WRITTEN).length);
    expect(rangesOf(one, SIZE, 0, 1)).toEqual(mergeSpans(WRITTEN));
    // Bytes: every written block holds the pattern in the snapshot's file, every other block reads zeros.
    const file = snapshotFile('snapshot-meta-1');
    for (const r of mergeSpans(WRITTEN))
      expect(readAt(file, r.offset, r.length).equals(Buffer.alloc(r.length, 0xa1))).toBe(true);
    expect(readAt(file, 2 * MiB, MiB).equals(Buffer.alloc(MiB))).toBe(true);
  });

  it('resumes at starting_offset: the first range ends after it', async () => {
    const from = 40 * MiB + 8192;
    const messages = await meta.GetMetadataAllocated({ snapshot_id: 'snapshot-meta-1', starting_offset: String(from) });
    const ranges = rangesOf(messages, SIZE, from);
    expect(ranges[0]!.offset).toBeLessThanOrEqual(from);
    expect(ranges).toEqual(
      mergeSpans(WRITTEN)
        .filter((r) => r.offset + r.length > from)
        .map((r) => (r.offset < from ? { offset: 40 * MiB + 8192, length: r.offset + r.length - from } : r)),
    );
    // At the very end: one message, no ranges.
    const end = await meta.GetMetadataAllocated({ snapshot_id: 'snapshot-meta-1', starting_offset: String(SIZE) });
    expect(end).toHaveLength(1);
    expect(end[0]!.block_metadata).toEqual([]);
  });

  it('GetMetadataDelta lists exactly the blocks written between the snapshots, byte-checked', async () => {
    const messages = await meta.GetMetadataDelta({
      base_snapshot_id: 'snapshot-meta-1',
      target_snapshot_id: 'snapshot-meta-2',
      max_results: 2,
    });
    const delta = rangesOf(messages, SIZE, 0, 2);
    expect(delta).toEqual(mergeSpans(CHANGED));
    // Against the back-end files: blocks outside the delta are equal, blocks inside hold the new bytes.
    const [f1, f2] = [snapshotFile('snapshot-meta-1'), snapshotFile('snapshot-meta-2')];
    for (let off = 0; off < SIZE; off += 4 * MiB) {
      const a = readAt(f1, off, 4 * MiB);
      const b = readAt(f2, off, 4 * MiB);
      for (let k = 0; k < 4 * MiB; k += B) {
        const inDelta = delta.some((r) => off + k >= r.offset && off + k < r.offset + r.length);
        expect(a.subarray(k, k + B).equals(b.subarray(k, k + B))).toBe(!inDelta);
      }
    }
    // Through a volume restored from the later snapshot (published raw on this node): the delta's bytes.
    const restored = await publishVolume(stack, 'pvc-meta-restored', blockCap(), {
      bytes: SIZE,
      snapshotId: 'snapshot-meta-2',
    });
    try {
      for (const r of delta)
        expect(readAt(restored.target, r.offset, r.length).equals(Buffer.alloc(r.length, 0xb2))).toBe(true);
    } finally {
      await removeVolume(stack, restored);
    }
  });

  it('answers the spec codes: INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE', async () => {
    await ctl.CreateVolume({
      name: 'pvc-meta-other',
      volume_capabilities: [blockCap()],
      capacity_range: { required_bytes: String(16 * MiB) },
    });
    await ctl.CreateSnapshot({ name: 'snapshot-other', source_volume_id: 'pvc-meta-other' });
    // The requests of the table: allocated blocks of snapshot-meta-1, or the delta from base to target.
    const allocated = (more: { starting_offset?: string; max_results?: number }) => () =>
      meta.GetMetadataAllocated({ snapshot_id: 'snapshot-meta-1', ...more });
    const delta =
      (base: string, target: string, more: { starting_offset?: string } = {}) =>
      () =>
        meta.GetMetadataDelta({ base_snapshot_id: base, target_snapshot_id: target, ...more });
    const cases: Array<[() => Promise<unknown>, string, string]> = [
      [() => meta.GetMetadataAllocated({ snapshot_id: '' }), 'INVALID_ARGUMENT', 'snapshot_id is required'],
      [() => meta.GetMetadataAllocated({ snapshot_id: 'snapshot-none' }), 'NOT_FOUND', 'snapshot-none'],
      [() => meta.GetMetadataAllocated({ snapshot_id: 'bad id!' }), 'NOT_FOUND', 'bad id!'],
      [allocated({ starting_offset: '-1' }), 'OUT_OF_RANGE', 'negative'],
      [allocated({ starting_offset: String(SIZE + 1) }), 'OUT_OF_RANGE', 'beyond'],
      [allocated({ max_results: -1 }), 'INVALID_ARGUMENT', 'max_results'],
      [delta('', 'snapshot-meta-2'), 'INVALID_ARGUMENT', 'base_snapshot_id is required'],
      [delta('snapshot-meta-1', ''), 'INVALID_ARGUMENT', 'target_snapshot_id is required'],
      [delta('snapshot-none', 'snapshot-meta-2'), 'NOT_FOUND', 'base_snapshot_id'],
      [delta('snapshot-meta-1', 'snapshot-none'), 'NOT_FOUND', 'target_snapshot_id'],
      [delta('snapshot-other', 'snapshot-meta-2'), 'INVALID_ARGUMENT', 'one volume'],
      [delta('snapshot-meta-2', 'snapshot-meta-1'), 'INVALID_ARGUMENT', 'earlier'],
      [delta('snapshot-meta-1', 'snapshot-meta-2', { starting_offset: String(SIZE + B) }), 'OUT_OF_RANGE', 'beyond'],
    ];
    for (const [call, code, text] of cases)
      expect(await failure(call())).toMatchObject({ codeName: code, message: expect.stringContaining(text) });
  });

  it('works on the members of a group snapshot', async () => {
    const g1 = (
      await stack.csi.groupController.CreateVolumeGroupSnapshot({
        name: 'groupsnapshot-meta-1',
        source_volume_ids: [vol.id],
      })
    ).group_snapshot!;
    write(vol.target, [{ offset: 64 * MiB, length: B }], 0xc3);
    const g2 = (
      await stack.csi.groupController.CreateVolumeGroupSnapshot({
        name: 'groupsnapshot-meta-2',
        source_volume_ids: [vol.id],
      })
    ).group_snapshot!;
    const messages = await meta.GetMetadataDelta({
      base_snapshot_id: g1.snapshots[0]!.snapshot_id,
      target_snapshot_id: g2.snapshots[0]!.snapshot_id,
    });
    expect(rangesOf(messages, SIZE)).toEqual([{ offset: 64 * MiB, length: B }]);
    for (const g of ['groupsnapshot-meta-1', 'groupsnapshot-meta-2'])
      await stack.csi.groupController.DeleteVolumeGroupSnapshot({ group_snapshot_id: g });
  });
});

function write(device: string, ranges: Range[], fill: number): void {
  writeAt(
    device,
    ranges.map((r) => ({ offset: r.offset, data: Buffer.alloc(r.length, fill) })),
  );
}
