// ext4SuperblockSizeBytes reads the size an ext4 superblock records straight from the device, so a stage of
// a formatted volume needs no dumpe2fs; it must agree with dumpe2fs on real filesystems of every shape we
// make or meet, and say "don't know" for anything else. filesystemSmallerThan trusts it only for "not smaller".
import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ext4SuperblockSizeBytes,
  filesystemSizeBytes,
  filesystemSmallerThan,
  makeFilesystem,
} from '../src/mount/index.js';
import { LoopFixtures, sh } from './support/loop-fixtures.js';

const MiB = 1024 * 1024;

function dumpe2fsBytes(device: string): number {
  const out = sh('dumpe2fs', ['-h', device]);
  return Number(/^Block count:\s+(\d+)$/m.exec(out)![1]) * Number(/^Block size:\s+(\d+)$/m.exec(out)![1]);
}

describe('the ext4 superblock, read without a process', () => {
  let fx: LoopFixtures;
  beforeAll(async () => {
    fx = await LoopFixtures.create('superblock');
  });
  afterAll(() => fx.cleanupChecked());

  async function withDevice(
    name: string,
    bytes: number,
    fn: (device: string, image: string) => Promise<void>,
  ): Promise<void> {
    const image = await fx.image(name, bytes);
    const device = fx.attach(image);
    try {
      await fn(device, image);
    } finally {
      sh('losetup', ['--detach', device]);
    }
  }

  it.each([
    ["the driver's own mkfs (4 KiB blocks)", [] as string[]],
    ['1 KiB blocks', ['-b', '1024']],
    ['without the 64bit feature', ['-O', '^64bit']],
    ['with the 64bit feature', ['-O', '64bit']],
    ['2 KiB blocks, not filling the device', ['-b', '2048', '-E', 'lazy_itable_init=1', 'DEVICE', '100000']],
  ])('agrees with dumpe2fs: %s', async (_what, extra) => {
    await withDevice(`e-${extra.join('')}.img`, 300 * MiB, async (device) => {
      if (extra.length === 0) await makeFilesystem(device, 'ext4');
      else if (extra.includes('DEVICE'))
        sh('mkfs.ext4', ['-F', '-q', ...extra.slice(0, extra.indexOf('DEVICE')), device, extra[extra.length - 1]!]);
      else sh('mkfs.ext4', ['-F', '-q', ...extra, device]);
      const bytes = await ext4SuperblockSizeBytes(device);
      expect(bytes).toBe(dumpe2fsBytes(device));
      expect(bytes).toBe(await filesystemSizeBytes({ devicePath: device, mountPoint: '' }, 'ext4'));
    });
  });

  it('follows a grow (the offline resize of a stage), and then says "not smaller"', async () => {
    await withDevice('grow.img', 200 * MiB, async (device, image) => {
      await makeFilesystem(device, 'ext4');
      expect(await ext4SuperblockSizeBytes(device)).toBe(200 * MiB);
      await fx.grow(image, device, 400 * MiB);
      expect(await filesystemSmallerThan({ devicePath: device, mountPoint: '' }, 'ext4', 400 * MiB)).toEqual({
        smaller: true,
        fsBytes: 200 * MiB,
      });
      sh('e2fsck', ['-f', '-p', device]);
      sh('resize2fs', [device]);
      expect(await ext4SuperblockSizeBytes(device)).toBe(400 * MiB);
      expect(await ext4SuperblockSizeBytes(device)).toBe(dumpe2fsBytes(device));
      expect(await filesystemSmallerThan({ devicePath: device, mountPoint: '' }, 'ext4', 400 * MiB)).toEqual({
        smaller: false,
      });
    });
  });

  it('knows nothing of a blank device, xfs, other data, or a path that is not a device', async () => {
    await withDevice('other.img', 320 * MiB, async (device) => {
      expect(await ext4SuperblockSizeBytes(device)).toBeUndefined();
      await makeFilesystem(device, 'xfs');
      expect(await ext4SuperblockSizeBytes(device)).toBeUndefined();
      sh('wipefs', ['-a', '-q', device]);
      await writeFile(device, Buffer.alloc(4096, 0xef));
      expect(await ext4SuperblockSizeBytes(device)).toBeUndefined();
    });
    expect(await ext4SuperblockSizeBytes(fx.path('missing'))).toBeUndefined();
    const short = fx.path('short.bin');
    await writeFile(short, Buffer.alloc(1500));
    expect(await ext4SuperblockSizeBytes(short)).toBeUndefined();
  });

  it('xfs is always asked of xfs_growfs, whose answer decides', async () => {
    await withDevice('xfs.img', 320 * MiB, async (device) => {
      await makeFilesystem(device, 'xfs');
      const mnt = fx.path('xfs-mnt');
      sh('mkdir', ['-p', mnt]);
      sh('mount', ['-t', 'xfs', '-o', 'nouuid', device, mnt]);
      try {
        const fsBytes = await filesystemSizeBytes({ devicePath: device, mountPoint: mnt }, 'xfs');
        expect(await filesystemSmallerThan({ devicePath: device, mountPoint: mnt }, 'xfs', fsBytes)).toEqual({
          smaller: false,
        });
        expect(await filesystemSmallerThan({ devicePath: device, mountPoint: mnt }, 'xfs', fsBytes + MiB)).toEqual({
          smaller: true,
          fsBytes,
        });
      } finally {
        sh('umount', [mnt]);
      }
    });
  });
});
