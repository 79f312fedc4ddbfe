// A stand-in for the KV connector in node tests that need no back end: volumes are image files in a temp
// dir, attached as real loop devices with losetup. Same contract as src/connector's KvConnector (attach is
// idempotent and returns the device; detach of a detached volume succeeds; queryDevice → undefined when
// not attached), and the same ConnectorError kinds.
import { existsSync } from 'node:fs';
import { ConnectorError } from '../../src/connector/index.js';
import type { NodeConnector } from '../../src/node/deps.js';
import { backingFileOf, waitUnbound } from '../../emulator/loopdev.js';
import { sh, type LoopFixtures } from './loop-fixtures.js';

export class LoopConnector implements NodeConnector {
  readonly images = new Map<string, string>();
  readonly unmapped = new Set<string>();
  /** volumes the "back end" reports as not attached, whatever the kernel says (a detach behind our back) */
  private readonly forgotten = new Set<string>();
  readonly calls: string[] = [];

  constructor(private readonly fixtures: LoopFixtures) {}

  /** A new volume of `bytes` (blank). */
  async create(name: string, bytes: number): Promise<string> {
    const file = await this.fixtures.image(`${name}.img`, bytes);
    this.images.set(name, file);
    return file;
  }

  private file(name: string): string {
    const file = this.images.get(name);
    if (!file) throw new ConnectorError('VolumeNotFound', `volume ${name} does not exist`);
    return file;
  }

  /**
   * The loop device over `file`, not counting one being torn down: `losetup --detach` of a device someone
   * still holds open (a concurrent blkid, a closing mount) only sets autoclear, and the kernel unbinds it at
   * the last close. Handing that one out again made a stage probe a device that went blank under it.
   */
  private attachedDevice(file: string): string | undefined {
    const rows = sh('losetup', ['--associated', file, '--noheadings', '--raw', '--output', 'NAME,AUTOCLEAR']);
    for (const row of rows.trim().split('\n')) {
      const [name, autoclear] = row.trim().split(/\s+/);
      if (name && autoclear === '0' && existsSync(name)) return name;
    }
    return undefined;
  }

  async attach(name: string): Promise<string> {
    this.calls.push(`attach ${name}`);
    const file = this.file(name);
    if (this.unmapped.has(name))
      throw new ConnectorError('NotMapped', `sds_cli attach ${name} failed: ret_code=50155007`, 50155007);
    return this.attachedDevice(file) ?? this.fixtures.attach(file);
  }

  async detach(name: string): Promise<void> {
    this.calls.push(`detach ${name}`);
    const file = this.file(name);
    const device = this.attachedDevice(file);
    if (!device) return;
    const backing = backingFileOf(device);
    try {
      sh('losetup', ['--detach', device]);
    } catch (err) {
      // The kernel can unbind the device between the listing and the detach (seen once in CI: ENXIO).
      // Gone is detached, as the real connector's contract says; still bound is a real failure.
      if (this.attachedDevice(file) !== undefined) throw err;
    }
    // As a detach that returned promises: the device is unbound (bounded wait, as the emulator's detach).
    if (backing !== undefined) await waitUnbound(device, backing, 5_000);
  }

  async queryDevice(name: string): Promise<string | undefined> {
    this.calls.push(`querydev ${name}`);
    const file = this.file(name);
    return this.forgotten.has(name) ? undefined : this.attachedDevice(file);
  }

  /** From now on the back end reports the volume not attached (as after a detach behind our back). */
  forget(name: string): void {
    this.forgotten.add(name);
  }

  remember(name: string): void {
    this.forgotten.delete(name);
  }
}
