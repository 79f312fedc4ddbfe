// Snapshot extent maps on the emulator (docs/socket-api.md §2.6): allocated ranges of sparse snapshots and
// deltas between two snapshots of one volume, on an xfs-reflink pool (shared extents decide) and on a
// directory pool (byte compare), byte-checked against the snapshot files; paging, work caps and errors.
// Plus the parsers and the classifier on their own, on crafted input.
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { classifyShared, parseFiemap, parseSeek, type ByteRange, type Mapping } from '../emulator/extents.js';
import { call, type Daemon, MiB, sdsCli, snapshotPath } from './support/emulator.js';
import { daemonForSuite } from './support/emulator-suite.js';
import { mergeSpans, readAt } from './support/block-io.js';

const KiB = 1024;
const B = 4 * KiB;

/** Every range of every page, following next_offset, merged where pages touch. */
async function allPages(
  sock: string,
  type: string,
  fields: Record<string, string | number>,
): Promise<{ ranges: ByteRange[]; pages: number; size: number; method?: string }> {
  const ranges: ByteRange[] = [];
  let offset = 0;
  let pages = 0;
  let size: number;
  let method: string | undefined;
  for (;;) {
    const a = await call(sock, type, { ...fields, offset });
    if (a.retcode !== 0) throw new Error(`${type}: ${a.text}`);
    pages++;
    size = Number(a.get('size_bytes'));
    method = a.get('method');
    expect(a.get('block_size')).toBe('4096');
    const n = Number(a.get('extent_num'));
    for (let i = 0; i < n; i++) {
      const r = a.record(`extent${i}`);
      const e = { offset: Number(r.offset), length: Number(r.length) };
      expect(e.offset % B).toBe(0);
      expect(e.length % B).toBe(0);
      expect(e.length).toBeGreaterThan(0);
      const last = ranges[ranges.length - 1];
      if (last) expect(e.offset).toBeGreaterThanOrEqual(last.offset + last.length);
      if (last && last.offset + last.length === e.offset) last.length += e.length;
      else ranges.push(e);
    }
    const next = a.get('next_offset') ?? '';
    if (next === '') return { ranges, pages, size, method };
    expect(Number(next)).toBeGreaterThan(offset);
    offset = Number(next);
  }
}

/** Block by block: the blocks that differ between two files are exactly those inside `delta`. */
function checkDeltaBytes(base: string, target: string, sizeBytes: number, delta: ByteRange[]): void {
  const inDelta = (off: number) => delta.some((r) => off >= r.offset && off < r.offset + r.length);
  for (let off = 0; off < sizeBytes; off += MiB) {
    const a = readAt(base, off, MiB);
    const b = readAt(target, off, MiB);
    for (let k = 0; k < MiB; k += B) {
      const differs = !a.subarray(k, k + B).equals(b.subarray(k, k + B));
      if (differs) expect(inDelta(off + k), `block at ${off + k} differs but is not in the delta`).toBe(true);
    }
  }
}

interface Writer {
  write(offset: number, length: number, fill: number): void;
  close(): void;
}

/** Maps and attaches a volume with the real sds_cli and writes to its loop device. */
async function attachForWriting(d: Daemon, name: string): Promise<Writer> {
  expect((await call(d.info.controlSocket, 'MAP_VOLUME_REQ', { vol_name: name, host_id: d.info.hostId })).retcode).toBe(
    0,
  );
  const attached = sdsCli(d.info.kvSocket, ['-c', 'attach', '-v', name]);
  expect(attached.values.get('ret_code')).toBe('0');
  const fd = openSync(attached.values.get('dev_addr')!, 'r+');
  return {
    write(offset, length, fill) {
      writeSync(fd, Buffer.alloc(length, fill), 0, length, offset);
      fsyncSync(fd);
    },
    close() {
      closeSync(fd);
      expect(sdsCli(d.info.kvSocket, ['-c', 'detach', '-v', name]).values.get('ret_code')).toBe('0');
    },
  };
}

