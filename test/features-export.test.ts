// Copy volume to image, end to end: the driver's `export` command (dist/src/main.js export) against the real
// stack, with data written through volumes staged by the node service. The emulator here may write only into
// its own image directory, so an --out elsewhere goes through the staged path (export inside it, then move).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  blockCap,
  MiB,
  mountCap,
  pattern,
  runDriverCli,
  sha256,
  sha256File,
  stageVolume,
  unstageVolume,
  writeDevice,
} from './support/features.js';
import { startStack, type Stack } from './support/stack.js';

let stack: Stack;
/** the emulator's only image directory */
let vbsImages: string;
/** a directory outside it, where --out goes */
let outDir: string;
let work: string;
let seq = 0;
const name = (prefix: string) => `${prefix}-${process.pid}-${++seq}`;
const vbsUrl = () => `unix://${stack.vbsSocket}`;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'features-export-'));
  vbsImages = join(work, 'vbs-images');
  outDir = join(work, 'out');
  await mkdir(vbsImages);
  await mkdir(outDir);
  // TCP too (port 0 = a free one), for the remote-VBS case.
  stack = await startStack({
    mode: 'all',
    pools: ['pool0:4G'],
    emulatorArgs: ['--image-dir', vbsImages, '--listen-port', '0'],
  });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
  await rm(work, { recursive: true, force: true });
});

function export_(args: string[]) {
  return runDriverCli(['export', '--vbs-url', vbsUrl(), ...args]);
}

/** Nothing of ours is left in the image directory or beside --out: no staged image, no .part file. */
function strayFiles(): string[] {
  return [
    ...readdirSync(vbsImages).map((f) => `vbs-images/${f}`),
    ...readdirSync(outDir)
      .filter((f) => f.startsWith('.'))
      .map((f) => `out/${f}`),
  ];
}

async function blockVolumeWith(data: Buffer) {
  const id = name('pvc-exp');
  await stack.csi.controller.CreateVolume({
    name: id,
    volume_capabilities: [blockCap()],
    capacity_range: { required_bytes: String(data.length) },
  });
  const staged = await stageVolume(stack, id, blockCap());
  await writeDevice(staged.target, data);
  return staged;
}

