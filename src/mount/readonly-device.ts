// Read-only block devices for read-only raw block publishes. A read-only bind mount does not stop writes
// through a device node (the mount's ro flag guards the filesystem holding the node, not the device), and
// `blockdev --setro` on the volume's device would also stop every read-write user of it. A read-only loop
// device over the volume's device is a second device the kernel itself refuses writes to (EPERM): the pod
// gets that one.
import { readdirSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { blockDeviceNumber, readSysfs, sameDevice, type DeviceNumber } from './device.js';
import { MountError } from './errors.js';
import { runTool } from './exec.js';
import { splitDeviceNumber } from './paths.js';

const LOSETUP_TIMEOUT_MS = 60_000;

/** The block device under the read-only loop device whose sysfs directory is `base`; undefined when none. */
async function blockDeviceBacking(base: string): Promise<DeviceNumber | undefined> {
  if (readSysfs(`${base}/ro`) !== '1') return undefined;
  const backing = readSysfs(`${base}/loop/backing_file`);
  if (!backing || !backing.startsWith('/dev/')) return undefined;
  // Not a block device, or gone: no device under it.
  return blockDeviceNumber(backing).catch(() => undefined);
}

/** When `loop` is a read-only loop device whose backing file is a block device: that device's numbers. */
export function readOnlyLoopBacking(loop: DeviceNumber): Promise<DeviceNumber | undefined> {
  return blockDeviceBacking(`/sys/dev/block/${loop.major}:${loop.minor}`);
}

export interface LoopDevice {
  path: string;
  dev: DeviceNumber;
}

/** Every read-only loop device layered over the block device `dev`. */
export async function readOnlyLoopsOver(dev: DeviceNumber): Promise<LoopDevice[]> {
  let names: string[];
  try {
    names = readdirSync('/sys/block').filter((n) => /^loop\d+$/.test(n));
  } catch {
    return [];
  }
  const found: LoopDevice[] = [];
  for (const name of names) {
    // Most loop devices are read-write: their `ro` is the one attribute read.
    const under = await blockDeviceBacking(`/sys/block/${name}`);
    if (!under || !sameDevice(under, dev)) continue;
    const numbers = /^(\d+):(\d+)$/.exec(readSysfs(`/sys/block/${name}/dev`) ?? '');
    if (numbers) found.push({ path: `/dev/${name}`, dev: { major: Number(numbers[1]), minor: Number(numbers[2]) } });
  }
  return found;
}

/** A new read-only loop device over the block device at `devicePath`. */
export async function createReadOnlyLoop(
  devicePath: string,
  options: { signal?: AbortSignal } = {},
): Promise<LoopDevice> {
  const { stdout } = await runTool('losetup', ['--find', '--show', '--read-only', devicePath], {
    timeoutMs: LOSETUP_TIMEOUT_MS,
    signal: options.signal,
  });
  const path = stdout.trim();
  if (!/^\/dev\/loop\d+$/.test(path))
    throw new MountError(
      'Failed',
      `losetup printed ${JSON.stringify(path.slice(0, 60))} for a read-only loop over ${devicePath}`,
    );
  const info = await stat(path);
  return { path, dev: splitDeviceNumber(info.rdev) };
}

/** Detaches a loop device; one still open is detached by the kernel when its last user closes it. */
export async function detachLoop(path: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  await runTool('losetup', ['--detach', path], { timeoutMs: LOSETUP_TIMEOUT_MS, signal: options.signal });
}

/** Makes a loop device take the size of its (grown) backing device. */
export async function refreshLoopCapacity(path: string, options: { signal?: AbortSignal } = {}): Promise<void> {
  await runTool('losetup', ['--set-capacity', path], { timeoutMs: LOSETUP_TIMEOUT_MS, signal: options.signal });
}
