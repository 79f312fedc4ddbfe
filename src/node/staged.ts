// What this process's own NodeStageVolume learnt: the device the connector attached the volume as. Publish,
// unpublish and unstage of a filesystem volume then need no `sds_cli querydev` (one process, ~4 ms, on the
// path a pod waits for): the staging mount already shows that device. A hint only, never the truth: it is
// used when the mount table and sysfs confirm it (the mount shows the device, its node still has those
// numbers, the kernel is not tearing it down), and otherwise the connector is asked as before. Lost on a
// restart (then every call asks); dropped when the volume is unstaged.
import { blockDeviceNumber, deviceDetaching, isMountError, sameDevice, type DeviceNumber } from '../mount/index.js';

export interface StagedDevice {
  path: string;
  dev: DeviceNumber;
}

export class StagedDevices {
  private readonly byVolume = new Map<string, StagedDevice>();

  remember(volumeId: string, device: StagedDevice): void {
    this.byVolume.set(volumeId, device);
  }

  forget(volumeId: string): void {
    this.byVolume.delete(volumeId);
  }

  /**
   * The remembered device of the volume, if `shown` (a mount's device numbers) is it and the device is still
   * the one attached: its node has the same numbers and the kernel is not removing it (a detach behind our
   * back sets a loop device's autoclear, or takes the device away). Else undefined: ask the connector.
   */
  async confirmed(volumeId: string, shown: DeviceNumber | undefined): Promise<StagedDevice | undefined> {
    const known = this.byVolume.get(volumeId);
    if (!known || !shown || !sameDevice(shown, known.dev)) return undefined;
    try {
      if (!sameDevice(await blockDeviceNumber(known.path), known.dev)) return this.drop(volumeId);
    } catch (err) {
      if (isMountError(err)) return this.drop(volumeId);
      throw err;
    }
    if (await deviceDetaching(known.dev)) return this.drop(volumeId);
    return known;
  }

  private drop(volumeId: string): undefined {
    this.byVolume.delete(volumeId);
    return undefined;
  }
}
