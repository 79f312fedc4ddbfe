// The mount room against real loop devices, real filesystems and a real dead (ENOTCONN) mount.
import { mkdir, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bindMount,
  blockDeviceNumber,
  canonicalPath,
  deviceProblem,
  deviceSizeBytes,
  filesystemSizeBytes,
  filesystemUsage,
  growFilesystem,
  inspectPath,
  isMountError,
  makeFilesystem,
  mountFilesystem,
  mountFlagsProblem,
  mountPointState,
  mountPointsOfDevice,
  parseMountInfo,
  probeDevice,
  unmount,
  unmountAll,
  xfsMkfsInterrupted,
  growUnmountedExt4,
} from '../src/mount/index.js';
import { hasCapSysResource, LoopFixtures, sh } from './support/loop-fixtures.js';

const MiB = 1024 * 1024;

describe('mountinfo parsing', () => {
  it('reads fields and unescapes octal escapes in paths', () => {
    const text = [
      '36 35 98:0 /mnt1 /mnt\\040with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue',
      '42 27 7:3 / /var/lib/x ro,relatime shared:5 - xfs /dev/loop3 ro,nouuid',
      'garbage line',
      '',
    ].join('\n');
    const entries = parseMountInfo(text);
    expect(entries).toHaveLength(2);
    expect(entries[0]).toMatchObject({
      id: 36,
      parentId: 35,
      major: 98,
      minor: 0,
      root: '/mnt1',
      mountPoint: '/mnt with space',
      fsType: 'ext3',
      source: '/dev/root',
    });
    expect(entries[0]!.superOptions).toEqual(['rw', 'errors=continue']);
    expect(entries[1]).toMatchObject({
      major: 7,
      minor: 3,
      options: ['ro', 'relatime'],
      fsType: 'xfs',
      source: '/dev/loop3',
    });
  });
});

describe('mount flag checks', () => {
  it('accepts ordinary filesystem options', () => {
    expect(mountFlagsProblem(['noatime', 'discard', 'data=ordered', 'commit=30', 'ro'])).toBeUndefined();
    expect(mountFlagsProblem(['context="system_u:object_r:container_file_t:s0:c1,c2"'])).toBeUndefined();
  });
  it.each([
    [['noatime,remount'], "contains ','"],
    [['remount'], 'changes how mount(8) works'],
    [['bind'], 'changes how mount(8) works'],
    [['make-shared'], 'changes how mount(8) works'],
    [['X-mount.mkdir'], 'changes how mount(8) works'],
    [['loop'], 'changes how mount(8) works'],
    [['-o'], "starts with '-'"],
    [['no atime'], 'whitespace'],
    [[''], 'is empty'],
    [['a"b'], 'no valid option name'],
    [['user_xattr=a"b'], 'stray'],
  ])('refuses %j', (flags, problem) => {
    expect(mountFlagsProblem(flags)).toContain(problem);
  });
  it('never echoes a value (it may be a secret)', () => {
    expect(mountFlagsProblem(['password=hunter2,x'])).not.toContain('hunter2');
  });
});

