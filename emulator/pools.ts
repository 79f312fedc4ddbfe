// Pools are LUNs: a block device or an image file, formatted XFS with reflink and loop-mounted at
// <data>/pools/<pool>. Volumes are sparse files in volumes/, snapshots reflink copies in snapshots/, files
// under construction live in .tmp/. Without root or XFS tools a pool is a plain directory that copies.
import {
  existsSync,
  mkdirSync,
  readFileSync,
  statSync,
  statfsSync,
  truncateSync,
  openSync,
  closeSync,
  constants,
} from 'node:fs';
import { dirname, join } from 'node:path';
import type { PoolSpec, PoolType } from './config.js';
import { findTool, run, ToolError } from './exec.js';
import { backingFileOf, waitUnbound } from './loopdev.js';
import type { Logger } from './log.js';
import type { Store } from './store.js';

export type PoolKind = 'xfs-reflink' | 'directory';

export interface PoolSpace {
  totalBytes: number;
  /** free space available to files */
  freeBytes: number;
  /** blocks in use in the pool's file system */
  usedBytes: number;
}

export class Pool {
  readonly volumesDir: string;
  readonly snapshotsDir: string;
  readonly tmpDir: string;
  healthy = true;
  faultReason = '';
  /** the loop device the LUN image is mounted through, when it is one */
  lunDevice = '';

  constructor(
    readonly name: string,
    readonly kind: PoolKind,
    readonly lunPath: string,
    readonly sizeBytes: number,
    /** the mount point (xfs-reflink) or the directory (directory) */
    readonly root: string,
  ) {
    this.volumesDir = join(root, 'volumes');
    this.snapshotsDir = join(root, 'snapshots');
    this.tmpDir = join(root, '.tmp');
  }

  get linkedClone(): boolean {
    return this.kind === 'xfs-reflink';
  }

  fault(reason: string): void {
    this.healthy = false;
    this.faultReason = reason;
  }

  private inside(dir: string, file: string): string {
    // Names are validated on the wire; this is the second line of defence against a path leaving the pool:
    // one plain component, never . or .., so dir/file stays directly inside dir.
    if (file === '' || file === '.' || file === '..' || file.includes('/') || file.includes('\0')) {
      throw new Error(`${JSON.stringify(file)} is not a file name inside ${dir}`);
    }
    return `${dir}/${file}`;
  }

  volumePath(name: string): string {
    return this.inside(this.volumesDir, name);
  }

  snapshotPath(name: string): string {
    return this.inside(this.snapshotsDir, name);
  }

  tmpPath(tag: string): string {
    return this.inside(this.tmpDir, tag);
  }

  private total = 0;

  /** The pool's size; it changes only when the pool is grown at start, so it is read once. */
  totalBytes(): number {
    if (this.total === 0) this.total = this.space().totalBytes;
    return this.total;
  }

  space(): PoolSpace {
    const s = statfsSync(this.root);
    return {
      totalBytes: s.blocks * s.bsize,
      freeBytes: s.bavail * s.bsize,
      usedBytes: (s.blocks - s.bfree) * s.bsize,
    };
  }
}

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
}

const unescapeMount = (s: string): string =>
  s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));

export function readMounts(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (!line) continue;
    const parts = line.split(' ');
    const dash = parts.indexOf('-');
    if (dash < 0 || parts.length < dash + 3) continue;
    out.push({
      mountPoint: unescapeMount(parts[4]!),
      fsType: parts[dash + 1]!,
      source: unescapeMount(parts[dash + 2]!),
    });
  }
  return out;
}

/** What `--pool-type=auto` resolves to on this machine, with the reason. */
export function detectPoolKind(requested: PoolType): { kind: PoolKind; reason: string } {
  if (requested === 'directory') return { kind: 'directory', reason: 'forced by --pool-type=directory' };
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root');
  if (!findTool('mkfs.xfs')) missing.push('mkfs.xfs (xfsprogs)');
  if (!existsSync('/dev/loop-control')) missing.push('/dev/loop-control');
  if (missing.length === 0)
    return { kind: 'xfs-reflink', reason: requested === 'auto' ? 'root and XFS tools present' : 'forced' };
  if (requested === 'xfs-reflink') throw new Error(`--pool-type=xfs-reflink needs ${missing.join(', ')}`);
  return { kind: 'directory', reason: `missing ${missing.join(', ')}` };
}

function isBlockDevice(path: string): boolean {
  try {
    return statSync(path).isBlockDevice();
  } catch {
    return false;
  }
}

/** The file-system signature on a LUN ('' when blkid finds none). */
async function signatureOf(lun: string): Promise<string> {
  try {
    const { stdout } = await run('blkid', ['-p', '-o', 'value', '-s', 'TYPE', '--', lun], { timeoutMs: 30_000 });
    return stdout.trim();
  } catch (err) {
    // blkid exits 2 when it finds nothing to report.
    if (err instanceof ToolError && err.exitCode === 2) return '';
    throw err;
  }
}

function ensureDirs(pool: Pool): void {
  for (const d of [pool.volumesDir, pool.snapshotsDir, pool.tmpDir]) mkdirSync(d, { recursive: true, mode: 0o700 });
}

export interface PoolSetupContext {
  dataDir: string;
  kind: PoolKind;
  store: Store;
  log: Logger;
  mounts: MountEntry[];
}

/**
 * Makes a pool ready: idempotent, so a restart with the pool still mounted costs no process spawn. Never
 * formats a LUN holding a file system other than XFS, and never re-creates a missing LUN image while the
 * database still knows volumes in it: such a pool is reported faulty instead.
 */
