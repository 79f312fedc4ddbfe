// Extent maps of snapshot files: which ranges hold data (the sparse file's data map), and which ranges differ
// between two snapshots of one volume. Node has no lseek(SEEK_DATA) or FIEMAP, so both come from xfs_io
// (`fiemap -v`, windowed; `seek -a -r` where the file system has no FIEMAP), parsed strictly. On a reflink
// pool two snapshots of a volume share the physical blocks of every range nothing wrote in between: equal
// physical addresses mean equal data, so only ambiguous mappings are read and compared. On a directory pool
// the ranges holding data are compared byte by byte. Every request does bounded work and says where to go on.
import { promises as fsp, type PathLike } from 'node:fs';
import { run, ToolError } from './exec.js';
import {
  AMBIGUOUS,
  FLAG_UNWRITTEN,
  ExtentMapError,
  parseFiemap,
  parseSeek,
  type ByteRange,
  type Mapping,
} from './extent-parse.js';

export { ExtentMapError, parseFiemap, parseSeek, type ByteRange, type Mapping } from './extent-parse.js';

export const BLOCK_SIZE = 4096;
/**
 * Logical bytes mapped per xfs_io call, at most: its output stays small (one line per extent). A request
 * starts with a smaller window and sizes the next ones by the density of ranges it found, so a page that
 * stops at `limit` has not mapped much more than it used.
 */
const WINDOW_BYTES = 1024 ** 3;
const FIRST_WINDOW_BYTES = 64 * 1024 ** 2;

/** The next window: enough for the ranges still wanted at the density seen so far, within bounds. */
function nextWindow(found: number, mapped: number, wanted: number): number {
  if (found === 0 || mapped === 0) return WINDOW_BYTES;
  const bytes = Math.ceil(((Math.max(1, wanted) * mapped) / found) * 1.25);
  return Math.min(WINDOW_BYTES, Math.max(FIRST_WINDOW_BYTES / 4, Math.ceil(bytes / BLOCK_SIZE) * BLOCK_SIZE));
}
/** Bytes a delta request reads and compares at most (from each snapshot) before it answers. */
export const MAX_COMPARE_BYTES = 256 * 1024 ** 2;
/** A request starts no new window after this long; the client continues at next_offset. */
const TIME_BUDGET_MS = 2_000;
const CHUNK_BYTES = 1024 ** 2;
export interface ExtentPage {
  extents: ByteRange[];
  /** where the next page starts; undefined at the end */
  nextOffset: number | undefined;
}

export type DeltaMethod = 'shared_extents' | 'compare';

const alignDown = (n: number): number => Math.floor(n / BLOCK_SIZE) * BLOCK_SIZE;
const alignUp = (n: number): number => Math.ceil(n / BLOCK_SIZE) * BLOCK_SIZE;

/** The extents of [offset, offset+length); undefined when the file system has no FIEMAP (tmpfs). */
export async function fiemap(path: string, offset: number, length: number): Promise<Mapping[] | undefined> {
  if (length <= 0) return [];
  let stdout: string;
  let stderr: string;
  try {
    ({ stdout, stderr } = await run('xfs_io', ['-r', '-c', `fiemap -v ${offset} ${length}`, path], {
      timeoutMs: 60_000,
    }));
  } catch (err) {
    if (err instanceof ToolError && /not supported/i.test(err.stderr)) return undefined;
    throw err;
  }
  // xfs_io reports a failed ioctl on stderr and may still exit 0.
  if (/FIEMAP ioctl failed/i.test(stderr)) {
    if (/not supported/i.test(stderr)) return undefined;
    throw new ExtentMapError(`fiemap of ${path}: ${stderr.trim().slice(0, 200)}`);
  }
  return parseFiemap(stdout).filter((m) => m.logical + m.length > offset && m.logical < offset + length);
}

/** Data ranges from SEEK_DATA/SEEK_HOLE, from `offset` to the end of the file. */
export async function seekData(path: string, offset: number, size: number): Promise<ByteRange[]> {
  if (offset >= size) return [];
  const { stdout, stderr } = await run('xfs_io', ['-r', '-c', `seek -a -r ${offset}`, path], { timeoutMs: 60_000 });
  if (stderr.trim() !== '') throw new ExtentMapError(`seek of ${path}: ${stderr.trim().slice(0, 200)}`);
  return parseSeek(stdout, size);
}

/**
 * Data ranges of [pos, pos+len) of a file, with the end of the range they cover (FIEMAP covers the window,
 * the SEEK fallback the rest of the file). Unwritten (preallocated) extents read as zeros: not data.
 */
async function dataRanges(
  path: string,
  pos: number,
  len: number,
  size: number,
): Promise<{ ranges: ByteRange[]; covered: number }> {
  const maps = await fiemap(path, pos, len);
  if (maps !== undefined) {
    return {
      ranges: maps
        .filter((m) => (m.flags & FLAG_UNWRITTEN) === 0)
        .map((m) => ({ offset: m.logical, length: m.length })),
      covered: pos + len,
    };
  }
  return { ranges: await seekData(path, pos, size), covered: size };
}

