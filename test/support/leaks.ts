// What a test left behind under its own temp dir — loop devices and mounts — and how to clean it up.
// Other tests run on this machine at the same time, so only what belongs to `dir` counts:
//  - loop devices whose backing file is under `dir`, and, transitively, loop devices whose backing file
//    lives on one of those (a volume's loop device over a file in a pool that is itself a loop-mounted LUN
//    under `dir`: once that pool is lazily unmounted its files show as `/volumes/<name>`, not under `dir`);
//  - mounts whose mount point is under `dir`, or whose source is one of those loop devices.
// Cleanup goes inside out: mounts deepest first, then loop devices over pool files, then the LUNs.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, realpathSync } from 'node:fs';

export interface Leaks {
  /** `<device> → <backing file>` */
  loops: string[];
  /** mount points */
  mounts: string[];
}

interface LoopDevice {
  name: string;
  majMin: string;
  backMajMin: string;
  backFile: string;
}

function listLoops(): LoopDevice[] {
  const result = spawnSync('losetup', ['--list', '--json', '--output', 'NAME,MAJ:MIN,BACK-MAJ:MIN,BACK-FILE'], {
    encoding: 'utf8',
  });
  const text = result.stdout?.trim();
  if (!text) return [];
  const parsed = JSON.parse(text) as { loopdevices: Array<Record<string, string | null>> };
  return parsed.loopdevices.map((d) => ({
    name: d.name ?? '',
    majMin: (d['maj:min'] ?? '').trim(),
    backMajMin: (d['back-maj:min'] ?? '').trim(),
    backFile: (d['back-file'] ?? '').replace(/ \(deleted\)$/, ''),
  }));
}

function under(dir: string, path: string): boolean {
  return path === dir || path.startsWith(`${dir}/`);
}

function resolved(dir: string): string {
  try {
    return realpathSync(dir);
  } catch {
    return dir;
  }
}

/** Our loop devices, innermost (backed by files on other loops of ours) first. */
function ourLoops(dir: string): LoopDevice[] {
  const all = listLoops();
  const ours = new Map<string, LoopDevice>();
  const depth = new Map<string, number>();
  for (const d of all) {
    if (!d.backFile || !under(dir, d.backFile)) continue;
    ours.set(d.name, d);
    depth.set(d.name, 0);
  }
  // Loops over files on our loops: follow the chain until nothing new appears.
  for (let changed = true; changed;) {
    changed = false;
    const ourDevices = new Map([...ours.values()].map((d) => [d.majMin, d.name]));
    for (const d of all) {
      const parent = ourDevices.get(d.backMajMin);
      if (parent && !ours.has(d.name)) {
        ours.set(d.name, d);
        depth.set(d.name, (depth.get(parent) ?? 0) + 1);
        changed = true;
      }
    }
  }
  return [...ours.values()].sort((a, b) => (depth.get(b.name) ?? 0) - (depth.get(a.name) ?? 0));
}

function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Our mounts, deepest first. */
function ourMounts(dir: string, loops: LoopDevice[]): string[] {
  const devices = new Set(loops.map((l) => l.name));
  const points: string[] = [];
  for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
    const [source, point] = line.split(' ');
    if (!point) continue;
    const path = unescapeMountField(point);
    if (under(dir, path) || devices.has(source ?? '')) points.push(path);
  }
  return points.sort((a, b) => b.length - a.length);
}

/** What is left under `dir` (resolved: /proc/mounts and losetup report resolved paths). */
export function findLeaks(dir: string): Leaks {
  const real = resolved(dir);
  const loops = ourLoops(real);
  return {
    loops: loops.map((l) => `${l.name} → ${l.backFile}`),
    mounts: ourMounts(real, loops),
  };
}

/** Unmounts and detaches everything of `dir`'s, inside out. Never touches anything else. */
export function cleanupLeaks(dir: string, timeoutMs = 5_000): void {
  const real = resolved(dir);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const loops = ourLoops(real);
    const mounts = ourMounts(real, loops);
    if (loops.length === 0 && mounts.length === 0) return;
    for (const point of mounts) {
      // A plain unmount first, so the pool's file system lets go of its loop device now; lazy only if busy.
      if (spawnSync('umount', ['--', point]).status !== 0) spawnSync('umount', ['--lazy', '--', point]);
    }
    for (const loop of ourLoops(real)) spawnSync('losetup', ['--detach', loop.name]);
    // A device someone still holds open (udev probing it, a lazily unmounted pool over it) is only marked to
    // go when the last user closes it: the kernel lets go asynchronously, so look again after a moment.
    if (Date.now() >= deadline) return;
    sleepSync(50);
  }
}

/** Blocks this thread: cleanup runs where tests and hooks expect it to be done when it returns. */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Waits (bounded) for the kernel's asynchronous autoclear of loop devices, then reports what is left. */
export async function settledLeaks(dir: string, timeoutMs = 5_000): Promise<Leaks> {
  const deadline = Date.now() + timeoutMs;
  let leaks = findLeaks(dir);
  while ((leaks.loops.length > 0 || leaks.mounts.length > 0) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    leaks = findLeaks(dir);
  }
  return leaks;
}

/** Every other process's pid and argv, read from /proc (a process gone meanwhile is skipped). */
export function processArgvs(): Array<{ pid: number; argv: string[] }> {
  const out: Array<{ pid: number; argv: string[] }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      out.push({ pid: Number(entry), argv: readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0') });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Pids of the processes whose command line names a path under `root` (a test's drivers and emulators). */
export function processesUnder(root: string): number[] {
  return processArgvs()
    .filter((p) => p.argv.some((arg) => arg.includes(root)))
    .map((p) => p.pid);
}
