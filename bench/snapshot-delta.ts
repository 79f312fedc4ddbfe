// Changed-block tracking at scale: a volume (10 GiB by default) is filled, snapshotted, 1 % of its 4 KiB
// blocks are rewritten at random (seeded), snapshotted again, and the delta between the two snapshots is
// listed through the socket API (QUERY_SNAPSHOT_DELTA_REQ, every page) — on an xfs-reflink pool (shared
// extents decide) and on a directory pool (byte compare). Reports the time, the bytes listed against the
// bytes written, and whether the list is exact. Data goes through the real data plane: the volume is
// attached as a loop device with the emulator's sds_cli and written there.
//   node dist/bench/snapshot-delta.js [--size-gib 10] [--changed 0.01] [--seed 1] [--pools xfs-reflink,directory] [--json]
// Needs root (loop devices, XFS pools) and about 3× the size free on the temp directory's file system for
// the directory pool (the volume and two full copies).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statfsSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FieldInput, VbsReply } from '../src/protocol/vbs.js';
import { rawVbsCall } from '../src/sds/raw.js';

const here = dirname(fileURLToPath(import.meta.url));
const emulatorMain = join(here, '..', 'emulator', 'main.js');
const sdsCli = join(here, '..', '..', 'emulator', 'bin', 'sds_cli');
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const BLOCK = 4096;

interface Options {
  sizeGiB: number;
  changed: number;
  seed: number;
  pools: string[];
  json: boolean;
}

function parseOptions(argv: string[]): Options {
  const o: Options = { sizeGiB: 10, changed: 0.01, seed: 1, pools: ['xfs-reflink', 'directory'], json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--size-gib') o.sizeGiB = Number(value());
    else if (a === '--changed') o.changed = Number(value());
    else if (a === '--seed') o.seed = Number(value());
    else if (a === '--pools') o.pools = value().split(',');
    else if (a === '--json') o.json = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!(o.sizeGiB > 0) || !(o.changed > 0 && o.changed < 1) || !Number.isInteger(o.seed))
    throw new Error('bad --size-gib, --changed or --seed');
  for (const p of o.pools)
    if (p !== 'xfs-reflink' && p !== 'directory') throw new Error(`--pools: ${p} is not xfs-reflink or directory`);
  return o;
}

async function must(socket: string, type: string, fields: Record<string, FieldInput>): Promise<VbsReply> {
  const r = await rawVbsCall(socket, type, fields);
  if (r.retcode !== 0) throw new Error(`${type}: ${r.retcode} ${r.fields.get('ret_desc') ?? ''}`);
  return r;
}

/** xorshift32: the same blocks for the same seed on every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

/** `count` distinct block numbers below `blocks`, sorted. */
function pickBlocks(blocks: number, count: number, seed: number): number[] {
  const next = rng(seed);
  const set = new Set<number>();
  while (set.size < count) set.add(Math.floor(next() * blocks));
  return [...set].sort((a, b) => a - b);
}

