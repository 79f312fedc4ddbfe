// Node request fields the CO sends. Paths — the rule for staging_target_path, target_path, volume_path (staging_target_path, target_path, volume_path):
// - absolute, at most 4095 bytes, no NUL, every component at most 255 bytes (NAME_MAX), and normalized: no
//   `.`, `..` or empty component, no trailing `/` — a path must name the place it spells, so `..` can never
//   lead out of the directory a path appears to be in. Anything else is INVALID_ARGUMENT naming the field,
//   except for NodeGetVolumeStats and NodeExpandVolume, which only look: NOT_FOUND (no volume is there).
// - the path itself is never followed when it is a symbolic link (refused for stage/publish, left alone
//   by unpublish/unstage); symbolic links ABOVE it are the CO's own tree and are followed (a symlinked
//   kubelet root works).
// - nothing is created for a request that is refused, nor for a volume that does not exist.
// Sizes — a NodeExpandVolume size no volume can reach is OUT_OF_RANGE at once (no waiting for the device).
// Real loop devices and mounts, a real CSI server on a unix socket; the connector is the loop stand-in.
import { existsSync, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readMountTable } from '../src/mount/index.js';
import { LoopConnector } from './support/loop-connector.js';
import { blockCap, codeOf, mountAt, mountCap, useLoopNode, volumeRequests } from './support/node-harness.js';

const MiB = 1024 * 1024;

const loop = useLoopNode('node-paths', (f) => new LoopConnector(f));
let canary: string;
let kubelet: string;

// vol-a's requests as the CO sends them; most tests stage it with an ext4 filesystem.
const { stage, publish, unstage, unpublish } = volumeRequests(() => loop.h.node, 'vol-a');
const ext4 = mountCap('ext4');

function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort();
}

beforeAll(async () => {
  canary = loop.fx.path('canary');
  kubelet = loop.fx.path('kubelet');
  await mkdir(join(canary, 'dir'), { recursive: true });
  await writeFile(join(canary, 'file'), 'canary\n');
  await writeFile(join(canary, 'empty'), '');
  await mkdir(kubelet);
  await symlink(canary, join(kubelet, 'to-canary'));
  await symlink(join(canary, 'empty'), join(kubelet, 'to-canary-file'));
  await loop.connector.create('vol-a', 64 * MiB);
});

async function canaryUntouched(): Promise<void> {
  expect(tree(canary)).toEqual(['dir', 'empty', 'file']);
  expect(await readFile(join(canary, 'file'), 'utf8')).toBe('canary\n');
  expect((await readMountTable()).filter((m) => m.mountPoint.startsWith(canary))).toEqual([]);
}

