// The node never destroys what is not its own, nor data that is there (issue 15, items 6-10; issue 16, item
// 11): real loop devices, filesystems and mounts through the node's gRPC socket, everything in a temp dir.
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { makeFilesystem } from '../src/mount/index.js';
import { LoopConnector } from './support/loop-connector.js';
import { sh, type LoopFixtures } from './support/loop-fixtures.js';
import { blockCap, codeOf, mountAt, mountCap, useLoopNode, volumeRequests } from './support/node-harness.js';

const MiB = 1024 * 1024;
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** A tmpfs that has nothing to do with the driver, with a file in it, in the test's own temp dir. */
async function foreignTmpfs(fx: LoopFixtures, name: string): Promise<string> {
  const at = fx.path(name);
  await mkdir(at, { recursive: true });
  sh('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'foreign', at]);
  await writeFile(`${at}/keep`, "not the driver's");
  return at;
}

describe('node safety', () => {
  const loop = useLoopNode('node-safety', (f) => new LoopConnector(f));

  async function expectUntouched(at: string): Promise<void> {
    expect((await mountAt(at))?.fsType).toBe('tmpfs');
    expect(await readdir(at)).toEqual(['keep']);
    sh('umount', [at]);
  }

  it("item 7: unpublish and unstage leave a mount that is not the volume's alone (unknown volume, or another one)", async () => {
    const target = await foreignTmpfs(loop.fx, 'foreign-target');
    expect(await codeOf(loop.h.node.NodeUnpublishVolume({ volume_id: 'no-such-volume', target_path: target }))).toBe(
      'NOT_FOUND',
    );
    expect(
      await codeOf(loop.h.node.NodeUnstageVolume({ volume_id: 'no-such-volume', staging_target_path: target })),
    ).toBe('NOT_FOUND');
    expect(await codeOf(loop.h.node.NodeUnpublishVolume({ volume_id: '../not-a-name', target_path: target }))).toBe(
      'NOT_FOUND',
    );

    // A volume that exists (attached, and not): the mount at the path is not its; the call is done, nothing touched.
    await loop.connector.create('own-a', 64 * MiB);
    expect(await codeOf(loop.h.node.NodeUnpublishVolume({ volume_id: 'own-a', target_path: target }))).toBe('OK');
    expect(await codeOf(loop.h.node.NodeUnstageVolume({ volume_id: 'own-a', staging_target_path: target }))).toBe('OK');
    const staging = loop.fx.path('own-a-staging');
    await loop.h.node.NodeStageVolume({
      volume_id: 'own-a',
      staging_target_path: staging,
      volume_capability: mountCap('ext4'),
    });
    expect(await codeOf(loop.h.node.NodeUnpublishVolume({ volume_id: 'own-a', target_path: target }))).toBe('OK');
    await expectUntouched(target);

    // Another volume's publish is not this volume's either.
    await loop.connector.create('own-b', 64 * MiB);
    const otherTarget = loop.fx.path('own-a-pod');
    await loop.h.node.NodePublishVolume({
      volume_id: 'own-a',
      staging_target_path: staging,
      target_path: otherTarget,
      volume_capability: mountCap('ext4'),
    });
    expect(await codeOf(loop.h.node.NodeUnpublishVolume({ volume_id: 'own-b', target_path: otherTarget }))).toBe('OK');
    expect((await mountAt(otherTarget))?.fsType).toBe('ext4');
    await loop.h.node.NodeUnpublishVolume({ volume_id: 'own-a', target_path: otherTarget });
    await expect(stat(otherTarget)).rejects.toMatchObject({ code: 'ENOENT' });
    await loop.h.node.NodeUnstageVolume({ volume_id: 'own-a', staging_target_path: staging });
    expect(await mountAt(staging)).toBeUndefined();
  });
});

describe('node safety: one staging path per volume', () => {
  const loop = useLoopNode('node-stage2', (f) => new LoopConnector(f));

  it('item 6: a second NodeStage at another path is FAILED_PRECONDITION naming the first; unstage then works', async () => {
    await loop.connector.create('twice', 64 * MiB);
    const first = loop.fx.path('twice-staging-1');
    const second = loop.fx.path('twice-staging-2');
    const cap = mountCap('ext4');
    await loop.h.node.NodeStageVolume({ volume_id: 'twice', staging_target_path: first, volume_capability: cap });
    const refused = await loop.h.node
      .NodeStageVolume({ volume_id: 'twice', staging_target_path: second, volume_capability: cap })
      .catch((e: Error) => e);
    expect(refused).toMatchObject({ code: 9, details: expect.stringContaining(first) });
    expect(await mountAt(second)).toBeUndefined();
    // Also while published: the publish is no staging path.
    const target = loop.fx.path('twice-pod');
    await loop.h.node.NodePublishVolume({
      volume_id: 'twice',
      staging_target_path: first,
      target_path: target,
      volume_capability: cap,
    });
    expect(
      await codeOf(
        loop.h.node.NodeStageVolume({ volume_id: 'twice', staging_target_path: second, volume_capability: cap }),
      ),
    ).toBe('FAILED_PRECONDITION');
    await loop.h.node.NodeStageVolume({ volume_id: 'twice', staging_target_path: first, volume_capability: cap }); // the same one again is fine
    await loop.h.node.NodeUnpublishVolume({ volume_id: 'twice', target_path: target });
    // Unstaging the path that was refused detaches nothing from under the first: it says where the volume is.
    const elsewhere = await loop.h.node
      .NodeUnstageVolume({ volume_id: 'twice', staging_target_path: second })
      .catch((e: Error) => e);
    expect(elsewhere).toMatchObject({
      code: 9,
      details: expect.stringContaining(`no mount at ${second} but is still in use at ${first}`),
    });
    expect(await mountAt(first)).toBeDefined();
    await loop.h.node.NodeUnstageVolume({ volume_id: 'twice', staging_target_path: first });
    expect(await mountAt(first)).toBeUndefined();
    expect(await loop.connector.queryDevice('twice')).toBeUndefined();
    // and after the unstage, the other path stages normally
    await loop.h.node.NodeStageVolume({ volume_id: 'twice', staging_target_path: second, volume_capability: cap });
    // A block stage elsewhere while the filesystem is mounted would let raw writes in beside it.
    const blockStaging = loop.fx.path('twice-block-staging');
    const asBlock = await loop.h.node
      .NodeStageVolume({ volume_id: 'twice', staging_target_path: blockStaging, volume_capability: blockCap() })
      .catch((e: Error) => e);
    expect(asBlock).toMatchObject({ code: 9, details: expect.stringContaining(second) });
    await loop.h.node.NodeUnstageVolume({ volume_id: 'twice', staging_target_path: second });
  });

  it('item 6: a block volume staged at two paths is served correctly: unstage waits for the publish, then both unstage', async () => {
    await loop.connector.create('twice-blk', 64 * MiB);
    const [a, b] = [loop.fx.path('twice-blk-staging-1'), loop.fx.path('twice-blk-staging-2')];
    const cap = blockCap();
    const twice = volumeRequests(() => loop.h.node, 'twice-blk');
    await twice.stage(a, cap);
    await twice.stage(b, cap);
    const target = loop.fx.path('twice-blk-pod', 'dev');
    await twice.publish(a, target, cap);
    expect(await codeOf(twice.unstage(b))).toBe('FAILED_PRECONDITION');
    await twice.unpublish(target);
    await twice.unstage(b);
    await twice.unstage(a);
    expect(await loop.connector.queryDevice('twice-blk')).toBeUndefined();
  });
});

describe('node safety: content with an origin is never formatted', () => {
  const loop = useLoopNode('node-origin', (f) => new LoopConnector(f));

  for (const origin of ['image', 'snapshot', 'volume'] as const) {
    for (const fsType of ['ext4', 'xfs'] as const) {
      it(`item 8: a volume made from ${{ image: 'an image', snapshot: 'a snapshot', volume: 'a clone' }[origin]} with no filesystem is FAILED_PRECONDITION as ${fsType}, its data kept`, async () => {
        const vol = `origin-${origin}-${fsType}`;
        const image = await loop.connector.create(vol, 64 * MiB);
        // Raw data without any signature blkid knows, the way a raw disk image or a block volume's copy holds it.
        const data = Buffer.alloc(4 * MiB);
        for (let i = 0; i < data.length; i += 4096) data.write(`raw block ${i / 4096} of ${vol}`, i);
        const fh = await open(image, 'r+');
        await fh.write(data, 0, data.length, 0);
        await fh.close();
        const before = sha256((await readFile(image)).subarray(0, 8 * MiB));
        const staging = loop.fx.path(`${vol}-staging`);
        const refused = await loop.h.node
          .NodeStageVolume({
            volume_id: vol,
            staging_target_path: staging,
            volume_capability: mountCap(fsType),
            volume_context: { 'sdshypervisor.io/contentOrigin': origin },
          })
          .catch((e: Error) => e);
        expect(refused).toMatchObject({ code: 9, details: expect.stringMatching(/never formatted/) });
        expect(await mountAt(staging)).toBeUndefined();
        expect(sha256((await readFile(image)).subarray(0, 8 * MiB))).toBe(before);
        await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });
      });
    }
  }

  it('item 8: a blank volume with an origin is not formatted either; one without is, as before', async () => {
    await loop.connector.create('origin-blank', 64 * MiB);
    const staging = loop.fx.path('origin-blank-staging');
    const stage = (volume_context: Record<string, string>) =>
      loop.h.node.NodeStageVolume({
        volume_id: 'origin-blank',
        staging_target_path: staging,
        volume_capability: mountCap('ext4'),
        volume_context,
      });
    expect(await codeOf(stage({ 'sdshypervisor.io/contentOrigin': 'snapshot' }))).toBe('FAILED_PRECONDITION');
    await stage({});
    expect((await mountAt(staging))?.fsType).toBe('ext4');
    await loop.h.node.NodeUnstageVolume({ volume_id: 'origin-blank', staging_target_path: staging });
    // Once it holds its filesystem, an origin changes nothing: it mounts.
    await stage({ 'sdshypervisor.io/contentOrigin': 'volume' });
    expect((await mountAt(staging))?.fsType).toBe('ext4');
    await loop.h.node.NodeUnstageVolume({ volume_id: 'origin-blank', staging_target_path: staging });
  });
});