async function startDaemon(
  dataDir: string,
  poolType: string,
  poolBytes: number,
): Promise<{ child: ChildProcess; sock: string; kv: string; host: string }> {
  const args = [
    emulatorMain,
    '--data-dir',
    dataDir,
    '--listen-port',
    '-1',
    '--log-level',
    'warn',
    '--pool-type',
    poolType,
    '--pool',
    `pool0:${Math.ceil(poolBytes / MiB)}M`,
    '--max-oversubscription',
    '1',
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  const info = join(dataDir, 'emulator.json');
  const end = Date.now() + 60_000;
  while (!existsSync(info)) {
    if (child.exitCode !== null) throw new Error(`emulator exited ${child.exitCode}`);
    if (Date.now() > end) throw new Error('emulator not ready in 60 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  const parsed = JSON.parse(readFileSync(info, 'utf8')) as { controlSocket: string; kvSocket: string; hostId: string };
  return { child, sock: parsed.controlSocket, kv: parsed.kvSocket, host: parsed.hostId };
}

function cli(kv: string, method: string, volume: string): string {
  const out = execFileSync(sdsCli, ['-c', method, '-v', volume], {
    env: { ...process.env, SDS_KV_SOCKET: kv },
    encoding: 'utf8',
  });
  const code = /ret_code=(\d+)/.exec(out)?.[1];
  if (code !== '0' && code !== '50151401') throw new Error(`sds_cli ${method} ${volume}: ${out}`);
  return /dev_addr=(\S+)/.exec(out)?.[1] ?? '';
}

export interface Result {
  pool: string;
  method: string;
  fillSeconds: number;
  deltaSeconds: number;
  pages: number;
  extents: number;
  deltaBytes: number;
  writtenBytes: number;
  exact: boolean;
  allocatedSeconds: number;
  allocatedBytes: number;
}

async function runPool(poolType: string, o: Options, blocks: number[]): Promise<Result> {
  const size = o.sizeGiB * GiB;
  const dir = mkdtempSync(join(tmpdir(), 'delta-bench-'));
  if (poolType === 'directory') {
    const s = statfsSync(dir);
    if (s.bavail * s.bsize < 3.2 * size)
      throw new Error(`the directory pool needs ${Math.ceil((3.2 * size) / GiB)} GiB free in ${tmpdir()}`);
  }
  // Room for the copy-on-write of the rewritten blocks: XFS allocates copy-on-write space in extents larger
  // than one block (its cowextsize hint), so scattered 4 KiB rewrites take much more than they write. The
  // LUN image is sparse: only what is used takes disk space.
  const daemon = await startDaemon(join(dir, 'data'), poolType, 2 * size + 2 * GiB);
  try {
    const vol = 'bench-vol';
    await must(daemon.sock, 'CREATE_VOLUME_REQ', { vol_name: vol, vol_size: o.sizeGiB * 1024 });
    await must(daemon.sock, 'MAP_VOLUME_REQ', { vol_name: vol, host_id: daemon.host });
    const device = cli(daemon.kv, 'attach', vol);
    const t0 = performance.now();
    // Every block written: a full volume, the hardest case for a byte compare.
    execFileSync('xfs_io', ['-d', '-c', `pwrite -q -b 4m -S 0x5a 0 ${size}`, device]);
    const fillSeconds = (performance.now() - t0) / 1000;
    await must(daemon.sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'base', vol_name: vol });
    const fd = openSync(device, 'r+');
    try {
      const changed = Buffer.alloc(BLOCK, 0xa5);
      for (const b of blocks) writeSync(fd, changed, 0, BLOCK, b * BLOCK);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    await must(daemon.sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'target', vol_name: vol });

    // The delta, every page, as a backup tool would follow next_offset.
    const listed: Array<[number, number]> = [];
    let offset = 0;
    let pages = 0;
    let method = '';
    const t1 = performance.now();
    for (;;) {
      const r = await must(daemon.sock, 'QUERY_SNAPSHOT_DELTA_REQ', {
        base_snap_name: 'base',
        snap_name: 'target',
        offset,
        limit: 1000,
      });
      pages++;
      method = r.fields.get('method') ?? '';
      for (const e of r.fields.records('extent')) listed.push([Number(e.offset), Number(e.length)]);
      const next = r.fields.get('next_offset') ?? '';
      if (next === '') break;
      offset = Number(next);
    }
    const deltaSeconds = (performance.now() - t1) / 1000;

    // Exact: the listed blocks are the written ones (pages may split a range; blocks make it plain).
    const listedBlocks: number[] = [];
    for (const [off, len] of listed) for (let p = off; p < off + len; p += BLOCK) listedBlocks.push(p / BLOCK);
    const exact = listedBlocks.length === blocks.length && listedBlocks.every((b, i) => b === blocks[i]);

    // For scale: the allocated map of the whole target (what a first, full backup reads).
    let allocatedBytes = 0;
    offset = 0;
    const t2 = performance.now();
    for (;;) {
      const r = await must(daemon.sock, 'QUERY_SNAPSHOT_EXTENTS_REQ', { snap_name: 'target', offset, limit: 1000 });
      for (const e of r.fields.records('extent')) allocatedBytes += Number(e.length);
      const next = r.fields.get('next_offset') ?? '';
      if (next === '') break;
      offset = Number(next);
    }
    const allocatedSeconds = (performance.now() - t2) / 1000;

    return {
      pool: poolType,
      method,
      fillSeconds,
      deltaSeconds,
      pages,
      extents: listed.length,
      deltaBytes: listedBlocks.length * BLOCK,
      writtenBytes: blocks.length * BLOCK,
      exact,
      allocatedSeconds,
      allocatedBytes,
    };
  } finally {
    try {
      cli(daemon.kv, 'detach', 'bench-vol');
      // The kernel frees the device asynchronously; the daemon unmounts its pool only when none is left.
      for (
        let i = 0;
        i < 100 &&
        execFileSync('losetup', ['--list', '--noheadings', '--output', 'BACK-FILE'], { encoding: 'utf8' }).includes(
          `${dir}/data/pools/`,
        );
        i++
      ) {
        execFileSync('sleep', ['0.05']);
      }
    } catch {
      // not attached (or the daemon is gone): nothing to do
    }
    daemon.child.kill('SIGTERM');
    await new Promise((r) => daemon.child.once('exit', r));
    try {
      cleanUp(dir);
    } catch (err) {
      // Never hide the run's own error behind a clean-up one.
      console.error(`clean-up of ${dir}: ${(err as Error).message}`);
    }
  }
}

/**
 * Removes what is left under the bench's own temp dir. The kernel frees a detached loop device
 * asynchronously, so the daemon may have found the volume's device still there at shutdown and left the pool
 * mounted: unmount it (and detach any device over a file of ours) before removing the directory.
 */
function cleanUp(dir: string): void {
  for (let attempt = 0; attempt < 50; attempt++) {
    const mounts = readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[1] ?? '')
      .filter((m) => m.startsWith(`${dir}/`));
    const loops = execFileSync('losetup', ['--list', '--noheadings', '--raw', '--output', 'NAME,BACK-FILE'], {
      encoding: 'utf8',
    })
      .split('\n')
      .map((l) => l.split(' '))
      .filter(([, file]) => file?.startsWith(`${dir}/`));
    if (mounts.length === 0 && loops.length === 0) break;
    const quiet = (cmd: string, args: string[]) => {
      try {
        execFileSync(cmd, args, { stdio: 'ignore' });
      } catch {
        // busy for a moment more: the next round retries
      }
    };
    // Volume devices first (files in the pool), then the pool itself; its LUN device goes with the unmount.
    for (const [device, file] of loops) if (!file!.includes('/luns/')) quiet('losetup', ['-d', device!]);
    for (const m of mounts.reverse()) quiet('umount', [m]);
    if (mounts.length === 0) for (const [device] of loops) quiet('losetup', ['-d', device!]);
    execFileSync('sleep', ['0.1']);
  }
  rmSync(dir, { recursive: true, force: true });
}

const fmtBytes = (n: number) => (n >= GiB ? `${(n / GiB).toFixed(2)} GiB` : `${(n / MiB).toFixed(1)} MiB`);

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const totalBlocks = (o.sizeGiB * GiB) / BLOCK;
  const blocks = pickBlocks(totalBlocks, Math.floor(totalBlocks * o.changed), o.seed);
  const results: Result[] = [];
  for (const pool of o.pools) results.push(await runPool(pool, o, blocks));
  const report = {
    bench: 'snapshot-delta',
    sizeGiB: o.sizeGiB,
    changedFraction: o.changed,
    changedBlocks: blocks.length,
    blockSize: BLOCK,
    seed: o.seed,
    cpus: (await import('node:os')).cpus().length,
    results,
  };
  if (!o.json) {
    console.log(
      `snapshot delta: ${o.sizeGiB} GiB volume, fully written, ${(o.changed * 100).toFixed(2)} % of 4 KiB blocks rewritten at random (${blocks.length} blocks, seed ${o.seed})`,
    );
    console.log('pool         method          delta time  pages  ranges  listed      written     exact  allocated map');
    for (const r of results) {
      console.log(
        `${r.pool.padEnd(12)} ${r.method.padEnd(15)} ${`${r.deltaSeconds.toFixed(2)} s`.padStart(10)}  ${String(r.pages).padStart(5)}  ${String(r.extents).padStart(6)}  ${fmtBytes(r.deltaBytes).padEnd(10)}  ${fmtBytes(r.writtenBytes).padEnd(10)}  ${r.exact ? 'yes' : 'NO '}    ${fmtBytes(r.allocatedBytes)} in ${r.allocatedSeconds.toFixed(2)} s`,
      );
    }
  }
  console.log(JSON.stringify(report));
  if (results.some((r) => !r.exact)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