describe('node paths', () => {
  const long = 'n'.repeat(256);
  const bad: Array<[string, string]> = [
    ['relative', 'kubelet/x'],
    ['NUL', `${'/tmp'}/a\u0000b`],
    ['a `..` component', `${'KUBELET'}/pods/../../canary/dir`],
    ['a `.` component', 'KUBELET/./x'],
    ['an empty component', 'KUBELET//x'],
    ['a trailing slash', 'KUBELET/x/'],
    ['the root directory', '/'],
    ['a component over 255 bytes', `KUBELET/${long}`],
    ['a component over 255 bytes below a symlink', `KUBELET/to-canary/${long}`],
    ['over 4095 bytes', `KUBELET/${'d/'.repeat(2100)}x`],
  ];

  it.each(bad)(
    '%s is INVALID_ARGUMENT for every path field (NOT_FOUND for stats and expand), and nothing is made',
    async (_what, template) => {
      const path = template.replace('KUBELET', kubelet);
      const staged = join(kubelet, 'ok-staging');
      const before = tree(kubelet);
      // One at a time: they share the volume's lock.
      const codes: Record<string, string> = {};
      for (const [name, call] of [
        ['stage', () => stage(path, ext4)],
        ['unstage', () => unstage(path)],
        ['publish target', () => publish(staged, path, ext4)],
        ['publish staging', () => publish(path, join(kubelet, 'pod'), ext4)],
        ['unpublish', () => unpublish(path)],
        ['stats', () => loop.h.node.NodeGetVolumeStats({ volume_id: 'vol-a', volume_path: path })],
        ['expand', () => loop.h.node.NodeExpandVolume({ volume_id: 'vol-a', volume_path: path })],
        [
          'expand staging',
          () => loop.h.node.NodeExpandVolume({ volume_id: 'vol-a', volume_path: staged, staging_target_path: path }),
        ],
      ] as const) {
        codes[name] = await codeOf(call());
      }
      // Stats and expand only read a volume path: a path of any form that holds no volume is NOT_FOUND (CSI's
      // table; issue 16). Every call that would make or remove something refuses it as INVALID_ARGUMENT.
      const lookups = new Set(['stats', 'expand', 'expand staging']);
      for (const [name, code] of Object.entries(codes))
        expect([name, code]).toEqual([name, lookups.has(name) ? 'NOT_FOUND' : 'INVALID_ARGUMENT']);
      expect(tree(kubelet)).toEqual(before);
      await canaryUntouched();
    },
  );

  it('a staging path that is a symlink (to a directory elsewhere) is refused; the volume is not left attached by it', async () => {
    expect(await codeOf(stage(join(kubelet, 'to-canary'), ext4))).toBe('INVALID_ARGUMENT');
    expect(await loop.connector.queryDevice('vol-a')).toBeUndefined();
    await canaryUntouched();
  });

  it('a target path that is a symlink is refused for filesystem and block publishes; unpublish and unstage leave a symlink and what it points to alone', async () => {
    const staging = join(kubelet, 'vol-a', 'globalmount');
    await stage(staging, ext4);
    expect(await codeOf(publish(staging, join(kubelet, 'to-canary'), ext4))).toBe('INVALID_ARGUMENT');
    await unstage(staging);
    await stage(staging, blockCap());
    expect(await codeOf(publish(staging, join(kubelet, 'to-canary-file'), blockCap()))).toBe('INVALID_ARGUMENT');
    for (const link of ['to-canary', 'to-canary-file']) {
      expect(await codeOf(unpublish(join(kubelet, link)))).toBe('OK');
      expect(lstatSync(join(kubelet, link)).isSymbolicLink()).toBe(true);
    }
    await unstage(staging);
    expect(await codeOf(unstage(join(kubelet, 'to-canary')))).toBe('OK');
    expect(readlinkSync(join(kubelet, 'to-canary'))).toBe(canary);
    expect(
      await codeOf(loop.h.node.NodeGetVolumeStats({ volume_id: 'vol-a', volume_path: join(kubelet, 'to-canary') })),
    ).toBe('NOT_FOUND');
    await canaryUntouched();
  });

  it('a symlink above the path is followed: a kubelet root that is itself a symlink works', async () => {
    const realRoot = loop.fx.path('real-kubelet');
    await mkdir(realRoot);
    await symlink(realRoot, loop.fx.path('linked-kubelet'));
    const staging = join(loop.fx.path('linked-kubelet'), 'vol-a', 'globalmount');
    const target = join(loop.fx.path('linked-kubelet'), 'pods', 'p1', 'mount');
    await mkdir(join(loop.fx.path('linked-kubelet'), 'pods', 'p1'), { recursive: true });
    await stage(staging, ext4);
    await publish(staging, target, ext4);
    const points = (await readMountTable()).map((m) => m.mountPoint);
    expect(points).toContain(join(realRoot, 'vol-a', 'globalmount'));
    expect(points).toContain(join(realRoot, 'pods', 'p1', 'mount'));
    expect(await codeOf(loop.h.node.NodeGetVolumeStats({ volume_id: 'vol-a', volume_path: target }))).toBe('OK');
    await unpublish(target);
    await unstage(staging);
    expect(existsSync(join(realRoot, 'pods', 'p1', 'mount'))).toBe(false);
    expect(await loop.connector.queryDevice('vol-a')).toBeUndefined();
  });

  it('a path running through a regular file is INVALID_ARGUMENT for stage and both kinds of publish', async () => {
    await writeFile(join(kubelet, 'a-file'), 'x');
    const through = join(kubelet, 'a-file', 'globalmount');
    expect(await codeOf(stage(through, ext4))).toBe('INVALID_ARGUMENT');
    const staging = join(kubelet, 'vol-a', 'globalmount');
    for (const cap of [mountCap('ext4'), blockCap()]) {
      await stage(staging, cap);
      expect(await codeOf(publish(staging, join(through, 'pod'), cap))).toBe('INVALID_ARGUMENT');
      await unstage(staging);
    }
    expect(await loop.connector.queryDevice('vol-a')).toBeUndefined();
  });

  it('unpublish of a target that held files before the publish unmounts it and succeeds, leaving those files alone', async () => {
    const staging = join(kubelet, 'vol-a', 'globalmount');
    const dir = join(kubelet, 'not-empty');
    const file = join(kubelet, 'not-empty-file');
    await mkdir(dir);
    await writeFile(join(dir, 'theirs'), 'not ours');
    await writeFile(file, 'not ours either');
    for (const [cap, target] of [
      [mountCap('ext4'), dir],
      [blockCap(), file],
    ] as const) {
      await stage(staging, cap);
      await publish(staging, target, cap);
      expect(await mountAt(target)).toBeDefined();
      // Twice: the repeat after a finished unpublish must not be stuck on what was there before.
      for (let i = 0; i < 2; i++) expect(await codeOf(unpublish(target))).toBe('OK');
      expect(await mountAt(target)).toBeUndefined();
      await unstage(staging);
    }
    expect(await readFile(join(dir, 'theirs'), 'utf8')).toBe('not ours');
    expect(await readFile(file, 'utf8')).toBe('not ours either');
  });

  it('NodeStageVolume of a volume that does not exist makes no staging directory', async () => {
    const staging = join(kubelet, 'ghost', 'globalmount');
    expect(
      await codeOf(
        loop.h.node.NodeStageVolume({
          volume_id: 'vol-ghost',
          staging_target_path: staging,
          volume_capability: mountCap('ext4'),
        }),
      ),
    ).toBe('NOT_FOUND');
    expect(existsSync(join(kubelet, 'ghost'))).toBe(false);
  });
});

describe('node sizes', () => {
  it('NodeExpandVolume to more than the back end can ever hold is OUT_OF_RANGE at once, without waiting for the device', async () => {
    const staging = join(kubelet, 'vol-a', 'globalmount');
    await stage(staging, ext4);
    // Before, each of these waited out the 10 s device wait and answered UNAVAILABLE ("not grown yet").
    for (const required of ['70368744177665', '9007199254740991']) {
      expect(
        await codeOf(
          loop.h.node.NodeExpandVolume({
            volume_id: 'vol-a',
            volume_path: staging,
            capacity_range: { required_bytes: required },
          }),
        ),
      ).toBe('OUT_OF_RANGE');
    }
    await unstage(staging);
  });
});