/** Collects block-aligned, merged ranges in offset order, at most `limit` of them, none below `floor`. */
class Collector {
  readonly ranges: ByteRange[] = [];

  constructor(
    private readonly limit: number,
    private readonly floor: number,
    private readonly ceiling: number,
  ) {}

  /** Adds [start, end); false when the list is full and the range would be a new entry. */
  add(start: number, end: number): boolean {
    const s = Math.max(alignDown(start), this.floor);
    const e = Math.min(alignUp(end), this.ceiling);
    if (e <= s) return true;
    const last = this.ranges[this.ranges.length - 1];
    if (last && s <= last.offset + last.length) {
      last.length = Math.max(last.offset + last.length, e) - last.offset;
      return true;
    }
    if (this.ranges.length >= this.limit) return false;
    this.ranges.push({ offset: s, length: e - s });
    return true;
  }

  get end(): number {
    const last = this.ranges[this.ranges.length - 1];
    return last ? last.offset + last.length : this.floor;
  }
}

function page(c: Collector, next: number, size: number): ExtentPage {
  return { extents: c.ranges, nextOffset: next < size ? next : undefined };
}

/** Allocated (data-holding) ranges of a snapshot file of `size` bytes, from `offset`. */
export async function allocatedPage(path: string, size: number, offset: number, limit: number): Promise<ExtentPage> {
  const start = alignDown(offset);
  const c = new Collector(limit, start, size);
  const deadline = Date.now() + TIME_BUDGET_MS;
  let pos = start;
  let window = FIRST_WINDOW_BYTES;
  while (pos < size) {
    const { ranges, covered } = await dataRanges(path, pos, Math.min(window, size - pos), size);
    for (const r of ranges) {
      if (!c.add(r.offset, r.offset + r.length)) return page(c, c.end, size);
    }
    pos = covered;
    window = nextWindow(c.ranges.length, pos - start, limit - c.ranges.length);
    if (Date.now() > deadline) break;
  }
  return page(c, pos, size);
}

type SegmentKind = 'changed' | 'compare';
interface Segment {
  start: number;
  end: number;
  kind: SegmentKind;
}

function pushSegment(out: Segment[], start: number, end: number, kind: SegmentKind | undefined): void {
  if (kind === undefined || end <= start) return;
  const last = out[out.length - 1];
  if (last && last.kind === kind && last.end === start) last.end = end;
  else out.push({ start, end, kind });
}

/**
 * Classifies [pos, end) of two snapshots sharing extents: unchanged where both map the same physical block
 * (or neither holds data), changed where the mappings differ, 'compare' where a mapping is ambiguous.
 */
export function classifyShared(base: Mapping[], target: Mapping[], pos: number, end: number): Segment[] {
  const out: Segment[] = [];
  let i = 0;
  let j = 0;
  let cursor = pos;
  while (cursor < end) {
    while (i < base.length && base[i]!.logical + base[i]!.length <= cursor) i++;
    while (j < target.length && target[j]!.logical + target[j]!.length <= cursor) j++;
    const b = base[i];
    const t = target[j];
    const bIn = b !== undefined && b.logical <= cursor;
    const tIn = t !== undefined && t.logical <= cursor;
    let next = end;
    if (b) next = Math.min(next, bIn ? b.logical + b.length : b.logical);
    if (t) next = Math.min(next, tIn ? t.logical + t.length : t.logical);
    const state = (m: Mapping | undefined, inside: boolean): 'none' | 'zero' | 'ambiguous' | 'data' => {
      if (!m || !inside) return 'none';
      if (m.flags & FLAG_UNWRITTEN) return 'zero';
      return m.flags & AMBIGUOUS ? 'ambiguous' : 'data';
    };
    const bs = state(b, bIn);
    const ts = state(t, tIn);
    let kind: SegmentKind | undefined;
    const empty = (s: string) => s === 'none' || s === 'zero';
    if (empty(bs) && empty(ts)) kind = undefined;
    else if (bs === 'ambiguous' || ts === 'ambiguous' || bs === 'zero' || ts === 'zero') kind = 'compare';
    else if (bs === 'none' || ts === 'none') kind = 'changed';
    else kind = b!.physical + (cursor - b!.logical) === t!.physical + (cursor - t!.logical) ? undefined : 'changed';
    pushSegment(out, cursor, next, kind);
    cursor = next;
  }
  return out;
}

/** Reads two files side by side and reports the blocks that differ; past the base's end it reads zeros. */
class BlockComparer {
  private base?: fsp.FileHandle;
  private target?: fsp.FileHandle;
  private readonly a = Buffer.alloc(CHUNK_BYTES);
  private readonly b = Buffer.alloc(CHUNK_BYTES);
  compared = 0;

