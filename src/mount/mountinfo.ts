// The mount table from /proc/self/mountinfo. Reading it never touches the mounted filesystems, so a dead
// mount (stale NFS handle, a FUSE daemon gone: ENOTCONN) cannot hang or fail a check the way stat() can.
import { readFileSync } from 'node:fs';

export interface MountEntry {
  id: number;
  parentId: number;
  /** device numbers of the mounted filesystem (st_dev of files in it) */
  major: number;
  minor: number;
  /** the directory of the filesystem mounted here: '/' for a whole filesystem, a sub-path for a bind of one */
  root: string;
  mountPoint: string;
  /** per-mount options (ro/rw, nosuid, relatime, ...) */
  options: string[];
  fsType: string;
  /** the mount source as the kernel knows it ('/dev/loop3', 'tmpfs', ...) */
  source: string;
  /** per-filesystem options */
  superOptions: string[];
}

/** mountinfo escapes space, tab, newline and backslash as three octal digits (`\040`). */
export function unescapeMountField(field: string): string {
  // Most fields hold no escape: skip the regex (a busy node's table has hundreds of lines, read per call).
  if (!field.includes('\\')) return field;
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

const DEVICE_NUMBERS = /^(\d+):(\d+)$/;

/** Parses mountinfo text (proc(5)); malformed lines are skipped. */
export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const fields = line.split(' ');
    const separator = fields.indexOf('-', 6);
    if (fields.length < 10 || separator < 0 || fields.length < separator + 3) continue;
    const devices = DEVICE_NUMBERS.exec(fields[2]!);
    if (!devices) continue;
    entries.push({
      id: Number(fields[0]),
      parentId: Number(fields[1]),
      major: Number(devices[1]),
      minor: Number(devices[2]),
      root: unescapeMountField(fields[3]!),
      mountPoint: unescapeMountField(fields[4]!),
      options: fields[5]!.split(','),
      fsType: unescapeMountField(fields[separator + 1]!),
      source: unescapeMountField(fields[separator + 2]!),
      superOptions: (fields[separator + 3] ?? '').split(',').filter(Boolean),
    });
  }
  return entries;
}

// Read synchronously: procfs renders the kernel's table in memory and never waits on a mounted filesystem,
// while the thread pool's open/fstat/read/close round trips cost ~0.8 ms each on an idle node plugin (the
// wake-ups dominate), 3-4 ms a read: most of what a NodePublishVolume spent besides its `mount --bind`.
export async function readMountTable(): Promise<MountEntry[]> {
  return parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}

/** Mounts whose mount point is exactly `path` (canonical), bottom first: the last one is what a lookup sees. */
export function mountsAt(table: readonly MountEntry[], path: string): MountEntry[] {
  return table.filter((m) => m.mountPoint === path);
}

/** The visible mount at `path`, if any. */
export function topMountAt(table: readonly MountEntry[], path: string): MountEntry | undefined {
  const here = mountsAt(table, path);
  return here[here.length - 1];
}

/** Mounts that show the block device `major:minor` (the device's filesystem, however often it is bound). */
export function mountsOfDevice(table: readonly MountEntry[], major: number, minor: number): MountEntry[] {
  return table.filter((m) => m.major === major && m.minor === minor);
}

export function isReadOnlyMount(entry: MountEntry): boolean {
  return entry.options.includes('ro');
}

/** Whether `path` is `dir` or inside it (both canonical). */
export function isWithin(path: string, dir: string): boolean {
  const base = dir.endsWith('/') ? dir : `${dir}/`;
  return path === dir || path.startsWith(base);
}