describe('the mount room on real loop devices', () => {
  let fx: LoopFixtures;
  beforeAll(async () => {
    fx = await LoopFixtures.create('node-mount');
  });
  afterAll(() => fx.cleanupChecked());

  for (const fsType of ['ext4', 'xfs'] as const) {
    it(`${fsType}: probe blank, format, mount, grow online, unmount`, async () => {
      const image = await fx.image(`grow-${fsType}.img`, 320 * MiB);
      const device = fx.attach(image);
      try {
        expect(await probeDevice(device)).toEqual({ kind: 'blank' });
        await makeFilesystem(device, fsType);
        expect(await probeDevice(device)).toMatchObject({ kind: 'filesystem', fsType });
        const mnt = fx.path(`mnt-${fsType}`);
        await mkdir(mnt);
        await mountFilesystem(device, mnt, fsType, fsType === 'xfs' ? ['nouuid'] : []);
        const state = await mountPointState(mnt);
        expect(state.mount).toMatchObject({ fsType, source: device, ...(await blockDeviceNumber(device)) });
        expect(state.pathState.kind).toBe('directory');
        expect(await mountPointsOfDevice(await blockDeviceNumber(device), device)).toEqual([mnt]);

        expect(await deviceSizeBytes(device)).toBe(320 * MiB);
        const before = await filesystemSizeBytes({ devicePath: device, mountPoint: mnt }, fsType);
        expect(before).toBeLessThanOrEqual(320 * MiB);
        await fx.grow(image, device, 640 * MiB);
        expect(await deviceSizeBytes(device)).toBe(640 * MiB);
        if (fsType === 'ext4' && !hasCapSysResource()) {
          // The kernel refuses an online ext4 resize without CAP_SYS_RESOURCE: a clear error, then offline.
          await expect(growFilesystem({ devicePath: device, mountPoint: mnt }, fsType)).rejects.toMatchObject({
            name: 'MountError',
            kind: 'Busy',
            message: expect.stringContaining('CAP_SYS_RESOURCE'),
          });
          await unmountAll(mnt);
          await growUnmountedExt4(device);
          await mountFilesystem(device, mnt, fsType, []);
        } else {
          await growFilesystem({ devicePath: device, mountPoint: mnt }, fsType);
        }
        const after = await filesystemSizeBytes({ devicePath: device, mountPoint: mnt }, fsType);
        expect(after).toBeGreaterThan(before + 300 * MiB);
        expect((await filesystemUsage(mnt)).totalBytes).toBeGreaterThan(500 * MiB);
        expect(await deviceProblem(await blockDeviceNumber(device))).toBeUndefined();

        expect(await unmountAll(mnt)).toEqual({ removed: 1, lazy: false });
        expect((await mountPointState(mnt)).mount).toBeUndefined();
        await unmount(mnt); // not mounted: still fine
      } finally {
        sh('losetup', ['--detach', device]);
      }
    });
  }

  it('makes filesystems that still mount when the device comes back with 4 KiB logical sectors', async () => {
    for (const fsType of ['ext4', 'xfs'] as const) {
      const image = await fx.image(`sectors-${fsType}.img`, 320 * MiB);
      const small = fx.attach(image);
      expect(sh('blockdev', ['--getss', small]).trim()).toBe('512');
      try {
        await makeFilesystem(small, fsType);
      } finally {
        sh('losetup', ['--detach', small]);
      }
      const large = sh('losetup', ['--find', '--show', '--sector-size', '4096', image]).trim();
      const mnt = fx.path(`sectors-${fsType}-mnt`);
      await mkdir(mnt);
      try {
        expect(sh('blockdev', ['--getss', large]).trim()).toBe('4096');
        await mountFilesystem(large, mnt, fsType, fsType === 'xfs' ? ['nouuid'] : []);
        await writeFile(`${mnt}/x`, 'x');
        await unmountAll(mnt);
      } finally {
        sh('losetup', ['--detach', large]);
      }
    }
  });

  it('never calls a device with a partition table or a foreign filesystem blank', async () => {
    const image = await fx.image('parted.img', 64 * MiB);
    // An MBR partition table: signature 0x55AA and one partition entry.
    const mbr = Buffer.alloc(512);
    mbr.writeUInt8(0x83, 446 + 4);
    mbr.writeUInt32LE(2048, 446 + 8);
    mbr.writeUInt32LE(4096, 446 + 12);
    mbr.writeUInt16LE(0xaa55, 510);
    const { open } = await import('node:fs/promises');
    const handle = await open(image, 'r+');
    await handle.write(mbr, 0, 512, 0);
    await handle.close();
    const parted = fx.attach(image);
    try {
      expect(await probeDevice(parted)).toMatchObject({ kind: 'other', description: expect.stringContaining('dos') });
    } finally {
      sh('losetup', ['--detach', parted]);
    }
    const swapImage = await fx.image('swap.img', 64 * MiB);
    sh('mkswap', [swapImage]);
    const swap = fx.attach(swapImage);
    try {
      expect(await probeDevice(swap)).toMatchObject({ kind: 'other', description: expect.stringContaining('swap') });
    } finally {
      sh('losetup', ['--detach', swap]);
    }
  });

  it('detects a superblock left by an interrupted mkfs.xfs, and finishes the format', async () => {
    const image = await fx.image('interrupted.img', 320 * MiB);
    const device = fx.attach(image);
    try {
      await makeFilesystem(device, 'xfs');
      expect(await xfsMkfsInterrupted(device)).toBe(false);
      sh('xfs_db', ['-x', '-c', 'sb 0', '-c', 'write inprogress 1', device]);
      expect(await xfsMkfsInterrupted(device)).toBe(true);
      const mnt = fx.path('mnt-interrupted');
      await mkdir(mnt);
      const failed = await mountFilesystem(device, mnt, 'xfs', ['nouuid']).catch((e: unknown) => e);
      expect(isMountError(failed, 'Failed')).toBe(true);
      await makeFilesystem(device, 'xfs', { force: true });
      expect(await xfsMkfsInterrupted(device)).toBe(false);
      await mountFilesystem(device, mnt, 'xfs', ['nouuid']);
      await unmountAll(mnt);
    } finally {
      sh('losetup', ['--detach', device]);
    }
  });

  it('bind mounts read-only, including a device node onto a file, and finds them as users of the device', async () => {
    const image = await fx.image('bind.img', 64 * MiB);
    const device = fx.attach(image);
    const dev = await blockDeviceNumber(device);
    const src = fx.path('bind-src');
    const dst = fx.path('bind-dst');
    const file = fx.path('bind-file');
    try {
      await makeFilesystem(device, 'ext4');
      await mkdir(src);
      await mkdir(dst);
      await writeFile(file, '');
      await mountFilesystem(device, src, 'ext4', []);
      await bindMount(src, dst, true);
      expect((await mountPointState(dst)).mount?.options).toContain('ro');
      await expect(writeFile(`${dst}/x`, 'x')).rejects.toMatchObject({ code: 'EROFS' });
      await writeFile(`${src}/x`, 'x');
      await bindMount(device, file, false);
      expect(await inspectPath(file)).toEqual({ kind: 'blockDevice', ...dev });
      expect((await mountPointsOfDevice(dev, device)).sort()).toEqual([src, dst, file].sort());
      for (const p of [file, dst, src]) await unmountAll(p);
      expect(await mountPointsOfDevice(dev, device)).toEqual([]);
    } finally {
      sh('losetup', ['--detach', device]);
    }
  });

  it('survives a dead mount: lstat says dead, the table still shows it, and unmountAll removes it', async () => {
    const at = fx.path('dead');
    await mkdir(at);
    fx.deadMount(at);
    expect(await inspectPath(at)).toEqual({ kind: 'dead', reason: 'ENOTCONN' });
    const state = await mountPointState(at);
    expect(state.mount?.fsType).toBe('fuse');
    expect(state.pathState.kind).toBe('dead');
    await expect(filesystemUsage(at)).rejects.toMatchObject({
      name: 'MountError',
      message: expect.stringContaining('ENOTCONN'),
    });
    await unmountAll(at);
    expect((await mountPointState(at)).mount).toBeUndefined();
  });

  it('spells paths as the mount table does (symlinked parents resolved)', async () => {
    const real = fx.path('real-parent');
    await mkdir(real);
    const { symlink } = await import('node:fs/promises');
    await symlink(real, fx.path('link-parent'));
    expect(await canonicalPath(fx.path('link-parent', 'child'))).toBe(`${real}/child`);
    expect(await inspectPath(fx.path('link-parent'))).toEqual({ kind: 'symlink' });
    expect(await inspectPath(fx.path('nothing', 'here'))).toEqual({ kind: 'missing' });
  });

  it('reports a detached loop device as a problem', async () => {
    const image = await fx.image('gone.img', 64 * MiB);
    const device = fx.attach(image);
    const dev = await blockDeviceNumber(device);
    sh('losetup', ['--detach', device]);
    expect(await deviceProblem(dev)).toMatch(/size 0|no longer exists/);
  });
});