describe('node safety: too small for its filesystem', () => {
  const loop = useLoopNode('node-small', (f) => new LoopConnector(f));

  it('item 10: a blank 256 MiB volume staged as xfs is FAILED_PRECONDITION naming both sizes, never a usage text; ext4 stages', async () => {
    await loop.connector.create('small', 256 * MiB);
    const staging = loop.fx.path('small-staging');
    const refused = await loop.h.node
      .NodeStageVolume({ volume_id: 'small', staging_target_path: staging, volume_capability: mountCap('xfs') })
      .catch((e: Error) => e);
    expect(refused).toMatchObject({
      code: 9,
      details: expect.stringMatching(/256 MiB, too small for xfs, which needs at least 300 MiB/),
    });
    expect((refused as { details: string }).details).not.toMatch(/usage/i);
    expect(await mountAt(staging)).toBeUndefined();
    await loop.h.node.NodeStageVolume({
      volume_id: 'small',
      staging_target_path: staging,
      volume_capability: mountCap('ext4'),
    });
    expect((await mountAt(staging))?.fsType).toBe('ext4');
    await loop.h.node.NodeUnstageVolume({ volume_id: 'small', staging_target_path: staging });
  });

  it('item 10: mkfs refusing names its reason only (the mount room)', async () => {
    const file = await loop.fx.image('tiny.img', 256 * MiB);
    const device = loop.fx.attach(file);
    try {
      const err = await makeFilesystem(device, 'xfs').catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/^mkfs\.xfs \/dev\/loop\d+ failed: Filesystem must be larger than/);
      expect((err as Error).message).not.toMatch(/usage|blocksize/i);
    } finally {
      sh('losetup', ['--detach', device]);
    }
  });
});

