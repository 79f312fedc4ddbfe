// Copy volume to image on the original protocol level, end to end: the driver's `export` command against
// the emulator in `--protocol original` (no export request there), which makes a temporary snapshot and a
// linked clone, attaches the clone on this host with the real sds_cli (a real loop device) and writes the
// image itself. Byte for byte; temporaries, loop devices and hidden files checked gone after every run.
import { execFileSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runExport } from '../src/cli/export.js';
import { partFileFor } from '../src/cli/host-export-run.js';
import { exportTemporaries } from '../src/cli/host-export.js';
import { sdsCli } from './support/emulator.js';
import { poolFiles } from './support/emulator-inventory.js';
import {
  blockCap,
  MiB,
  pattern,
  runDriverCli,
  sha256,
  sha256File,
  stageVolume,
  unstageVolume,
  writeDevice,
  type Staged,
} from './support/features.js';
import { findLeaks } from './support/leaks.js';
import { type Stack } from './support/stack.js';
import { stackForSuite } from './support/suite-stack.js';
import { vbsRequest } from './support/vbs.js';

const SIZE = 64 * MiB;
let stack: Stack;
/** where --out goes; the test's other files go beside it, in the stack's temp dir (removed with it) */
let outDir: string;
let seq = 0;
const name = (prefix: string) => `${prefix}-${process.pid}-${++seq}`;

stackForSuite({ mode: 'all', level: 'original', pools: ['pool0:2G'] }, (started) => (stack = started));
beforeAll(async () => {
  outDir = join(stack.dir, 'out');
  await mkdir(outDir);
});

/** The export command as a user runs it; the level is left to negotiate (the emulator refuses the capability query). */
function export_(args: string[]) {
  return runDriverCli(['export', '--vbs-url', `unix://${stack.vbsSocket}`, '--sds-cli', stack.sdsCli, ...args], {
    SDS_KV_SOCKET: stack.kvSocket,
  });
}

/** The same, in this process, with its signals in our hands. */
async function exportInProcess(args: string[], onStderr: (line: string, signals: EventEmitter) => void) {
  const signals = new EventEmitter();
  let stderr = '';
  const code = await runExport(
    ['--vbs-url', `unix://${stack.vbsSocket}`, '--sds-cli', stack.sdsCli, '--vbs-protocol', 'original', ...args],
    {
      stdout: () => undefined,
      stderr: (text) => {
        stderr += text;
        onStderr(text, signals);
      },
      signals,
      env: { SDS_KV_SOCKET: stack.kvSocket, PATH: process.env.PATH },
    },
  );
  return { code, stderr };
}

/** A 64 MiB volume holding `data` at 0 and at 40 MiB (zeros between), staged as a block device on this node. */
async function volumeWith(data: Buffer): Promise<{ staged: Staged; expected: Buffer }> {
  const id = name('pvc-img');
  await stack.csi.controller.CreateVolume({
    name: id,
    volume_capabilities: [blockCap()],
    capacity_range: { required_bytes: String(SIZE) },
  });
  const staged = await stageVolume(stack, id, blockCap());
  const expected = Buffer.alloc(SIZE);
  data.copy(expected, 0);
  data.copy(expected, 40 * MiB);
  await writeDevice(staged.target, expected);
  return { staged, expected };
}

const ourLoops = () => findLeaks(stack.dir).loops.sort();

/** Nothing of an export is left: no hidden file beside --out, no temporary volume or snapshot on the back end. */
function expectNoTemporaries(volumes: string[]): void {
  expect(readdirSync(outDir).filter((f) => f.startsWith('.'))).toEqual([]);
  const files = poolFiles(stack.emulatorDataDir);
  expect(files.volumes.sort()).toEqual(volumes.map((v) => `pool0/${v}`).sort());
  expect(files.snapshots).toEqual([]);
  expect(files.tmp).toEqual([]);
}

async function removeVolume(staged: Staged): Promise<void> {
  await unstageVolume(stack, staged);
  await stack.csi.controller.DeleteVolume({ volume_id: staged.id });
}

/** The image at `raw` holds `expected` and the export left nothing behind; then image and volume are removed. */
async function expectImageThenRemove(raw: string, expected: Buffer, staged: Staged): Promise<void> {
  expect(await sha256File(raw)).toBe(sha256(expected));
  expectNoTemporaries([staged.id]);
  await rm(raw);
  await removeVolume(staged);
}

