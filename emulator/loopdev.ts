// Loop devices through losetup (util-linux) and sysfs: the block devices volumes are attached as.
import { closeSync, constants, openSync, readFileSync } from 'node:fs';
import { fsyncPath } from './files.js';
import { basename } from 'node:path';
import { run, ToolError } from './exec.js';

export interface LoopDevice {
  device: string;
  /** the backing file; a deleted file keeps its old path with " (deleted)" */
  backFile: string;
  backIno: number;
  major: number;
  minor: number;
  readOnly: boolean;
  directIo: boolean;
  autoclear: boolean;
}

interface LosetupJson {
  loopdevices?: Array<Record<string, unknown>>;
}

/** Every loop device of the machine with its backing file (one `losetup -J` call). */
export async function listLoopDevices(): Promise<LoopDevice[]> {
  const { stdout } = await run('losetup', ['-J', '-l', '-O', 'NAME,BACK-FILE,BACK-INO,MAJ:MIN,RO,DIO,AUTOCLEAR']);
  if (!stdout.trim()) return [];
  const parsed = JSON.parse(stdout) as LosetupJson;
  return (parsed.loopdevices ?? []).map((d) => {
    const [major = 0, minor = 0] = String(d['maj:min'] ?? '')
      .trim()
      .split(':')
      .map((n) => Number(n.trim()));
    return {
      device: String(d.name),
      backFile: String(d['back-file'] ?? ''),
      backIno: Number(d['back-ino'] ?? 0),
      major,
      minor,
      readOnly: d.ro === true || d.ro === '1',
      directIo: d.dio === true || d.dio === '1',
      autoclear: d.autoclear === true || d.autoclear === '1',
    };
  });
}

/** The backing file of a loop device from sysfs, undefined when the device is not configured. */
export function backingFileOf(device: string): string | undefined {
  try {
    return readFileSync(`/sys/block/${basename(device)}/loop/backing_file`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function deviceNumbers(device: string): { major: number; minor: number } {
  const [major, minor] = readFileSync(`/sys/block/${basename(device)}/dev`, 'utf8')
    .trim()
    .split(':')
    .map(Number);
  return { major: major!, minor: minor! };
}

/**
 * Attaches `file` to a free loop device. Direct I/O makes the device write straight into the file (no second
 * page cache), so a flush of the device is all a reflink snapshot needs to see its data.
 */
export async function attachLoop(file: string, options: { readOnly: boolean; directIo: boolean }): Promise<string> {
  const args = ['--find', '--show'];
  if (options.readOnly) args.push('--read-only');
  if (options.directIo) args.push('--direct-io=on');
  args.push('--', file);
  let lastError: unknown;
  // Another process may grab the same free device between losetup's lookup and its setup: retry.
  for (let attempt = 0; attempt < 4; attempt++) {
    try {
      const { stdout } = await run('losetup', args, { timeoutMs: 30_000 });
      const device = stdout.trim();
      if (!/^\/dev\/loop\d+$/.test(device)) throw new Error(`losetup printed ${JSON.stringify(device.slice(0, 80))}`);
      if (backingFileOf(device) !== file) throw new Error(`${device} does not show ${file} as its backing file`);
      return device;
    } catch (err) {
      lastError = err;
      if (!(err instanceof ToolError) || !/busy|resource temporarily/i.test(err.stderr)) break;
      await new Promise((r) => setTimeout(r, 20 * (attempt + 1)));
    }
  }
  throw lastError;
}

/** Detaches a loop device. On a device still held open the kernel only sets autoclear (see README). */
export async function detachLoop(device: string): Promise<void> {
  const backing = backingFileOf(device);
  try {
    await run('losetup', ['-d', device], { timeoutMs: 30_000 });
  } catch (err) {
    // Already gone: the goal is reached.
    if (backingFileOf(device) === undefined) return;
    throw err;
  }
  if (backing !== undefined) await waitUnbound(device, backing, 2_000);
}

/**
 * Waits until `device` no longer serves `backing` (unbound, or reused for another file). A detach or an
 * unmount of a device some other process holds for a moment (a blkid, a udev probe) only sets autoclear;
 * the kernel unbinds it at that holder's last close. Returns whether it was unbound in time.
 */
export async function waitUnbound(device: string, backing: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (backingFileOf(device) !== backing) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Re-reads the size of the backing file after it grew (online extend). */
export async function refreshCapacity(device: string): Promise<void> {
  await run('losetup', ['--set-capacity', device], { timeoutMs: 30_000 });
}

export async function setDirectIo(device: string, on: boolean): Promise<void> {
  await run('losetup', [`--direct-io=${on ? 'on' : 'off'}`, device], { timeoutMs: 30_000 });
}

/** Flushes a block device: its page cache reaches the loop driver, and the loop driver fsyncs the file. */
export function flushDevice(device: string): void {
  fsyncPath(device);
}

/**
 * True when something holds the device exclusively (a mounted file system, a device-mapper target, another
 * exclusive opener). A plain open(2) by a process is not visible this way.
 */
export function isDeviceBusy(device: string): boolean {
  let fd: number;
  try {
    fd = openSync(device, constants.O_RDONLY | constants.O_EXCL);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EBUSY') return true;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENXIO')
      return false;
    throw err;
  }
  closeSync(fd);
  return false;
}