describe('node safety: a read-only raw block publish', () => {
  // A read-only loop over one of our devices is not under the temp dir: the leak check cannot see it, and it
  // would hold our device. Whatever a failed test left is released before the node stops.
  const loop = useLoopNode(
    'node-roblock',
    (f) => new LoopConnector(f),
    ({ fx }) => {
      const ours = new Set(
        sh('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'])
          .split('\n')
          .filter((l) => l.includes(fx.dir))
          .map((l) => l.trim().split(/\s+/)[0]!),
      );
      const over = [...ours].flatMap((device) => loopsOver(device).map((l) => l.trim().split(/\s+/)[0]!));
      for (const device of over) sh('losetup', ['--detach', device]);
      expect(over).toEqual([]);
    },
  );

  /** Loop devices whose backing file is `device` (read-only publishes' loops). */
  function loopsOver(device: string): string[] {
    return sh('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'])
      .split('\n')
      .filter((l) => l.trim().split(/\s+/)[1] === device);
  }

  async function writeAt(path: string): Promise<string> {
    try {
      const fh = await open(path, 'r+');
      try {
        await fh.write(Buffer.alloc(4096, 0xee), 0, 4096, 0);
        await fh.sync();
      } finally {
        await fh.close();
      }
      return 'written';
    } catch (err) {
      return (err as NodeJS.ErrnoException).code ?? String(err);
    }
  }

  for (const mode of ['SINGLE_NODE_WRITER', 'SINGLE_NODE_MULTI_WRITER'] as const) {
    it(`item 9: ${mode}, readonly=true on a read-write mapping: a write through the published device fails; the data is intact`, async () => {
      const vol = `roblock-${mode.toLowerCase()}`;
      const image = await loop.connector.create(vol, 64 * MiB);
      const data = Buffer.alloc(MiB);
      for (let i = 0; i < data.length; i += 4096) data.write(`${vol} block ${i / 4096}`, i);
      const fh = await open(image, 'r+');
      await fh.write(data, 0, data.length, 0);
      await fh.close();
      const cap = blockCap(mode);
      const staging = loop.fx.path(`${vol}-staging`);
      await loop.h.node.NodeStageVolume({ volume_id: vol, staging_target_path: staging, volume_capability: cap });
      const device = (await loop.connector.queryDevice(vol))!;
      const target = loop.fx.path(`${vol}-pod`, 'dev');
      const publish = {
        volume_id: vol,
        staging_target_path: staging,
        target_path: target,
        volume_capability: cap,
        readonly: true,
      };
      await loop.h.node.NodePublishVolume(publish);
      await loop.h.node.NodePublishVolume(publish); // idempotent: the same read-only publish
      expect(loopsOver(device)).toHaveLength(1);

      expect(await writeAt(target)).toMatch(/^(EPERM|EROFS|EACCES)$/);
      const read = await open(target, 'r');
      const back = Buffer.alloc(data.length);
      await read.read(back, 0, back.length, 0);
      await read.close();
      expect(sha256(back)).toBe(sha256(data));
      expect(await codeOf(loop.h.node.NodePublishVolume({ ...publish, readonly: false }))).toBe('ALREADY_EXISTS');

      const stats = await loop.h.node.NodeGetVolumeStats({ volume_id: vol, volume_path: target });
      expect(stats.volume_condition?.abnormal).toBe(false);
      expect(stats.usage?.[0]?.total).toBe(String(64 * MiB));
      await loop.fx.grow(image, device, 96 * MiB);
      expect(
        await loop.h.node.NodeExpandVolume({
          volume_id: vol,
          volume_path: target,
          capacity_range: { required_bytes: String(96 * MiB) },
        }),
      ).toMatchObject({ capacity_bytes: String(96 * MiB) });
      expect(Number(sh('blockdev', ['--getsize64', target]).trim())).toBe(96 * MiB);

      if (mode === 'SINGLE_NODE_MULTI_WRITER') {
        // A read-write publish beside it stays writable: only the pod's read-only device refuses writes.
        const rw = loop.fx.path(`${vol}-pod-rw`, 'dev');
        await loop.h.node.NodePublishVolume({ ...publish, target_path: rw, readonly: false });
        expect(await writeAt(rw)).toBe('written');
        expect(await writeAt(target)).toMatch(/^(EPERM|EROFS|EACCES)$/);
        expect(await codeOf(loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging }))).toBe(
          'FAILED_PRECONDITION',
        );
        await loop.h.node.NodeUnpublishVolume({ volume_id: vol, target_path: rw });
      }
      // The read-only publish is still a use of the volume: unstage waits for it.
      expect(await codeOf(loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging }))).toBe(
        'FAILED_PRECONDITION',
      );
      await loop.h.node.NodeUnpublishVolume({ volume_id: vol, target_path: target });
      expect(loopsOver(device)).toEqual([]);
      await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
      await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });
      expect(await loop.connector.queryDevice(vol)).toBeUndefined();
    });
  }

  it('item 9: a read-only loop left by a crash before its bind is used by the retry, and unstage releases any left', async () => {
    const vol = 'roblock-crash';
    await loop.connector.create(vol, 64 * MiB);
    const cap = blockCap();
    const staging = loop.fx.path(`${vol}-staging`);
    await loop.h.node.NodeStageVolume({ volume_id: vol, staging_target_path: staging, volume_capability: cap });
    const device = (await loop.connector.queryDevice(vol))!;
    sh('losetup', ['--find', '--read-only', device]); // what a crash between making the loop and binding it leaves
    const target = loop.fx.path(`${vol}-pod`, 'dev');
    await loop.h.node.NodePublishVolume({
      volume_id: vol,
      staging_target_path: staging,
      target_path: target,
      volume_capability: cap,
      readonly: true,
    });
    expect(loopsOver(device)).toHaveLength(1);
    expect(await writeAt(target)).toMatch(/^(EPERM|EROFS|EACCES)$/);
    await loop.h.node.NodeUnpublishVolume({ volume_id: vol, target_path: target });
    sh('losetup', ['--find', '--read-only', device]);
    await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });
    expect(loopsOver(device)).toEqual([]);
    expect(await loop.connector.queryDevice(vol)).toBeUndefined();
  });
});