describe('sdshypervisor-csi export on the original level', () => {
  it('exports an attached volume in use to raw (sparse) and qcow2, byte for byte', async () => {
    const { staged, expected } = await volumeWith(pattern(2 * MiB, 'orig-export'));
    const loopsBefore = ourLoops();

    const raw = join(outDir, 'vol.raw');
    const r = await export_(['--volume', staged.id, '--out', raw, '--size', '64Mi']);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    expect(r.stdout.trim()).toBe(raw);
    expect(r.stderr).toMatch(/export: original level: snapshot E_[0-9a-f]{32}\.EXPORT_SNAP of volume/);
    expect(r.stderr).toMatch(/export: 100% \(64\/64 MiB\)/);
    expect(r.stderr).toMatch(/export: done/);
    expect(statSync(raw).size).toBe(SIZE);
    expect(await sha256File(raw)).toBe(sha256(expected));
    expect(statSync(raw).blocks * 512).toBeLessThanOrEqual(8 * MiB); // the 60 MiB of zeros stayed holes

    const qcow = join(outDir, 'vol.qcow2');
    const q = await export_([
      '--volume',
      staged.id,
      '--out',
      qcow,
      '--size',
      String(SIZE),
      '--format',
      'qcow2',
      '--quiet',
    ]);
    expect([q.code, q.stderr]).toEqual([0, '']);
    const back = join(stack.dir, 'vol-back.raw');
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcow, back]);
    expect(await sha256File(back)).toBe(sha256(expected));

    // The source stayed attached and usable throughout; the clones' loop devices are gone.
    await writeDevice(staged.target, Buffer.alloc(MiB, 0x11));
    expect(ourLoops()).toEqual(loopsBefore);
    expectNoTemporaries([staged.id]);

    const again = await export_(['--volume', staged.id, '--out', raw, '--size', '64Mi']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/exists; add --overwrite/);
    const replaced = await export_(['--volume', staged.id, '--out', raw, '--size', '64Mi', '--overwrite', '--quiet']);
    expect(replaced.code).toBe(0);
    await rm(qcow);
    await expectImageThenRemove(raw, Buffer.concat([Buffer.alloc(MiB, 0x11), expected.subarray(MiB)]), staged);
  });

  it('exports a snapshot through a clone of it, the snapshot left as it was', async () => {
    const { staged, expected } = await volumeWith(pattern(MiB, 'orig-snap'));
    const { snapshot } = await stack.csi.controller.CreateSnapshot({ name: name('snap'), source_volume_id: staged.id });
    await writeDevice(staged.target, Buffer.alloc(MiB, 0xee)); // after the snapshot: not in its image
    const raw = join(outDir, 'snap.raw');
    const r = await export_(['--snapshot', snapshot!.snapshot_id, '--out', raw, '--size', '64Mi', '--quiet']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(poolFiles(stack.emulatorDataDir).snapshots).toEqual([`pool0/${snapshot!.snapshot_id}`]);
    await stack.csi.controller.DeleteSnapshot({ snapshot_id: snapshot!.snapshot_id });
    await expectImageThenRemove(raw, expected, staged);
  });

  it('a rerun removes what a crashed run left (snapshot, clone attached here, .part file)', async () => {
    const { staged, expected } = await volumeWith(pattern(MiB, 'orig-crash'));
    const raw = join(outDir, 'crash.raw');
    const loopsBefore = ourLoops();
    // What a run killed after attaching its clone leaves.
    const names = exportTemporaries({ volume: staged.id }, raw);
    const snap = await vbsRequest(stack.vbsSocket, 'CREATE_SNAPSHOT_REQ', {
      snap_name: names.snapshot!,
      vol_name: staged.id,
      smartflag: 1,
    });
    expect(snap.retcode).toBe(0);
    const clone = await vbsRequest(stack.vbsSocket, 'CREATE_VOLUME_FROM_SNAPSHOT_REQ', {
      vol_name: names.clone,
      vol_size: 64,
      snap_name_src: names.snapshot!,
      vol_num: 1,
    });
    expect(clone.retcode).toBe(0);
    expect(sdsCli(stack.kvSocket, ['-c', 'attach', '-v', names.clone]).values.get('ret_code')).toBe('0');
    expect(ourLoops().length).toBe(loopsBefore.length + 1);
    await writeFile(partFileFor(raw), 'half an image');

    const r = await export_(['--volume', staged.id, '--out', raw, '--size', '64Mi']);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    expect(r.stderr).toContain(`removed what an earlier run left: clone ${names.clone} detached from /dev/loop`);
    expect(r.stderr).toContain(`snapshot ${names.snapshot}`);
    expect(ourLoops()).toEqual(loopsBefore);
    await expectImageThenRemove(raw, expected, staged);
  });

  it('Ctrl-C stops the copy and removes everything; a second one stops at once and a rerun cleans up', async () => {
    const { staged, expected } = await volumeWith(pattern(MiB, 'orig-interrupt'));
    const raw = join(outDir, 'stopped.raw');
    const loopsBefore = ourLoops();
    const args = ['--volume', staged.id, '--out', raw, '--size', '64Mi'];

    const once = await exportInProcess(args, (text, signals) => {
      if (text.includes('attached at')) signals.emit('SIGINT');
    });
    expect(once.code).toBe(130);
    expect(once.stderr).toMatch(/interrupted; stopping the copy/);
    expect(once.stderr).toMatch(/interrupted; the temporaries were removed/);
    expect(existsSync(raw)).toBe(false);
    expect(ourLoops()).toEqual(loopsBefore);
    expectNoTemporaries([staged.id]);

    const twice = await exportInProcess(args, (text, signals) => {
      if (text.includes('attached at')) {
        signals.emit('SIGINT');
        signals.emit('SIGTERM');
      }
    });
    expect(twice.code).toBe(130);
    expect(twice.stderr).toMatch(/stopping now; .* is removed by running the same command again/);
    expect(existsSync(raw)).toBe(false);
    const names = exportTemporaries({ volume: staged.id }, raw);
    expect(poolFiles(stack.emulatorDataDir).volumes).toContain(`pool0/${names.clone}`);

    const rerun = await export_([...args, '--quiet']);
    expect([rerun.code, rerun.stderr]).toEqual([0, '']);
    expect(ourLoops()).toEqual(loopsBefore);
    await expectImageThenRemove(raw, expected, staged);
  });

  it('needs --size, refuses a smaller one, and says so with exit status 1 and nothing left', async () => {
    const { staged } = await volumeWith(pattern(MiB, 'orig-size'));
    const raw = join(outDir, 'size.raw');
    const none = await export_(['--volume', staged.id, '--out', raw]);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/--size is needed on the original protocol level/);
    const small = await export_(['--volume', staged.id, '--out', raw, '--size', '16Mi']);
    expect(small.code).toBe(1);
    expect(small.stderr).toMatch(/smaller than the source\? it must be the source's size/);
    const bad = await export_(['--volume', staged.id, '--out', raw, '--size', '1.5G']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--size must be a positive size/);
    const missing = await export_(['--volume', 'pvc-not-there', '--out', raw, '--size', '64Mi']);
    expect([missing.code, missing.stderr]).toEqual([
      1,
      'sdshypervisor-csi export: volume pvc-not-there does not exist\n',
    ]);
    expect(existsSync(raw)).toBe(false);
    expectNoTemporaries([staged.id]);
    await removeVolume(staged);
  });
});

