// CreateVolume's filesystem minimum (issue 15 item 10), one room: which capabilities and parameters decide
// it, rounding up, OUT_OF_RANGE, and what is left as asked. End to end: test/node-origin-stack.test.ts.
import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { withFilesystemMinimum } from '../src/controller/volumes.js';
import type { CapabilitySummary } from '../src/controller/validation.js';

const MiB = 1024 * 1024;
const caps = (mount: boolean, fsTypes: string[] = [], block = false): CapabilitySummary => ({
  mount,
  block,
  fsTypes: new Set(fsTypes),
});

describe('withFilesystemMinimum', () => {
  it('rounds a required size up to the largest minimum among the fs types asked (ext4 by default)', () => {
    expect(withFilesystemMinimum('r', { requiredBytes: MiB, limitBytes: 0 }, caps(true), {})).toEqual({
      requiredBytes: 8 * MiB,
      limitBytes: 0,
    });
    expect(withFilesystemMinimum('r', { requiredBytes: MiB, limitBytes: 0 }, caps(true, ['xfs']), {})).toEqual({
      requiredBytes: 300 * MiB,
      limitBytes: 0,
    });
    expect(withFilesystemMinimum('r', { requiredBytes: MiB, limitBytes: 0 }, caps(true), { fsType: 'xfs' })).toEqual({
      requiredBytes: 300 * MiB,
      limitBytes: 0,
    });
    expect(
      withFilesystemMinimum('r', { requiredBytes: MiB, limitBytes: 0 }, caps(true, ['ext4', 'xfs'], true), {}),
    ).toEqual({ requiredBytes: 300 * MiB, limitBytes: 0 });
  });

  it('leaves block-only volumes, sizes above the minimum and unsized or limit-only ranges as asked', () => {
    for (const [range, c] of [
      [{ requiredBytes: MiB, limitBytes: 0 }, caps(false, [], true)],
      [{ requiredBytes: 400 * MiB, limitBytes: 0 }, caps(true, ['xfs'])],
      [{ requiredBytes: 0, limitBytes: 0 }, caps(true, ['xfs'])],
      [{ requiredBytes: 0, limitBytes: 512 * MiB }, caps(true, ['xfs'])],
    ] as const) {
      expect(withFilesystemMinimum('r', range, c, {})).toEqual(range);
    }
  });

  it('answers OUT_OF_RANGE naming the filesystem when limit_bytes is below its minimum', () => {
    expect(() =>
      withFilesystemMinimum('capacity_range', { requiredBytes: 0, limitBytes: 256 * MiB }, caps(true, ['xfs']), {}),
    ).toThrow(/capacity_range\.limit_bytes .* smallest xfs filesystem/);
    expect(() =>
      withFilesystemMinimum('capacity_range', { requiredBytes: MiB, limitBytes: 4 * MiB }, caps(true), {}),
    ).toThrow(/smallest ext4 filesystem/);
    let thrown: unknown;
    try {
      withFilesystemMinimum('capacity_range', { requiredBytes: MiB, limitBytes: 4 * MiB }, caps(true), {});
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toMatchObject({ code: status.OUT_OF_RANGE });
  });
});