describe('node safety: stats and expand of a volume that is not at the path', () => {
  const loop = useLoopNode('node-notfound', (f) => new LoopConnector(f));

  it("issue 16 item 11: NOT_FOUND whatever form volume_path takes (relative, malformed, absent, another volume's); INVALID_ARGUMENT only when empty", async () => {
    await loop.connector.create('nf-a', 64 * MiB);
    await loop.connector.create('nf-b', 64 * MiB);
    const staging = loop.fx.path('nf-a-staging');
    const target = loop.fx.path('nf-a-pod');
    const cap = mountCap('ext4');
    await loop.h.node.NodeStageVolume({ volume_id: 'nf-a', staging_target_path: staging, volume_capability: cap });
    await loop.h.node.NodePublishVolume({
      volume_id: 'nf-a',
      staging_target_path: staging,
      target_path: target,
      volume_capability: cap,
    });
    const tmpfs = await foreignTmpfs(loop.fx, 'nf-tmpfs');
    const paths: Array<[string, string]> = [
      ['relative', 'nf-a-pod'],
      ['a `..` component', `${loop.fx.dir}/x/../nf-a-pod`],
      ['a trailing slash', `${target}/`],
      ['absent', loop.fx.path('never-there')],
      ["another volume's", target],
      ['a foreign tmpfs', tmpfs],
    ];
    for (const volumeId of ['nf-b', 'no-such-volume']) {
      for (const [what, volume_path] of paths) {
        const codes = [
          await codeOf(loop.h.node.NodeGetVolumeStats({ volume_id: volumeId, volume_path })),
          await codeOf(
            loop.h.node.NodeExpandVolume({
              volume_id: volumeId,
              volume_path,
              capacity_range: { required_bytes: String(64 * MiB) },
            }),
          ),
        ];
        expect([volumeId, what, codes]).toEqual([volumeId, what, ['NOT_FOUND', 'NOT_FOUND']]);
      }
    }
    expect(await codeOf(loop.h.node.NodeGetVolumeStats({ volume_id: 'nf-a', volume_path: '' }))).toBe(
      'INVALID_ARGUMENT',
    );
    expect(await codeOf(loop.h.node.NodeExpandVolume({ volume_id: 'nf-a', volume_path: '' }))).toBe('INVALID_ARGUMENT');
    // The volume's own path answers.
    expect(
      (await loop.h.node.NodeGetVolumeStats({ volume_id: 'nf-a', volume_path: target })).volume_condition?.abnormal,
    ).toBe(false);
    expect(await codeOf(loop.h.node.NodeGetVolumeStats({ volume_id: 'nf-a', volume_path: tmpfs }))).toBe('NOT_FOUND');
    sh('umount', [tmpfs]);
    await loop.h.node.NodeUnpublishVolume({ volume_id: 'nf-a', target_path: target });
    await loop.h.node.NodeUnstageVolume({ volume_id: 'nf-a', staging_target_path: staging });
  });
});
