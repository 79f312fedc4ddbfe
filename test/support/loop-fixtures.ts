// Real loop devices and mounts for node tests, scoped to one temp dir: everything made here is found and
// removed by `cleanup`, and `leaks` reports what is left (only ours: other engineers share the machine).
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { cleanupLeaks, settledLeaks, type Leaks } from './leaks.js';

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export class LoopFixtures {
  private constructor(readonly dir: string) {}

  static async create(prefix: string): Promise<LoopFixtures> {
    return new LoopFixtures(await mkdtemp(join(tmpdir(), `${prefix}-`)));
  }

  path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  /** A sparse image file of `bytes`. */
  async image(name: string, bytes: number): Promise<string> {
    const file = this.path(name);
    await writeFile(file, '');
    await truncate(file, bytes);
    return file;
  }

  attach(file: string): string {
    return sh('losetup', ['--find', '--show', file]).trim();
  }

  /** Grows the image and tells the loop device, as the back end does on an expand. */
  async grow(file: string, device: string, bytes: number): Promise<void> {
    await truncate(file, bytes);
    sh('losetup', ['--set-capacity', device]);
  }

  /**
   * A mount whose filesystem is dead: a FUSE mount whose daemon (the /dev/fuse descriptor) is gone, so any
   * access fails with ENOTCONN, exactly like a crashed FUSE daemon.
   */
  deadMount(at: string): void {
    const fd = openSync('/dev/fuse', 'r+');
    try {
      const r = spawnSync('mount', ['-t', 'fuse', '-o', 'fd=3,rootmode=40000,user_id=0,group_id=0', 'deadfuse', at], {
        stdio: ['ignore', 'pipe', 'pipe', fd],
      });
      if (r.status !== 0) throw new Error(`fuse mount failed: ${r.stderr}`);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Mounts and loop devices still under the dir. A loop device detached while mounted (autoclear) is released
   * by the kernel asynchronously after the last unmount, so loops get a few seconds to go.
   */
  async leaks(): Promise<Leaks> {
    return settledLeaks(this.dir);
  }

  /** Unmounts and detaches everything under the dir, then removes it. */
  async cleanup(): Promise<void> {
    cleanupLeaks(this.dir);
    await rm(this.dir, { recursive: true, force: true });
  }

  /** cleanup(), failing the suite if a mount or loop device was left under the dir. */
  async cleanupChecked(): Promise<void> {
    const left = await this.leaks();
    await this.cleanup();
    expect(left).toEqual({ mounts: [], loops: [] });
  }
}

/**
 * Whether this process holds CAP_SYS_RESOURCE, which the kernel demands for an online ext4 resize. Some
 * sandboxes (this project's CI container among them) drop it; a privileged CSI node pod has it.
 */
export function hasCapSysResource(): boolean {
  const line = /^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return line ? ((BigInt(`0x${line[1]}`) >> 24n) & 1n ? true : false) : false;
}