  constructor(
    private readonly basePath: PathLike,
    private readonly targetPath: PathLike,
  ) {}

  private static async readFull(fh: fsp.FileHandle, buf: Buffer, length: number, position: number): Promise<void> {
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(buf, done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    buf.fill(0, done, length);
  }

  /** Changed blocks of [start, end) (block-aligned), as merged ranges. */
  async diff(start: number, end: number): Promise<ByteRange[]> {
    this.base ??= await fsp.open(this.basePath, 'r');
    this.target ??= await fsp.open(this.targetPath, 'r');
    const out: ByteRange[] = [];
    for (let pos = start; pos < end; pos += CHUNK_BYTES) {
      const n = Math.min(CHUNK_BYTES, end - pos);
      await Promise.all([
        BlockComparer.readFull(this.base, this.a, n, pos),
        BlockComparer.readFull(this.target, this.b, n, pos),
      ]);
      this.compared += n;
      if (this.a.subarray(0, n).equals(this.b.subarray(0, n))) continue;
      for (let k = 0; k < n; k += BLOCK_SIZE) {
        const len = Math.min(BLOCK_SIZE, n - k);
        if (this.a.subarray(k, k + len).equals(this.b.subarray(k, k + len))) continue;
        const last = out[out.length - 1];
        if (last && last.offset + last.length === pos + k) last.length += len;
        else out.push({ offset: pos + k, length: len });
      }
    }
    return out;
  }

  async close(): Promise<void> {
    await Promise.all([this.base?.close(), this.target?.close()]);
  }
}

export interface SnapshotFile {
  path: string;
  size: number;
}

/**
 * Ranges that differ between two snapshots of one volume, from `offset`. `shared`: the pool reflinks, so
 * physical mappings decide (see classifyShared); otherwise every range holding data in either is compared.
 */
export async function deltaPage(
  base: SnapshotFile,
  target: SnapshotFile,
  offset: number,
  limit: number,
  shared: boolean,
): Promise<ExtentPage & { method: DeltaMethod }> {
  const size = target.size;
  const start = alignDown(offset);
  const c = new Collector(limit, start, size);
  const cmp = new BlockComparer(base.path, target.path);
  const deadline = Date.now() + TIME_BUDGET_MS;
  let method: DeltaMethod = shared ? 'shared_extents' : 'compare';
  let pos = start;
  let window = FIRST_WINDOW_BYTES;
  try {
    while (pos < size) {
      const len = Math.min(window, size - pos);
      const windowEnd = pos + len;
      let segments: Segment[] | undefined;
      if (method === 'shared_extents') {
        const [bm, tm] = await Promise.all([
          fiemap(base.path, pos, Math.min(len, Math.max(0, base.size - pos))),
          fiemap(target.path, pos, len),
        ]);
        if (bm !== undefined && tm !== undefined) segments = classifyShared(bm, tm, pos, windowEnd);
        else method = 'compare';
      }
      if (segments === undefined) {
        const [bd, td] = await Promise.all([
          pos < base.size
            ? dataRanges(base.path, pos, Math.min(len, base.size - pos), base.size)
            : Promise.resolve({ ranges: [], covered: windowEnd }),
          dataRanges(target.path, pos, len, size),
        ]);
        segments = [];
        const all = [...bd.ranges, ...td.ranges]
          .map((r) => ({ start: Math.max(r.offset, pos), end: Math.min(r.offset + r.length, windowEnd) }))
          .filter((r) => r.end > r.start)
          .sort((x, y) => x.start - y.start);
        for (const r of all) {
          const last = segments[segments.length - 1];
          if (last && r.start <= last.end) last.end = Math.max(last.end, r.end);
          else segments.push({ start: r.start, end: r.end, kind: 'compare' });
        }
      }
      for (const seg of segments) {
        if (seg.kind === 'changed') {
          if (!c.add(seg.start, seg.end)) return { ...page(c, c.end, size), method };
          continue;
        }
        const segStart = Math.max(alignDown(seg.start), c.end, start);
        const segEnd = alignUp(seg.end);
        for (let p = segStart; p < segEnd; p += CHUNK_BYTES) {
          if (cmp.compared >= MAX_COMPARE_BYTES) return { ...page(c, Math.max(p, c.end), size), method };
          for (const d of await cmp.diff(p, Math.min(segEnd, p + CHUNK_BYTES))) {
            if (!c.add(d.offset, d.offset + d.length)) return { ...page(c, c.end, size), method };
          }
        }
      }
      pos = windowEnd;
      window = nextWindow(c.ranges.length, pos - start, limit - c.ranges.length);
      if (Date.now() > deadline) break;
    }
  } finally {
    await cmp.close();
  }
  return { ...page(c, pos, size), method };
}