describe.each([
  ['xfs-reflink', 'shared_extents'],
  ['directory', 'compare'],
])('extent maps on a %s pool', (poolType, expectedMethod) => {
  let d: Daemon;
  let sock: string;
  const snap = async (name: string, vol: string) => {
    const a = await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: name, vol_name: vol });
    expect(a.retcode, a.text).toBe(0);
  };
  const delta = (base: string, target: string, limit = 1000) =>
    allPages(sock, 'QUERY_SNAPSHOT_DELTA_REQ', { base_snap_name: base, snap_name: target, limit });
  const allocated = (name: string, limit = 1000) =>
    allPages(sock, 'QUERY_SNAPSHOT_EXTENTS_REQ', { snap_name: name, limit });

  daemonForSuite({ args: ['--pool', 'pool0:2G', '--pool-type', poolType] }, (started) => {
    d = started;
    sock = started.info.controlSocket;
  });
  beforeAll(async () => {
    const pool = (await call(sock, 'QUERY_POOLS_CAPABILITY_REQ')).record('pool0');
    expect(pool.pool_type).toBe(poolType);
    expect((await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'v1', vol_size: 64 })).retcode).toBe(0);
    expect((await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'v2', vol_size: 16 })).retcode).toBe(0);
  });

  const P1: ByteRange[] = [
    { offset: 0, length: B },
    { offset: MiB, length: 3 * B },
    { offset: 8 * MiB + B, length: B },
    { offset: 63 * MiB, length: MiB },
  ];
  const P2: ByteRange[] = [
    { offset: B, length: B }, // touches P1's first range
    { offset: MiB + B, length: B }, // overwrites the middle of P1's second range
    { offset: 2 * MiB, length: B },
    { offset: 63 * MiB + 2 * B, length: 2 * B },
  ];

  it('lists exactly the written ranges of a sparse snapshot, in pages of any size', async () => {
    const w = await attachForWriting(d, 'v1');
    for (const r of P1) w.write(r.offset, r.length, 0x11);
    w.close();
    await snap('s1', 'v1');
    const all = await allocated('s1');
    expect(all.size).toBe(64 * MiB);
    expect(all.ranges).toEqual(P1);
    const paged = await allocated('s1', 1);
    expect(paged.ranges).toEqual(P1);
    expect(paged.pages).toBeGreaterThanOrEqual(4);
  });

  it(`lists exactly the blocks written between two snapshots (method ${expectedMethod}), byte-checked`, async () => {
    const w = await attachForWriting(d, 'v1');
    for (const r of P2) w.write(r.offset, r.length, 0x22);
    w.close();
    await snap('s2', 'v1');
    const all = await delta('s1', 's2');
    expect(all.method).toBe(expectedMethod);
    expect(all.size).toBe(64 * MiB);
    expect(all.ranges).toEqual(mergeSpans(P2));
    checkDeltaBytes(snapshotPath(d, 's1'), snapshotPath(d, 's2'), 64 * MiB, all.ranges);
    expect((await delta('s1', 's2', 1)).ranges).toEqual(mergeSpans(P2));
    expect((await allocated('s2')).ranges).toEqual(mergeSpans([...P1, ...P2]));
    // A snapshot against itself differs nowhere.
    expect((await delta('s2', 's2')).ranges).toEqual([]);
  });

  it('treats a block rewritten with the same bytes as changed by mapping, unchanged by compare', async () => {
    const w = await attachForWriting(d, 'v1');
    w.write(2 * MiB, B, 0x22); // what s2 already holds there
    w.close();
    await snap('s3', 'v1');
    const all = await delta('s2', 's3');
    // The reflink pool sees a new physical block (a rewrite); the directory pool compares bytes.
    expect(all.ranges).toEqual(expectedMethod === 'shared_extents' ? [{ offset: 2 * MiB, length: B }] : []);
    checkDeltaBytes(snapshotPath(d, 's2'), snapshotPath(d, 's3'), 64 * MiB, all.ranges);
  });

  it('covers the grown part when the volume was extended between the snapshots', async () => {
    expect((await call(sock, 'EXTEND_VOLUME_REQ', { vol_name: 'v1', vol_size: 96 })).retcode).toBe(0);
    const w = await attachForWriting(d, 'v1');
    w.write(80 * MiB, 2 * B, 0x33);
    w.close();
    await snap('s4', 'v1');
    const all = await delta('s3', 's4');
    expect(all.size).toBe(96 * MiB);
    expect(all.ranges).toEqual([{ offset: 80 * MiB, length: 2 * B }]);
  });

  it('reports no data for a thick volume never written (preallocated blocks read as zeros)', async () => {
    expect((await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'thick', vol_size: 32, thin_flag: 0 })).retcode).toBe(0);
    await snap('s-thick', 'thick');
    expect((await allocated('s-thick')).ranges).toEqual([]);
  });

  it('finds scattered random blocks exactly, across pages', async () => {
    expect((await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'big', vol_size: 512 })).retcode).toBe(0);
    const w = await attachForWriting(d, 'big');
    let seed = 42;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const base: ByteRange[] = [];
    for (let i = 0; i < 200; i++) base.push({ offset: Math.floor(rand() * ((512 * MiB) / B)) * B, length: B });
    for (const r of base) w.write(r.offset, r.length, 0x44);
    await snap('b1', 'big');
    const changed: ByteRange[] = [];
    for (let i = 0; i < 300; i++) changed.push({ offset: Math.floor(rand() * ((512 * MiB) / B)) * B, length: B });
    for (const r of changed) w.write(r.offset, r.length, 0x55);
    w.close();
    await snap('b2', 'big');
    expect((await allocated('b1')).ranges).toEqual(mergeSpans(base));
    const all = await delta('b1', 'b2', 7);
    expect(all.ranges).toEqual(mergeSpans(changed));
    expect(all.pages).toBeGreaterThan(10);
    checkDeltaBytes(snapshotPath(d, 'b1'), snapshotPath(d, 'b2'), 512 * MiB, all.ranges);
  });

  it('answers errors naming the key', async () => {
    const q = (type: string, fields: Record<string, string | number>) => call(sock, type, fields);
    let a = await q('QUERY_SNAPSHOT_EXTENTS_REQ', { snap_name: 's1', offset: 64 * MiB + 1 });
    expect([a.retcode, a.get('ret_desc')]).toEqual([-900003, expect.stringMatching(/^offset: .*beyond/)]);
    a = await q('QUERY_SNAPSHOT_EXTENTS_REQ', { snap_name: 's1', offset: 64 * MiB });
    expect([a.retcode, a.get('extent_num'), a.get('next_offset')]).toEqual([0, '0', '']);
    a = await q('QUERY_SNAPSHOT_EXTENTS_REQ', { snap_name: 's1', limit: 0 });
    expect([a.retcode, a.get('ret_desc')]).toEqual([-900003, expect.stringMatching(/^limit/)]);
    a = await q('QUERY_SNAPSHOT_EXTENTS_REQ', { snap_name: 'nope' });
    expect(a.retcode).toBe(-900079);
    await snap('other', 'v2');
    a = await q('QUERY_SNAPSHOT_DELTA_REQ', { base_snap_name: 's1', snap_name: 'other' });
    expect([a.retcode, a.get('ret_desc')]).toEqual([
      -900003,
      expect.stringMatching(/^base_snap_name: .*two snapshots of one volume/),
    ]);
    a = await q('QUERY_SNAPSHOT_DELTA_REQ', { base_snap_name: 's2', snap_name: 's1' });
    expect([a.retcode, a.get('ret_desc')]).toEqual([-900003, expect.stringMatching(/^base_snap_name: .*earlier/)]);
    a = await q('QUERY_SNAPSHOT_DELTA_REQ', { base_snap_name: 'nope', snap_name: 's1' });
    expect([a.retcode, a.get('ret_desc')]).toEqual([-900079, expect.stringMatching(/base_snap_name/)]);
    a = await q('QUERY_SNAPSHOT_DELTA_REQ', { snap_name: 's1' });
    expect([a.retcode, a.get('ret_desc')]).toEqual([-900003, expect.stringMatching(/^base_snap_name: is required/)]);
  });

  if (poolType === 'directory') {
    it('stops after the compare budget and continues at next_offset', async () => {
      expect((await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'full', vol_size: 320 })).retcode).toBe(0);
      const w = await attachForWriting(d, 'full');
      for (let off = 0; off < 320 * MiB; off += 16 * MiB) w.write(off, 16 * MiB, 0x66);
      await snap('f1', 'full');
      w.write(300 * MiB, B, 0x77);
      w.close();
      await snap('f2', 'full');
      const first = await call(sock, 'QUERY_SNAPSHOT_DELTA_REQ', { base_snap_name: 'f1', snap_name: 'f2' });
      expect(first.get('extent_num')).toBe('0');
      expect(Number(first.get('next_offset'))).toBe(256 * MiB);
      expect((await delta('f1', 'f2')).ranges).toEqual([{ offset: 300 * MiB, length: B }]);
    });
  }
});

