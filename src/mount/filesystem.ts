// Filesystems on block devices: what a device holds (blkid), making one (mkfs), its size and growing it
// (dumpe2fs/resize2fs for ext4, xfs_growfs for xfs), and usage (statfs).
import { open, statfs } from 'node:fs/promises';
import { MountError } from './errors.js';
import { runTool, toolSaid, ToolFailure } from './exec.js';
import { isDeadMountError } from './paths.js';

export const SUPPORTED_FILESYSTEMS = ['ext4', 'xfs'] as const;
export type FsType = (typeof SUPPORTED_FILESYSTEMS)[number];

export function isSupportedFilesystem(name: string): name is FsType {
  return (SUPPORTED_FILESYSTEMS as readonly string[]).includes(name);
}

/**
 * The smallest device each filesystem is made on. mkfs.xfs (xfsprogs 5.19 and later) refuses anything under
 * 300 MiB; mkfs.ext4 with 4 KiB blocks leaves out the journal under 8 MiB, which no volume should lack.
 * CreateVolume rounds a filesystem volume up to this; NodeStage refuses a smaller blank device by name.
 */
export const FILESYSTEM_MINIMUM_BYTES: Readonly<Record<FsType, number>> = {
  ext4: 8 * 1024 * 1024,
  xfs: 300 * 1024 * 1024,
};

export type DeviceContent =
  /** no signature of any kind: safe to format */
  | { kind: 'blank' }
  | { kind: 'filesystem'; fsType: string; uuid?: string }
  /** a partition table, RAID member, LUKS header, or signatures blkid cannot tell apart: never format */
  | { kind: 'other'; description: string };

/** A filesystem's device and where it is mounted: ext4's tools take the one, xfs's the other. */
export interface MountedDevice {
  devicePath: string;
  mountPoint: string;
}

/** The options of a tool call its caller may cancel. */
type Cancellable = { signal?: AbortSignal };

export const TIMEOUTS = {
  probeMs: 60_000,
  mkfsMs: 10 * 60_000,
  resizeMs: 10 * 60_000,
  infoMs: 60_000,
} as const;

/** Low-level probe (`blkid -p`, no cache): what the device holds. */
export async function probeDevice(devicePath: string, options: Cancellable = {}): Promise<DeviceContent> {
  // exit 2: nothing found; exit 8: ambivalent result (several signatures) — that is not blank either.
  const result = await runTool('blkid', ['-p', '-o', 'export', devicePath], {
    timeoutMs: TIMEOUTS.probeMs,
    signal: options.signal,
    okExitCodes: [2, 8],
  });
  if (result.exitCode === 2) return { kind: 'blank' };
  if (result.exitCode === 8)
    return { kind: 'other', description: `several signatures (blkid: ${result.stderr.trim() || 'ambivalent result'})` };
  const tags = new Map<string, string>();
  for (const line of result.stdout.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) tags.set(line.slice(0, at), line.slice(at + 1));
  }
  const type = tags.get('TYPE');
  const usage = tags.get('USAGE');
  if (type && (usage === undefined || usage === 'filesystem'))
    return { kind: 'filesystem', fsType: type, uuid: tags.get('UUID') };
  if (tags.has('PTTYPE')) return { kind: 'other', description: `a ${tags.get('PTTYPE')} partition table` };
  if (type) return { kind: 'other', description: `${type} (${usage ?? 'unknown use'})` };
  return { kind: 'other', description: `unrecognised signature (${[...tags.keys()].join(', ') || 'no tags'})` };
}

/**
 * Formats a device that the caller has just probed blank. mkfs.xfs refuses a device holding a filesystem;
 * `force` overrides that, only for a superblock left by an interrupted mkfs.xfs (see xfsMkfsInterrupted).
 */
export async function makeFilesystem(
  devicePath: string,
  fsType: FsType,
  options: { signal?: AbortSignal; force?: boolean } = {},
): Promise<void> {
  const run = { timeoutMs: TIMEOUTS.mkfsMs, signal: options.signal };
  // 4 KiB blocks (ext4) and sectors (xfs) whatever the device reports now: a volume's device may come back
  // with 4 KiB logical sectors later (a clone or snapshot whose file shares extents is attached with a larger
  // direct-I/O alignment; 4Kn disks), and a filesystem with smaller units no longer mounts there.
  try {
    if (fsType === 'ext4') {
      // Lazy init: the inode tables and journal are zeroed in the background after mount, so a large volume
      // stages in seconds.
      await runTool(
        'mkfs.ext4',
        ['-F', '-q', '-b', '4096', '-E', 'lazy_itable_init=1,lazy_journal_init=1', devicePath],
        run,
      );
    } else {
      await runTool('mkfs.xfs', ['-q', '-s', 'size=4096', ...(options.force ? ['-f'] : []), devicePath], run);
    }
  } catch (err) {
    // mkfs prints its whole usage text after the reason it refused: keep the reason.
    if (err instanceof ToolFailure)
      throw new MountError('Failed', `mkfs.${fsType} ${devicePath} failed: ${firstReason(err)}`, { cause: err });
    throw err;
  }
}

