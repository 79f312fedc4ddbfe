// The device sds_cli reports: a plain path under the device directory, which must become a block device.
import { statSync, type Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { isAbsolute, normalize } from 'node:path';
import { ConnectorError } from './errors.js';

/** dev_addr comes from a program's output: accept only a plain absolute path under the device directory. */
export function checkDevicePath(deviceDir: string, volumeName: string, device: string): string {
  const ok =
    isAbsolute(device) &&
    normalize(device) === device &&
    device.startsWith(deviceDir + '/') &&
    !/[\u0000-\u001f\u007f]/.test(device);
  if (!ok) {
    throw new ConnectorError(
      'Garbled',
      `sds_cli for ${volumeName} reported dev_addr ${JSON.stringify(device.slice(0, 120))}, not a device path under ${deviceDir}`,
    );
  }
  return device;
}

export async function waitForBlockDevice(
  volumeName: string,
  device: string,
  waitMs: number,
  signal: AbortSignal | undefined,
): Promise<void> {
  const deadline = Date.now() + waitMs;
  let delay = 5;
  let seen: string;
  for (;;) {
    try {
      const info = await statOf(device);
      if (info.isBlockDevice()) return;
      seen = 'exists but is not a block device';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      seen = code === 'ENOENT' ? 'does not exist' : `cannot be read (${code})`;
    }
    if (signal?.aborted)
      throw new ConnectorError('Timeout', `attach ${volumeName}: cancelled while waiting for ${device}`, undefined, {
        cause: signal.reason,
      });
    if (Date.now() >= deadline) {
      throw new ConnectorError('DeviceTimeout', `attach ${volumeName}: ${device} ${seen} after ${waitMs} ms`);
    }
    await new Promise((r) => setTimeout(r, Math.max(1, Math.min(delay, deadline - Date.now()))));
    delay = Math.min(delay * 2, 200);
  }
}

/**
 * A node under /dev (devtmpfs: the kernel's own, in memory) is stat'ed synchronously, sparing a thread-pool
 * round trip; a device directory elsewhere may be on a filesystem that hangs, so it goes through the pool.
 */
function statOf(device: string): Promise<Stats> {
  // normalize: no '.' or '..' component may lead the synchronous stat out of /dev (checkDevicePath's rule).
  if (normalize(device) === device && /^\/dev\/[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/.test(device)) {
    try {
      return Promise.resolve(statSync(device));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }
  return stat(device);
}