describe('extent parsers and the shared-extent classifier', () => {
  it('parses xfs_io fiemap output (sectors → bytes, holes dropped, flags kept)', () => {
    const out = [
      '/pool/snapshots/s1:',
      ' EXT: FILE-OFFSET      BLOCK-RANGE      TOTAL FLAGS',
      '   0: [0..15]:         192..207            16 0x2000',
      '   1: [16..23]:        hole                 8',
      '   2: [24..2047]:      216..2239         2024 0x801',
      '',
    ].join('\n');
    expect(parseFiemap(out)).toEqual([
      { logical: 0, length: 8 * KiB, physical: 192 * 512, flags: 0x2000 },
      { logical: 12 * KiB, length: 2024 * 512, physical: 216 * 512, flags: 0x801 },
    ]);
  });

  it.each([
    ['garbage line', '/f:\n EXT: FILE-OFFSET      BLOCK-RANGE      TOTAL FLAGS\n   0: [0..15]: what\n'],
    [
      'extents out of order',
      '/f:\n EXT: FILE-OFFSET BLOCK-RANGE TOTAL FLAGS\n 0: [16..23]: 8..15 8 0x0\n 1: [0..7]: 0..7 8 0x0\n',
    ],
    ['unequal ranges', '/f:\n EXT: FILE-OFFSET BLOCK-RANGE TOTAL FLAGS\n 0: [0..15]: 0..7 16 0x0\n'],
    ['an error message', 'fiemap: something odd happened\n'],
  ])('refuses fiemap output with %s', (_what, out) => {
    expect(() => parseFiemap(out)).toThrow(/fiemap/);
  });

  it('parses xfs_io seek output into data ranges', () => {
    expect(parseSeek('Whence\tResult\nDATA\t0\nHOLE\t4096\nDATA\t1048576\nHOLE\t1052672\n', 4 * MiB)).toEqual([
      { offset: 0, length: 4096 },
      { offset: MiB, length: 4096 },
    ]);
    expect(parseSeek('Whence\tResult\nHOLE\t0\nDATA\t8192\n', 16384)).toEqual([{ offset: 8192, length: 8192 }]);
    expect(parseSeek('Whence\tResult\nDATA\tEOF\n', 16384)).toEqual([]);
    expect(() => parseSeek('Whence\tResult\nMAYBE\t0\n', 16384)).toThrow(/seek/);
  });

  it('classifies ranges by physical mapping; ambiguous and unwritten ones are compared', () => {
    const m = (logical: number, length: number, physical: number, flags = 0x2000): Mapping => ({
      logical,
      length,
      physical,
      flags,
    });
    const base = [
      m(0, 4 * B, 1000 * B),
      m(8 * B, 2 * B, 2000 * B),
      m(12 * B, B, 0, 0x4),
      m(14 * B, B, 3000 * B, 0x800),
    ];
    const target = [
      m(0, B, 1000 * B),
      m(B, B, 5000 * B),
      m(2 * B, 2 * B, 1002 * B),
      m(6 * B, B, 6000 * B),
      m(12 * B, B, 7000 * B),
      m(14 * B, B, 3000 * B, 0x800),
    ];
    expect(classifyShared(base, target, 0, 16 * B)).toEqual([
      { start: B, end: 2 * B, kind: 'changed' }, // remapped block
      { start: 6 * B, end: 7 * B, kind: 'changed' }, // new data over a hole
      { start: 8 * B, end: 10 * B, kind: 'changed' }, // data gone (punched)
      { start: 12 * B, end: 13 * B, kind: 'compare' }, // delalloc: no trustworthy address
    ]);
  });
});
