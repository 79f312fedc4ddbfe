// Crash safety and broken surroundings: each test builds the state a crash (or the world) leaves between two
// steps of an RPC, by hand with the same tools, then repeats the RPC and checks that it finishes the job.
// Also dead mounts (a FUSE mount whose daemon is gone: ENOTCONN), devices vanishing behind our back, and
// concurrent calls for one volume.
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { readMountTable } from '../src/mount/index.js';
import { LoopConnector } from './support/loop-connector.js';
import { sh } from './support/loop-fixtures.js';
import { codeOf, dfSize, mountAt, mountCap, useLoopNode } from './support/node-harness.js';

const MiB = 1024 * 1024;

/** Lets a test hold attach() until it says so. */
class GatedConnector extends LoopConnector {
  gate?: Promise<void>;
  entered?: () => void;
  override async attach(name: string): Promise<string> {
    this.entered?.();
    if (this.gate) await this.gate;
    return super.attach(name);
  }
}

describe('node service: crash recovery and broken surroundings', () => {
  const loop = useLoopNode('node-crash', (f) => new GatedConnector(f));

  async function volume(name: string, bytes = 320 * MiB) {
    const image = await loop.connector.create(name, bytes);
    const staging = loop.fx.path(`${name}-staging`);
    await mkdir(staging);
    return { image, staging };
  }
  const stage = (vol: string, staging: string, fsType = 'ext4') =>
    loop.h.node.NodeStageVolume({ volume_id: vol, staging_target_path: staging, volume_capability: mountCap(fsType) });
  const unstage = (vol: string, staging: string) =>
    loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });
  const publish = (vol: string, staging: string, target: string) =>
    loop.h.node.NodePublishVolume({
      volume_id: vol,
      staging_target_path: staging,
      target_path: target,
      volume_capability: mountCap('ext4'),
    });
  const unpublish = (vol: string, target: string) =>
    loop.h.node.NodeUnpublishVolume({ volume_id: vol, target_path: target });
  /** A 64 MiB volume staged as ext4, and the pod target path it would be published at (not made). */
  async function staged(name: string): Promise<{ staging: string; target: string }> {
    const { staging } = await volume(name, 64 * MiB);
    await stage(name, staging);
    return { staging, target: loop.fx.path(`${name}-pod`) };
  }

  it('stage: crash after attach, before mkfs → the repeat formats and mounts', async () => {
    const { staging } = await volume('c-attached');
    await loop.connector.attach('c-attached');
    await stage('c-attached', staging);
    expect((await mountAt(staging))?.fsType).toBe('ext4');
    await unstage('c-attached', staging);
  });

  it('stage: crash after mkfs (data already written once), before mount → mounted, nothing reformatted', async () => {
    const { staging } = await volume('c-formatted');
    const device = await loop.connector.attach('c-formatted');
    sh('mkfs.xfs', ['-q', device]);
    const scratch = loop.fx.path('c-formatted-scratch');
    await mkdir(scratch);
    sh('mount', [device, scratch]);
    await writeFile(`${scratch}/keep.txt`, 'still here');
    sh('umount', [scratch]);
    await stage('c-formatted', staging, 'xfs');
    expect(await readFile(`${staging}/keep.txt`, 'utf8')).toBe('still here');
    await unstage('c-formatted', staging);
  });

  it('stage: a crash in the middle of mkfs.xfs (superblock still "in progress") → formatted again and mounted', async () => {
    const { staging } = await volume('c-half-xfs');
    const device = await loop.connector.attach('c-half-xfs');
    sh('mkfs.xfs', ['-q', device]);
    sh('xfs_db', ['-x', '-c', 'sb 0', '-c', 'write inprogress 1', device]);
    await stage('c-half-xfs', staging, 'xfs');
    expect((await mountAt(staging))?.fsType).toBe('xfs');
    await unstage('c-half-xfs', staging);
  });

  it('stage: xfs mounted but not grown to its bigger device (crash before xfs_growfs) → the repeat grows it', async () => {
    const { image, staging } = await volume('c-xfs-grow');
    const device = await loop.connector.attach('c-xfs-grow');
    sh('mkfs.xfs', ['-q', device]);
    await loop.fx.grow(image, device, 640 * MiB);
    sh('mount', ['-t', 'xfs', '-o', 'nouuid', device, staging]);
    expect(dfSize(staging)).toBeLessThan(330 * MiB);
    await stage('c-xfs-grow', staging, 'xfs');
    expect(dfSize(staging)).toBeGreaterThan(550 * MiB);
    await unstage('c-xfs-grow', staging);
  });

  it('stage: an ext4 volume on a bigger device (a clone restored larger than its snapshot) grows before it mounts', async () => {
    const { image, staging } = await volume('c-ext4-clone');
    sh('mkfs.ext4', ['-F', '-q', image]);
    await loop.connector.attach('c-ext4-clone');
    await loop.fx.grow(image, (await loop.connector.queryDevice('c-ext4-clone'))!, 640 * MiB);
    await stage('c-ext4-clone', staging);
    expect(dfSize(staging)).toBeGreaterThan(580 * MiB);
    await unstage('c-ext4-clone', staging);
  });

  it('stage: a dead mount left at the staging path is cleared and the volume staged', async () => {
    const { staging } = await volume('c-dead-staging', 64 * MiB);
    loop.fx.deadMount(staging);
    await stage('c-dead-staging', staging);
    const m = (await readMountTable()).filter((e) => e.mountPoint === staging);
    expect(m.map((e) => e.fsType)).toEqual(['ext4']);
    await unstage('c-dead-staging', staging);
  });

  it('publish: crash between bind and the read-only remount → the repeat makes it read-only; ro→rw stays ALREADY_EXISTS', async () => {
    const { staging, target } = await staged('c-bind');
    await mkdir(target);
    sh('mount', ['--bind', staging, target]);
    const req = {
      volume_id: 'c-bind',
      staging_target_path: staging,
      target_path: target,
      volume_capability: mountCap('ext4'),
      readonly: true,
    };
    await loop.h.node.NodePublishVolume(req);
    expect((await mountAt(target))?.options).toContain('ro');
    expect(await codeOf(loop.h.node.NodePublishVolume({ ...req, readonly: false }))).toBe('ALREADY_EXISTS');
    await unpublish('c-bind', target);
    await unstage('c-bind', staging);
  });

  it('publish: crash after creating the target directory, before binding → the repeat binds', async () => {
    const { staging, target } = await staged('c-mkdir');
    await mkdir(target);
    await publish('c-mkdir', staging, target);
    expect((await mountAt(target))?.fsType).toBe('ext4');
    await unpublish('c-mkdir', target);
    await unstage('c-mkdir', staging);
  });

  it('publish over a dead mount at the target replaces it; stats and unpublish leave a foreign dead one alone', async () => {
    const { staging, target } = await staged('c-dead-target');
    await mkdir(target);
    loop.fx.deadMount(target);
    const pub = {
      volume_id: 'c-dead-target',
      staging_target_path: staging,
      target_path: target,
      volume_capability: mountCap('ext4'),
    };
    await loop.h.node.NodePublishVolume(pub);
    expect((await readMountTable()).filter((e) => e.mountPoint === target).map((e) => e.fsType)).toEqual(['ext4']);
    await unpublish('c-dead-target', target);

    await mkdir(target);
    loop.fx.deadMount(target);
    // A dead mount that is not this volume's (FUSE, not its device): the volume is not there.
    expect(await codeOf(loop.h.node.NodeGetVolumeStats({ volume_id: 'c-dead-target', volume_path: target }))).toBe(
      'NOT_FOUND',
    );
    // A dead mount that is not this volume's (FUSE, not its device) is someone else's: unpublish leaves it.
    await unpublish('c-dead-target', target);
    expect((await mountAt(target))?.fsType).toBe('fuse');
    sh('umount', ['--lazy', target]);
    await unstage('c-dead-target', staging);
  });

  it('unpublish: crash after unmount, before removing the directory → the repeat removes it', async () => {
    const { staging, target } = await staged('c-unpub');
    await publish('c-unpub', staging, target);
    sh('umount', [target]);
    await unpublish('c-unpub', target);
    await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
    await unstage('c-unpub', staging);
  });

  it('unstage: crash after unmount, before detach → the repeat detaches', async () => {
    const { staging } = await volume('c-unstage', 64 * MiB);
    await stage('c-unstage', staging);
    sh('umount', [staging]);
    expect(await loop.connector.queryDevice('c-unstage')).toBeDefined();
    await unstage('c-unstage', staging);
    expect(await loop.connector.queryDevice('c-unstage')).toBeUndefined();
  });

  it('filesystem volume whose loop device is detached behind our back: condition abnormal, unpublish and unstage still OK', async () => {
    const { staging, target } = await staged('c-vanished');
    await publish('c-vanished', staging, target);
    const device = (await loop.connector.queryDevice('c-vanished'))!;
    sh('losetup', ['--detach', device]); // the kernel keeps it until the last mount goes (autoclear)
    loop.connector.forget('c-vanished'); // and the back end no longer reports it attached
    const stats = await loop.h.node.NodeGetVolumeStats({ volume_id: 'c-vanished', volume_path: target });
    expect(stats.volume_condition).toMatchObject({
      abnormal: true,
      message: expect.stringContaining('no longer attached'),
    });
    await unpublish('c-vanished', target);
    await unstage('c-vanished', staging);
    expect(await mountAt(staging)).toBeUndefined();
    loop.connector.remember('c-vanished');
    expect(await loop.connector.queryDevice('c-vanished')).toBeUndefined();
  });

  // The block volume whose device is detached behind our back runs alone: node-vanished-device.alone.test.ts.

  it('a second concurrent call for one volume is ABORTED; the first finishes; a retry then succeeds', async () => {
    const { staging } = await volume('c-concurrent', 64 * MiB);
    let open!: () => void;
    loop.connector.gate = new Promise((r) => (open = r));
    const entered = new Promise<void>((r) => (loop.connector.entered = r));
    const first = stage('c-concurrent', staging);
    await entered;
    expect(await codeOf(stage('c-concurrent', staging))).toBe('ABORTED');
    expect(await codeOf(unstage('c-concurrent', staging))).toBe('ABORTED');
    loop.connector.gate = undefined;
    loop.connector.entered = undefined;
    open();
    await first;
    await stage('c-concurrent', staging);
    await unstage('c-concurrent', staging);
  });
});