/** The first line a failed tool printed, without its usage text (stderr first, then stdout). */
function firstReason(err: ToolFailure): string {
  const said = toolSaid(err.stderr) || toolSaid(err.stdout) || `exit status ${err.exitCode}`;
  const first = said.split(' / ')[0]!;
  return first.length > 200 ? `${first.slice(0, 200)}…` : first;
}

/**
 * Whether the device holds an XFS superblock still marked "mkfs in progress": mkfs.xfs sets the mark first
 * and clears it last, so a set mark means the format never finished and nothing was ever stored there.
 */
export async function xfsMkfsInterrupted(devicePath: string, options: Cancellable = {}): Promise<boolean> {
  try {
    const { stdout } = await runTool('xfs_db', ['-r', '-c', 'sb 0', '-c', 'print inprogress', devicePath], {
      timeoutMs: TIMEOUTS.infoMs,
      signal: options.signal,
    });
    return /^inprogress = 1$/m.test(stdout);
  } catch {
    return false;
  }
}

function numberAfter(text: string, pattern: RegExp, what: string): number {
  const m = pattern.exec(text);
  if (!m) throw new MountError('Failed', `cannot read the ${what}: unexpected tool output`);
  return Number(m[1]);
}

/** The size the filesystem itself spans (not what statfs shows after metadata), in bytes. */
export async function filesystemSizeBytes(
  target: MountedDevice,
  fsType: FsType,
  options: Cancellable = {},
): Promise<number> {
  const run = { timeoutMs: TIMEOUTS.infoMs, signal: options.signal };
  if (fsType === 'ext4') {
    const { stdout } = await runTool('dumpe2fs', ['-h', target.devicePath], run);
    return (
      numberAfter(stdout, /^Block count:\s+(\d+)$/m, 'ext4 block count') *
      numberAfter(stdout, /^Block size:\s+(\d+)$/m, 'ext4 block size')
    );
  }
  // -n: print the geometry, change nothing.
  const { stdout } = await runTool('xfs_growfs', ['-n', target.mountPoint], run);
  const data = /^data\s+=\s+bsize=(\d+)\s+blocks=(\d+)/m.exec(stdout);
  if (!data)
    throw new MountError(
      'Failed',
      `cannot read the xfs geometry of ${target.mountPoint}: unexpected xfs_growfs output`,
    );
  return Number(data[1]) * Number(data[2]);
}

// The ext4 superblock: 1024 bytes at byte 1024 of the device, little-endian (linux/fs/ext4/ext4.h).
const EXT4_SUPERBLOCK = {
  offset: 1024,
  size: 1024,
  blocksCountLo: 0x04,
  logBlockSize: 0x18,
  magic: 0x38,
  featureIncompat: 0x60,
  blocksCountHi: 0x150,
} as const;
const EXT4_MAGIC = 0xef53;
const EXT4_FEATURE_INCOMPAT_64BIT = 0x80;

/**
 * The size an ext4 filesystem's primary superblock records (block count × block size, what `dumpe2fs -h`
 * reports), read straight from the device: no process. undefined when the device holds no ext4 superblock or
 * cannot be read. ext4 reads and writes its superblock through the device's page cache, so this sees what
 * the tools see; for a mounted filesystem the on-disk copy may lag a grow still in the journal — it can show
 * the filesystem smaller than it is, never larger.
 */
export async function ext4SuperblockSizeBytes(devicePath: string): Promise<number | undefined> {
  let sb: Buffer;
  try {
    const file = await open(devicePath, 'r');
    try {
      sb = Buffer.alloc(EXT4_SUPERBLOCK.size);
      const { bytesRead } = await file.read(sb, 0, sb.length, EXT4_SUPERBLOCK.offset);
      if (bytesRead < sb.length) return undefined;
    } finally {
      await file.close();
    }
  } catch {
    return undefined;
  }
  if (sb.readUInt16LE(EXT4_SUPERBLOCK.magic) !== EXT4_MAGIC) return undefined;
  const logBlockSize = sb.readUInt32LE(EXT4_SUPERBLOCK.logBlockSize);
  if (logBlockSize > 6) return undefined; // 1 KiB << 6 = 64 KiB, the largest ext4 block
  const high =
    sb.readUInt32LE(EXT4_SUPERBLOCK.featureIncompat) & EXT4_FEATURE_INCOMPAT_64BIT
      ? sb.readUInt32LE(EXT4_SUPERBLOCK.blocksCountHi)
      : 0;
  return (high * 2 ** 32 + sb.readUInt32LE(EXT4_SUPERBLOCK.blocksCountLo)) * (1024 * 2 ** logBlockSize);
}