describe('sdshypervisor-csi export', () => {
  it('exports a snapshot (raw and qcow2) through the staged path, byte for byte what was written', async () => {
    const data = pattern(32 * MiB, 'snapshot-export');
    const staged = await blockVolumeWith(data);
    const { snapshot } = await stack.csi.controller.CreateSnapshot({
      name: name('snap-exp'),
      source_volume_id: staged.id,
    });
    // Written after the snapshot: must not be in its image.
    await writeDevice(staged.target, Buffer.alloc(MiB, 0xee));

    const raw = join(outDir, 'snap.raw');
    const r = await export_(['--snapshot', snapshot!.snapshot_id, '--out', raw]);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    expect(r.stdout.trim()).toBe(raw);
    expect(r.stderr).toMatch(/export: job job-/);
    expect(r.stderr).toMatch(/export: done/);
    expect(await sha256File(raw)).toBe(sha256(data));

    const qcow = join(outDir, 'snap.qcow2');
    const q = await export_(['--snapshot', snapshot!.snapshot_id, '--out', qcow, '--format', 'qcow2', '--quiet']);
    expect([q.code, q.stderr]).toEqual([0, '']);
    expect(readFileSync(qcow).subarray(0, 4).toString('latin1')).toBe('QFI\xfb');
    const back = join(work, 'snap-back.raw');
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcow, back]);
    expect(await sha256File(back)).toBe(sha256(data));

    expect(strayFiles()).toEqual([]);
    await unstageVolume(stack, staged);
    await stack.csi.controller.DeleteSnapshot({ snapshot_id: snapshot!.snapshot_id });
    await stack.csi.controller.DeleteVolume({ volume_id: staged.id });
  });

  it('exports a volume straight into an image directory, and refuses to replace a file without --overwrite', async () => {
    const data = pattern(16 * MiB, 'direct-export');
    const staged = await blockVolumeWith(data);
    const inside = join(vbsImages, 'direct.raw');
    const r = await export_(['--volume', staged.id, '--out', inside]);
    expect([r.code, r.stderr.includes('then')]).toEqual([0, false]); // no staging: the VBS wrote it in place
    expect(await sha256File(inside)).toBe(sha256(data));

    const again = await export_(['--volume', staged.id, '--out', inside]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/exists; add --overwrite/);
    await writeDevice(staged.target, Buffer.alloc(MiB, 0x5a));
    const replaced = await export_(['--volume', staged.id, '--out', inside, '--overwrite', '--quiet']);
    expect(replaced.code).toBe(0);
    const expected = Buffer.concat([Buffer.alloc(MiB, 0x5a), data.subarray(MiB)]);
    expect(await sha256File(inside)).toBe(sha256(expected));
    await rm(inside);

    expect(strayFiles()).toEqual([]);
    await unstageVolume(stack, staged);
    await stack.csi.controller.DeleteVolume({ volume_id: staged.id });
  });

  it('exports a mounted volume while a writer keeps writing: the image is a consistent filesystem holding the synced data', async () => {
    const id = name('pvc-live');
    const cap = mountCap('ext4');
    await stack.csi.controller.CreateVolume({
      name: id,
      volume_capabilities: [cap],
      capacity_range: { required_bytes: String(256 * MiB) },
    });
    const staged = await stageVolume(stack, id, cap);
    const data = pattern(8 * MiB, 'live-export');
    await writeFile(join(staged.target, 'pattern.bin'), data);
    execFileSync('sync', ['-f', join(staged.target, 'pattern.bin')]);

    // A writer in its own process (one process, no children: killing it stops every write), rewriting files and
    // fsyncing them for as long as the export runs.
    const writerScript = `
      const fs = require('node:fs');
      const crypto = require('node:crypto');
      for (let i = 0; ; i++) {
        const fd = fs.openSync(process.argv[1] + '/churn-' + (i % 8), 'w');
        fs.writeSync(fd, crypto.randomBytes(2 * 1024 * 1024));
        fs.fsyncSync(fd);
        fs.closeSync(fd);
      }`;
    const writer = spawn(process.execPath, ['-e', writerScript, staged.target], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 300));
      const image = join(outDir, 'live.raw');
      const r = await export_(['--volume', id, '--out', image]);
      expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });

      // Crash-consistent: after its journal is replayed, a full check finds nothing to fix.
      const replay = spawnSync('e2fsck', ['-y', '-E', 'journal_only', image], { encoding: 'utf8' });
      expect(replay.status, replay.stdout + replay.stderr).toBeLessThanOrEqual(1);
      const check = spawnSync('e2fsck', ['-f', '-n', image], { encoding: 'utf8' });
      expect(check.status, check.stdout + check.stderr).toBe(0);
      const dumped = join(work, 'pattern-from-image.bin');
      execFileSync('debugfs', ['-R', `dump /pattern.bin ${dumped}`, image], { stdio: 'ignore' });
      expect(await sha256File(dumped)).toBe(sha256(data));
      await rm(image);
    } finally {
      writer.kill('SIGKILL');
      await new Promise((r) => writer.once('close', r));
    }
    expect(readdirSync(staged.target).filter((f) => f.startsWith('churn-')).length).toBeGreaterThan(0); // it did write
    expect(strayFiles()).toEqual([]);
    // The export's temporary snapshot is gone with its job.
    expect(readdirSync(join(stack.emulatorDataDir, 'pools', 'pool0', '.tmp'))).toEqual([]);
    await unstageVolume(stack, staged);
    await stack.csi.controller.DeleteVolume({ volume_id: id });
  });

  it('answers bad arguments with exit status 2 and a message naming them', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--out', join(outDir, 'x.raw')], /exactly one of --volume and --snapshot/],
      [['--volume', 'a', '--snapshot', 'b', '--out', join(outDir, 'x.raw')], /exactly one of --volume and --snapshot/],
      [['--volume', 'pvc-1'], /--out FILE is required/],
      [['--volume', '../etc', '--out', join(outDir, 'x.raw')], /--volume: "..\/etc" is not a volume or snapshot id/],
      [['--volume', 'pvc-1', '--out', join(outDir, 'x.vmdk'), '--format', 'vmdk'], /--format must be raw or qcow2/],
      [['--volume', 'pvc-1', '--out', join(outDir, 'x.raw'), '--colour', 'blue'], /Unknown option '--colour'/],
      [
        ['--volume', 'pvc-1', '--out', join(outDir, 'x.raw'), '--vbs-token-file', join(work, 'no-such-token')],
        /--vbs-token-file: cannot read/,
      ],
      [['--volume', 'pvc-1', '--out', join(outDir, 'x.raw'), '--vbs-url', 'ftp://vbs'], /only tcp:\/\/ and unix:\/\//],
    ];
    for (const [args, message] of cases) {
      const r = await runDriverCli(['export', ...args]);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/^sdshypervisor-csi export: /);
    }
    const help = await runDriverCli(['export', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: sdshypervisor-csi export/);
    expect(existsSync(join(outDir, 'x.raw'))).toBe(false);
  });

  it('fails with exit status 1 for a missing source, a missing directory, and --out outside the image directories of a remote VBS', async () => {
    const missing = await export_(['--volume', 'pvc-does-not-exist', '--out', join(outDir, 'm.raw')]);
    expect([missing.code, missing.stderr]).toEqual([
      1,
      'sdshypervisor-csi export: volume pvc-does-not-exist does not exist\n',
    ]);
    const noSnap = await export_(['--snapshot', 'snap-does-not-exist', '--out', join(outDir, 'm.raw')]);
    expect([noSnap.code, noSnap.stderr]).toEqual([
      1,
      'sdshypervisor-csi export: snapshot snap-does-not-exist does not exist\n',
    ]);
    const noDir = await export_(['--volume', 'pvc-x', '--out', join(outDir, 'no', 'dir.raw')]);
    expect(noDir.code).toBe(1);
    expect(noDir.stderr).toMatch(/--out: the directory .* does not exist/);

    const id = name('pvc-remote');
    await stack.csi.controller.CreateVolume({
      name: id,
      volume_capabilities: [blockCap()],
      capacity_range: { required_bytes: String(4 * MiB) },
    });
    const { tcpPort } = JSON.parse(readFileSync(join(stack.emulatorDataDir, 'emulator.json'), 'utf8')) as {
      tcpPort: number;
    };
    expect(tcpPort).toBeGreaterThan(0);
    const exportOverTcp = (out: string, ...extra: string[]) =>
      runDriverCli(['export', '--vbs-url', `127.0.0.1:${tcpPort}`, '--volume', id, '--out', out, ...extra]);
    const remote = await exportOverTcp(join(outDir, 'remote.raw'));
    expect(remote.code).toBe(1);
    expect(remote.stderr).toMatch(/outside the VBS's image directories .*and the VBS is not on this host/);
    // Inside them, a remote VBS writes the file on its host (here the same machine).
    const inside = join(vbsImages, 'remote.raw');
    const ok = await exportOverTcp(inside, '--quiet');
    expect([ok.code, ok.stderr]).toEqual([0, '']);
    expect(readFileSync(inside).equals(Buffer.alloc(4 * MiB))).toBe(true);
    await rm(inside);
    expect(existsSync(join(outDir, 'remote.raw'))).toBe(false);
    expect(strayFiles()).toEqual([]);
    await stack.csi.controller.DeleteVolume({ volume_id: id });
  });

  it('copies the staged image across file systems sparse, when --out is on another one', async () => {
    // A small tmpfs under our work dir: another file system than the image directory's.
    const other = join(work, 'tmpfs');
    await mkdir(other);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', other]);
    try {
      const data = Buffer.concat([pattern(MiB, 'sparse-a'), Buffer.alloc(14 * MiB), pattern(MiB, 'sparse-b')]);
      const staged = await blockVolumeWith(data);
      const out = join(other, 'cross.raw');
      const r = await export_(['--volume', staged.id, '--out', out]);
      expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
      expect(r.stderr).toMatch(/copying to/);
      expect(await sha256File(out)).toBe(sha256(data));
      const blocks = Number(execFileSync('stat', ['-c', '%b', out], { encoding: 'utf8' }).trim());
      expect(blocks * 512).toBeLessThanOrEqual(4 * MiB); // the 14 MiB of zeros stayed holes
      expect(readdirSync(other)).toEqual(['cross.raw']);
      expect(strayFiles()).toEqual([]);
      await unstageVolume(stack, staged);
      await stack.csi.controller.DeleteVolume({ volume_id: staged.id });
    } finally {
      execFileSync('umount', [other]);
    }
  });
});