describe('sdshypervisor-csi import on the original level', () => {
  function import_(args: string[]) {
    return runDriverCli(['import', '--vbs-url', `unix://${stack.vbsSocket}`, '--sds-cli', stack.sdsCli, ...args], {
      SDS_KV_SOCKET: stack.kvSocket,
    });
  }

  it('writes a qcow2 image onto a blank volume, refuses one with data unless --overwrite, and one in use', async () => {
    const id = name('pvc-import');
    await stack.csi.controller.CreateVolume({
      name: id,
      volume_capabilities: [blockCap()],
      capacity_range: { required_bytes: String(SIZE) },
    });
    const loopsBefore = ourLoops();
    const disk = Buffer.alloc(48 * MiB);
    pattern(2 * MiB, 'import-head').copy(disk, 0);
    pattern(MiB, 'import-tail').copy(disk, 47 * MiB);
    const rawImage = join(stack.dir, 'import.raw');
    const qcow = join(stack.dir, 'import.qcow2');
    await writeFile(rawImage, disk);
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', rawImage, qcow]);

    const r = await import_(['--volume', id, '--image', qcow, '--format', 'qcow2']);
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: 0 });
    expect(r.stderr).toMatch(/import: done/);
    expect(ourLoops()).toEqual(loopsBefore);

    const again = await import_(['--volume', id, '--image', rawImage]);
    expect([again.code, again.stderr]).toEqual([
      1,
      `sdshypervisor-csi import: volume ${id} holds data; add --overwrite to write over it\n`,
    ]);
    // Over it: the zeros of the new image replace the old data too.
    const second = Buffer.alloc(16 * MiB, 0);
    pattern(MiB, 'import-second').copy(second, 8 * MiB);
    await writeFile(rawImage, second);
    const over = await import_(['--volume', id, '--image', rawImage, '--overwrite', '--quiet']);
    expect([over.code, over.stderr]).toEqual([0, '']);
    expect(ourLoops()).toEqual(loopsBefore);

    const staged = await stageVolume(stack, id, blockCap());
    const expected = Buffer.concat([second, disk.subarray(16 * MiB), Buffer.alloc(SIZE - disk.length)]);
    expect(await sha256File(staged.target, SIZE)).toBe(sha256(expected));
    const inUse = await import_(['--volume', id, '--image', rawImage, '--overwrite']);
    expect(inUse.code).toBe(1);
    expect(inUse.stderr).toMatch(/is in use \(attached on a host\)/);

    const big = join(stack.dir, 'big.raw');
    await writeFile(big, Buffer.alloc(0));
    execFileSync('truncate', ['-s', String(SIZE + MiB), big]);
    await removeVolume(staged);
    await stack.csi.controller.CreateVolume({
      name: id,
      volume_capabilities: [blockCap()],
      capacity_range: { required_bytes: String(SIZE) },
    });
    const tooBig = await import_(['--volume', id, '--image', big]);
    expect(tooBig.code).toBe(1);
    expect(tooBig.stderr).toMatch(/is larger than volume/);
    expect(ourLoops()).toEqual(loopsBefore);
    await stack.csi.controller.DeleteVolume({ volume_id: id });
    expectNoTemporaries([]);
  });
});