export async function preparePool(spec: PoolSpec, ctx: PoolSetupContext): Promise<Pool> {
  const root = join(ctx.dataDir, 'pools', spec.name);
  const pool = new Pool(spec.name, ctx.kind, ctx.kind === 'directory' ? '' : spec.lunPath, spec.sizeBytes, root);
  const log = ctx.log.child({ pool: spec.name });
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const row = ctx.store.poolRow(spec.name);
  if (row && row.pool_type !== ctx.kind) {
    pool.fault(`pool was created as ${row.pool_type}, the emulator now runs ${ctx.kind} pools`);
    return pool;
  }
  const mounted = ctx.mounts.filter((m) => m.mountPoint === root).pop();
  try {
    if (ctx.kind === 'directory') {
      if (mounted)
        throw new Error(
          `a ${mounted.fsType} file system is mounted on ${root}; unmount it or use --pool-type=xfs-reflink`,
        );
    } else if (mounted) {
      if (mounted.fsType !== 'xfs') throw new Error(`${root} holds a ${mounted.fsType} mount, not the pool's XFS`);
      const backing = /^\/dev\/loop\d+$/.test(mounted.source) ? backingFileOf(mounted.source) : mounted.source;
      if (backing !== spec.lunPath)
        throw new Error(`${root} is mounted from ${backing ?? mounted.source}, not from ${spec.lunPath}`);
      pool.lunDevice = /^\/dev\/loop\d+$/.test(mounted.source) ? mounted.source : '';
      log.debug({ mountPoint: root }, 'pool already mounted');
    } else {
      await mountXfsPool(pool, spec, ctx, log, row !== undefined);
    }
    ensureDirs(pool);
  } catch (err) {
    pool.fault((err as Error).message);
    log.error({ err }, 'pool is not usable');
    return pool;
  }
  if (!row) {
    ctx.store.insertPool({
      name: spec.name,
      pool_type: ctx.kind,
      lun_path: pool.lunPath,
      size_bytes: spec.sizeBytes,
      created_at: Math.floor(Date.now() / 1000),
    });
  }
  return pool;
}

async function mountXfsPool(
  pool: Pool,
  spec: PoolSpec,
  ctx: PoolSetupContext,
  log: Logger,
  known: boolean,
): Promise<void> {
  const lun = spec.lunPath;
  const blockDevice = isBlockDevice(lun);
  let created = false;
  if (!blockDevice) {
    if (!existsSync(lun)) {
      if (known && ctx.store.poolHasObjects(spec.name)) {
        throw new Error(`LUN image ${lun} is missing while the database holds volumes of this pool`);
      }
      mkdirSync(dirname(lun), { recursive: true, mode: 0o700 });
      closeSync(openSync(lun, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600));
      truncateSync(lun, spec.sizeBytes);
      created = true;
      log.info({ lun, sizeBytes: spec.sizeBytes }, 'created sparse LUN image');
    } else if (!statSync(lun).isFile()) {
      throw new Error(`LUN ${lun} is neither a regular file nor a block device`);
    }
  }
  const signature = created ? '' : await signatureOf(lun);
  if (signature === '') {
    await run('mkfs.xfs', ['-q', '-m', 'reflink=1', '--', lun], { timeoutMs: 300_000 });
    log.info({ lun }, 'formatted LUN as XFS with reflink');
  } else if (signature !== 'xfs') {
    throw new Error(`LUN ${lun} holds a ${signature} file system; refusing to format it`);
  }
  let grow = false;
  if (!blockDevice && !created) {
    const size = statSync(lun).size;
    if (size < spec.sizeBytes) {
      truncateSync(lun, spec.sizeBytes);
      grow = true;
    } else if (size > spec.sizeBytes) {
      log.warn(
        { lun, size, configured: spec.sizeBytes },
        'LUN image is larger than the configured size; pools never shrink',
      );
    }
  }
  const options = blockDevice ? 'noatime' : 'loop,noatime';
  await run('mount', ['-t', 'xfs', '-o', options, '--', lun, pool.root], { timeoutMs: 120_000 });
  if (grow) {
    await run('xfs_growfs', ['--', pool.root], { timeoutMs: 120_000 });
    ctx.store.updatePoolSize(spec.name, spec.sizeBytes);
    log.info({ sizeBytes: spec.sizeBytes }, 'grew the pool to its configured size');
  }
  const entry = readMounts()
    .filter((m) => m.mountPoint === pool.root)
    .pop();
  pool.lunDevice = entry && /^\/dev\/loop\d+$/.test(entry.source) ? entry.source : '';
  log.info({ lun, mountPoint: pool.root, device: pool.lunDevice || lun }, 'mounted pool');
}

/** Unmounts an XFS pool; the loop device of an image LUN goes away with it (mount -o loop sets autoclear). */
export async function unmountPool(pool: Pool): Promise<void> {
  if (pool.kind !== 'xfs-reflink') return;
  if (!readMounts().some((m) => m.mountPoint === pool.root)) return;
  const backing = pool.lunDevice ? backingFileOf(pool.lunDevice) : undefined;
  await run('umount', ['--', pool.root], { timeoutMs: 60_000 });
  // The unmount leaves the device to autoclear: a stop that returned while it is still bound would leave a loop
  // device behind for whoever looks next.
  if (backing !== undefined && !(await waitUnbound(pool.lunDevice, backing, 10_000)))
    throw new Error(`the LUN device ${pool.lunDevice} of pool ${pool.name} is still bound after the unmount`);
}
