// Real loop devices and mounts for node tests, scoped to one temp dir: everything made here is found and
// removed by `cleanup`, and `leaks` reports what is left (only ours: other engineers share the machine).
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Mount points under `dir`, deepest first (the order to unmount them in). */
export function mountsUnder(dir: string): string[] {
  const points: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const point = line.split(' ')[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (point && (point === dir || point.startsWith(`${dir}/`))) points.push(point);
  }
  return points.reverse();
}

/** Loop devices whose backing file is under `dir`. */
export function loopsUnder(dir: string): string[] {
  const out = JSON.parse(sh('losetup', ['--list', '--json', '-O', 'NAME,BACK-FILE']) || '{"loopdevices":[]}') as {
    loopdevices: Array<{ name: string; 'back-file': string | null }>;
  };
  return out.loopdevices.filter((l) => l['back-file'] && (l['back-file'].startsWith(`${dir}/`) || l['back-file'].includes(`${dir}/`))).map((l) => l.name);
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
      const r = spawnSync('mount', ['-t', 'fuse', '-o', 'fd=3,rootmode=40000,user_id=0,group_id=0', 'deadfuse', at], { stdio: ['ignore', 'pipe', 'pipe', fd] });
      if (r.status !== 0) throw new Error(`fuse mount failed: ${r.stderr}`);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Mounts and loop devices still under the dir. A loop device detached while mounted (autoclear) is released
   * by the kernel asynchronously after the last unmount, so loops get a few seconds to go.
   */
  async leaks(): Promise<{ mounts: string[]; loops: string[] }> {
    const deadline = Date.now() + 5_000;
    while (loopsUnder(this.dir).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    return { mounts: mountsUnder(this.dir), loops: loopsUnder(this.dir) };
  }

  /** Unmounts and detaches everything under the dir, then removes it. */
  async cleanup(): Promise<void> {
    for (const point of mountsUnder(this.dir)) spawnSync('umount', ['--lazy', point]);
    for (const loop of loopsUnder(this.dir)) spawnSync('losetup', ['--detach', loop]);
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * Whether this process holds CAP_SYS_RESOURCE, which the kernel demands for an online ext4 resize. Some
 * sandboxes (this project's CI container among them) drop it; a privileged CSI node pod has it.
 */
export function hasCapSysResource(): boolean {
  const line = /^CapEff:\s+([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return line ? (BigInt(`0x${line[1]}`) >> 24n) & 1n ? true : false : false;
}