/**
 * Whether the filesystem is smaller than `deviceBytes`, and its size when it is. ext4's superblock answers
 * "not smaller" without a process (it never shows the filesystem larger than it is); otherwise, and always
 * for xfs (whose buffer cache bypasses the device's page cache), the tools of filesystemSizeBytes decide.
 * `superblock`: ext4SuperblockSizeBytes of the device, read already by the caller.
 */
export async function filesystemSmallerThan(
  target: MountedDevice,
  fsType: FsType,
  deviceBytes: number,
  options: Cancellable & { superblock?: Promise<number | undefined> } = {},
): Promise<{ smaller: false } | { smaller: true; fsBytes: number }> {
  if (
    fsType === 'ext4' &&
    ((await (options.superblock ?? ext4SuperblockSizeBytes(target.devicePath))) ?? 0) >= deviceBytes
  )
    return { smaller: false };
  const fsBytes = await filesystemSizeBytes(target, fsType, options);
  return fsBytes >= deviceBytes ? { smaller: false } : { smaller: true, fsBytes };
}

/**
 * Grows a mounted filesystem to fill its device (online). Growing one that already fills it is a no-op.
 * MountError 'Busy' when it cannot grow in its present state (read-only, or ext4 without CAP_SYS_RESOURCE,
 * which the kernel demands for an online ext4 resize).
 */
export async function growFilesystem(target: MountedDevice, fsType: FsType, options: Cancellable = {}): Promise<void> {
  const run = { timeoutMs: TIMEOUTS.resizeMs, signal: options.signal };
  try {
    if (fsType === 'ext4') await runTool('resize2fs', [target.devicePath], run);
    else await runTool('xfs_growfs', ['-d', target.mountPoint], run);
  } catch (err) {
    if (err instanceof ToolFailure && /read-only/i.test(err.stderr)) {
      throw new MountError(
        'Busy',
        `cannot grow the ${fsType} filesystem at ${target.mountPoint}: it is mounted read-only`,
        { cause: err },
      );
    }
    if (err instanceof ToolFailure && fsType === 'ext4' && /Permission denied to resize/i.test(err.stderr)) {
      throw new MountError(
        'Busy',
        `cannot grow the ext4 filesystem at ${target.mountPoint} online: the kernel refuses (this process lacks CAP_SYS_RESOURCE); it grows offline at the next NodeStageVolume`,
        { cause: err },
      );
    }
    throw err;
  }
}

/**
 * Grows an unmounted ext4 filesystem to fill its device: a forced check first (resize2fs insists on one),
 * then resize2fs. Needs no capability beyond writing the device.
 */
export async function growUnmountedExt4(devicePath: string, options: Cancellable = {}): Promise<void> {
  // e2fsck -p: repair only what is safe without asking. Exit 1 = errors fixed, 2 = fixed, reboot advised (not for us).
  try {
    await runTool('e2fsck', ['-f', '-p', devicePath], {
      timeoutMs: TIMEOUTS.resizeMs,
      signal: options.signal,
      okExitCodes: [1, 2],
    });
  } catch (err) {
    if (err instanceof ToolFailure)
      throw new MountError(
        'Failed',
        `the ext4 filesystem on ${devicePath} has errors e2fsck could not fix safely: ${toolSaid(`${err.stdout}\n${err.stderr}`)}`,
        { cause: err },
      );
    throw err;
  }
  await runTool('resize2fs', [devicePath], { timeoutMs: TIMEOUTS.resizeMs, signal: options.signal });
}

export interface FilesystemUsage {
  totalBytes: number;
  availableBytes: number;
  usedBytes: number;
  totalInodes: number;
  freeInodes: number;
  usedInodes: number;
}

/** statfs of a mounted filesystem; a dead filesystem (EIO, ENOTCONN, ...) is a MountError 'Failed' naming the errno. */
export async function filesystemUsage(path: string, timeoutMs = 10_000): Promise<FilesystemUsage> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const s = await Promise.race([
      statfs(path),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new MountError('Timeout', `statfs ${path}: no answer within ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]);
    const totalBytes = s.blocks * s.bsize;
    return {
      totalBytes,
      availableBytes: s.bavail * s.bsize,
      usedBytes: (s.blocks - s.bfree) * s.bsize,
      totalInodes: s.files,
      freeInodes: s.ffree,
      usedInodes: s.files - s.ffree,
    };
  } catch (err) {
    if (err instanceof MountError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new MountError('NotFound', `statfs ${path}: no such path`, { cause: err });
    throw new MountError(
      'Failed',
      `statfs ${path}: ${code ?? String(err)}${isDeadMountError(err) ? ' (the filesystem does not answer)' : ''}`,
      { cause: err },
    );
  } finally {
    clearTimeout(timer);
  }
}
