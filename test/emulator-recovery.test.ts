// Crash safety: half-done operations left by a kill -9 are finished or rolled back at the next start, so
// rows and files agree. First each recovery rule on a crafted state, then seeded rounds of kill -9 under load.
import { existsSync, readdirSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { openDatabase } from '../emulator/sqlite.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  call,
  type Daemon,
  forceCleanup,
  makeTempDir,
  MiB,
  sdsCli,
  sleep,
  snapshotPath,
  startDaemon,
  stopAndCheck,
  volumePath,
  waitJob,
} from './support/emulator.js';
import { seededRandom } from './support/backend-audit.js';

const POOL = ['--pool', 'pool0:2G'];

function poolDir(d: Daemon, sub: string): string {
  return join(d.dataDir, 'pools', 'pool0', sub);
}

/** Every volume and snapshot, through the list requests (all pages). */
async function everything(
  sock: string,
): Promise<{ volumes: Record<string, string>[]; snapshots: Record<string, string>[] }> {
  const volumes: Record<string, string>[] = [];
  const snapshots: Record<string, string>[] = [];
  for (const [type, key, out] of [
    ['LIST_VOLUMES_REQ', 'volume', volumes],
    ['LIST_SNAPSHOTS_REQ', 'snapshot', snapshots],
  ] as const) {
    let marker = '';
    for (;;) {
      const a = await call(sock, type, { marker, limit: 50 });
      expect(a.retcode).toBe(0);
      const n = Number(a.get(key === 'volume' ? 'vol_num' : 'snap_num'));
      for (let i = 0; i < n; i++) out.push(a.record(`${key}${i}`));
      marker = a.get('next_marker') ?? '';
      if (!marker) break;
    }
  }
  return { volumes, snapshots };
}

/** The invariants reconcile guarantees: nothing half-done, rows and files agree, counters right. */
async function checkConsistent(d: Daemon): Promise<void> {
  const sock = d.info.controlSocket;
  const { volumes, snapshots } = await everything(sock);
  for (const v of volumes) {
    expect(['1', '2', '12']).toContain(v.status);
    if (v.health === 'ok') {
      expect(statSync(volumePath(d, v.vol_name!)).size).toBe(Number(v.vol_size) * MiB);
    }
  }
  for (const s of snapshots) {
    expect(['1', '2', '12']).toContain(s.status);
    if (s.health === 'ok') expect(statSync(snapshotPath(d, s.snap_name!)).size).toBe(Number(s.vol_size) * MiB);
  }
  // No file without its row, nothing under construction.
  expect(readdirSync(poolDir(d, 'volumes')).sort()).toEqual(
    volumes
      .filter((v) => existsSync(volumePath(d, v.vol_name!)))
      .map((v) => v.vol_name)
      .sort(),
  );
  expect(readdirSync(poolDir(d, 'volumes')).length).toBe(volumes.filter((v) => v.health === 'ok').length);
  expect(readdirSync(poolDir(d, 'snapshots')).sort()).toEqual(
    snapshots
      .filter((s) => s.health === 'ok')
      .map((s) => s.snap_name)
      .sort(),
  );
  expect(readdirSync(poolDir(d, '.tmp'))).toEqual([]);
  const pool = (await call(sock, 'QUERY_POOLS_CAPABILITY_REQ')).record('pool0');
  expect(Number(pool.provisioned_mb)).toBe(volumes.reduce((sum, v) => sum + Number(v.vol_size), 0));
}

describe('reconcile rules on crafted half-done states', () => {
  let dir: string;
  beforeAll(() => {
    dir = makeTempDir();
  });
  afterAll(() => forceCleanup(dir));

  it('finishes or rolls back each half-done row, removes orphans and temp files, marks missing files faulty', async () => {
    let d = await startDaemon({ dir, args: POOL });
    const sock = d.info.controlSocket;
    for (const name of ['keep', 'lost', 'short', 'grow', 'gone', 'clone-done']) {
      expect((await call(sock, 'CREATE_VOLUME_REQ', { vol_name: name, vol_size: 16 })).retcode).toBe(0);
    }
    expect((await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'snap-ok', vol_name: 'keep' })).retcode).toBe(0);
    expect((await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'snap-del', vol_name: 'keep' })).retcode).toBe(0);
    expect((await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'snap-lost', vol_name: 'keep' })).retcode).toBe(0);
    await d.kill9();

    // What a crash at different moments leaves behind:
    const db = openDatabase(join(d.dataDir, 'emulator.db'));
    const set = (sql: string, ...args: unknown[]) => db.prepare(sql).run(...args);
    set("UPDATE volumes SET state = 'extending', target_size_mb = 48 WHERE name = 'grow'");
    set("UPDATE volumes SET state = 'deleting' WHERE name = 'gone'");
    // a clone renamed into place before its commit, and a clone that had not got there yet
    set(
      "UPDATE volumes SET state = 'creating', op = 'clone', src_type = 'volume', src_name = 'keep', clone_type = 'linked' WHERE name = 'clone-done'",
    );
    set(`INSERT INTO volumes (name, pool, size_mb, thin, state, op, src_type, src_name, clone_type, max_iops, max_mbps, io_priority,
      io_class_id, cache_policy, create_time) VALUES ('clone-half', 'pool0', 16, 1, 'creating', 'clone', 'volume', 'keep', 'full', 0, 0, 2, '', 'none', 1)`);
    set("UPDATE snapshots SET state = 'deleting' WHERE name = 'snap-del'");
    set(
      `INSERT INTO snapshots (name, vol_id, vol_name, pool, size_mb, state, create_time) VALUES ('snap-half', 1, 'keep', 'pool0', 16, 'creating', 1)`,
    );
    set(
      `INSERT INTO jobs (job_id, job_type, status, vol_name, snap_name, vol_id, pool, image, image_format, bytes_done, bytes_total, error,
      tmp_paths, started_at) VALUES ('job-x', 'export', 'running', 'keep', '', NULL, 'pool0', '/tmp/x', 'raw', 0, 0, '', ?, 1)`,
      JSON.stringify([join(dir, 'partial.part')]),
    );
    db.close();
    writeFileSync(join(dir, 'partial.part'), 'half an image');
    writeFileSync(join(poolDir(d, '.tmp'), 'vol-99'), 'temp');
    writeFileSync(join(poolDir(d, '.tmp'), 'snap-7'), 'temp');
    writeFileSync(join(poolDir(d, 'volumes'), 'orphan'), '');
    // A thin create commits only after its file exists: a crash before the commit leaves just the file.
    writeFileSync(join(poolDir(d, 'volumes'), 'uncommitted'), '');
    unlinkSync(volumePath(d, 'lost'));
    unlinkSync(snapshotPath(d, 'snap-lost'));
    truncateSync(volumePath(d, 'grow'), 16 * MiB);
    truncateSync(volumePath(d, 'short'), 8 * MiB);

    d = await startDaemon({ dir, args: POOL });
    const q = async (name: string) => call(d.info.controlSocket, 'QUERY_VOLUME_REQ', { vol_name: name });
    expect((await q('keep')).record('volume0')).toMatchObject({ status: '1', health: 'ok' });
    expect((await q('lost')).record('volume0')).toMatchObject({
      status: '12',
      health: 'fault',
      fault_reason: 'volume file missing',
    });
    expect((await q('short')).record('volume0')).toMatchObject({
      status: '12',
      health: 'fault',
      fault_reason: `volume file is ${8 * MiB} bytes, ${16 * MiB} expected`,
    });
    // Deleted at once (a small file): the consistency check below counts only healthy volumes' files.
    expect((await call(d.info.controlSocket, 'DELETE_VOLUME_REQ', { vol_name: 'short' })).get('deleted')).toBe('1');
    expect((await q('short')).retcode).toBe(-900079);
    expect((await q('grow')).record('volume0')).toMatchObject({ status: '1', vol_size: '48' });
    expect(statSync(volumePath(d, 'grow')).size).toBe(48 * MiB);
    expect((await q('gone')).retcode).toBe(-900079);
    expect((await q('clone-done')).record('volume0')).toMatchObject({
      status: '1',
      src_type: 'volume',
      clone_type: 'linked',
    });
    expect((await q('clone-half')).retcode).toBe(-900079);
    expect((await q('uncommitted')).retcode).toBe(-900079);
    const snap = (name: string) => call(d.info.controlSocket, 'QUERY_SNAPSHOT_REQ', { snap_name: name });
    expect((await snap('snap-ok')).record('snapshot0').status).toBe('1');
    expect((await snap('snap-del')).retcode).toBe(-900079);
    expect((await snap('snap-half')).retcode).toBe(-900079);
    expect((await snap('snap-lost')).record('snapshot0')).toMatchObject({
      status: '12',
      health: 'fault',
      fault_reason: 'snapshot file missing',
    });
    const job = (await call(d.info.controlSocket, 'QUERY_IMAGE_JOB_REQ', { job_id: 'job-x' })).record('job0');
    expect(job).toMatchObject({ status: 'failed' });
    expect(existsSync(join(dir, 'partial.part'))).toBe(false);
    expect(readdirSync(poolDir(d, '.tmp'))).toEqual([]);
    expect(existsSync(join(poolDir(d, 'volumes'), 'orphan'))).toBe(false);
    await checkConsistent(d);
    // A faulty volume can still be deleted.
    expect((await call(d.info.controlSocket, 'DELETE_VOLUME_REQ', { vol_name: 'lost' })).retcode).toBe(0);
    expect(await stopAndCheck(d)).toEqual({ code: 0, loops: [], mounts: [] });
  });

  it('keeps an attachment across kill -9, and a lost database does not destroy volume files', async () => {
    const dir2 = makeTempDir();
    try {
      let d = await startDaemon({ dir: dir2, args: POOL });
      expect((await call(d.info.controlSocket, 'CREATE_VOLUME_REQ', { vol_name: 'att', vol_size: 16 })).retcode).toBe(
        0,
      );
      expect(
        (await call(d.info.controlSocket, 'MAP_VOLUME_REQ', { vol_name: 'att', host_id: d.info.hostId })).retcode,
      ).toBe(0);
      const dev = sdsCli(d.info.kvSocket, ['-c', 'attach', '-v', 'att']).values.get('dev_addr');
      expect(dev).toMatch(/^\/dev\/loop\d+$/);
      await d.kill9();
      d = await startDaemon({ dir: dir2, args: POOL });
      expect(sdsCli(d.info.kvSocket, ['-c', 'querydev', '-v', 'att']).values.get('dev_addr')).toBe(dev);
      expect((await call(d.info.controlSocket, 'DELETE_VOLUME_REQ', { vol_name: 'att' })).retcode).toBe(-900018);
      expect(sdsCli(d.info.kvSocket, ['-c', 'detach', '-v', 'att']).values.get('ret_code')).toBe('0');
      await d.kill9();

      for (const f of ['emulator.db', 'emulator.db-wal', 'emulator.db-shm'])
        if (existsSync(join(d.dataDir, f))) unlinkSync(join(d.dataDir, f));
      d = await startDaemon({ dir: dir2, args: POOL });
      expect((await call(d.info.controlSocket, 'QUERY_VOLUME_REQ', { vol_name: 'att' })).retcode).toBe(-900079);
      expect(existsSync(join(d.dataDir, 'pools', 'pool0', 'lost+found', 'volume-att'))).toBe(true);
      expect(await stopAndCheck(d)).toEqual({ code: 0, loops: [], mounts: [] });
    } finally {
      forceCleanup(dir2);
    }
  });

  it('fails an import interrupted by kill -9 and removes its volume and partial file', async () => {
    const dir3 = makeTempDir();
    let release: (() => void) | undefined;
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(64 * MiB) });
      res.write(Buffer.alloc(1 * MiB, 7));
      release = () => res.destroy();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      // The test's server is on loopback, which imports reach only when allowlisted.
      let d = await startDaemon({ dir: dir3, args: [...POOL, '--image-url-allow', '127.0.0.1'] });
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/img`;
      const a = await call(d.info.controlSocket, 'IMPORT_IMAGE_REQ', { vol_name: 'imp', image_url: url });
      expect(a.retcode).toBe(0);
      const jobId = a.get('job_id')!;
      for (let i = 0; i < 200 && readdirSync(poolDir(d, '.tmp')).length === 0; i++) await sleep(10);
      expect(readdirSync(poolDir(d, '.tmp')).length).toBeGreaterThan(0);
      await d.kill9();
      release?.();
      d = await startDaemon({ dir: dir3, args: POOL });
      const job = await waitJob(d.info.controlSocket, jobId);
      expect(job.status).toBe('failed');
      expect(job.error).toMatch(/restarted/);
      expect((await call(d.info.controlSocket, 'QUERY_VOLUME_REQ', { vol_name: 'imp' })).retcode).toBe(-900079);
      await checkConsistent(d);
      expect(await stopAndCheck(d)).toEqual({ code: 0, loops: [], mounts: [] });
    } finally {
      server.close();
      forceCleanup(dir3);
    }
  });
});

describe('kill -9 under load', () => {
  let dir: string;
  beforeAll(() => {
    dir = makeTempDir();
  });
  afterAll(() => forceCleanup(dir));

  it.each([[11], [4242], [90210]])(
    'leaves rows and files agreeing after restart (seed %i)',
    async (seed) => {
      const rand = seededRandom(seed);
      const pick = <T>(list: readonly T[]): T => list[Math.floor(rand() * list.length)]!;
      let d = await startDaemon({ dir: join(dir, String(seed)), args: POOL });
      const rounds = Number(process.env.EMULATOR_SOAK_ROUNDS ?? 3);
      const repairs: string[] = [];
      for (let round = 0; round < rounds; round++) {
        const sock = d.info.controlSocket;
        let stop = false;
        let ops = 0;
        const names = Array.from({ length: 12 }, (_, i) => `v${i}`);
        const snaps = Array.from({ length: 6 }, (_, i) => `s${i}`);
        const worker = async (): Promise<void> => {
          while (!stop) {
            const r = rand();
            try {
              if (r < 0.3)
                await call(sock, 'CREATE_VOLUME_REQ', {
                  vol_name: pick(names),
                  vol_size: 8 + Math.floor(rand() * 32),
                  thin_flag: rand() < 0.2 ? 0 : 1,
                });
              else if (r < 0.5) await call(sock, 'DELETE_VOLUME_REQ', { vol_name: pick(names) });
              else if (r < 0.62)
                await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: pick(snaps), vol_name: pick(names) });
              else if (r < 0.7) await call(sock, 'DELETE_SNAPSHOT_REQ', { snap_name: pick(snaps) });
              else if (r < 0.8)
                await call(sock, 'CREATE_VOLUME_FROM_SNAPSHOT_REQ', {
                  vol_name: pick(names),
                  snap_name_src: pick(snaps),
                  clone_type: rand() < 0.5 ? 'full' : 'linked',
                });
              else if (r < 0.88)
                await call(sock, 'CLONE_VOLUME_REQ', {
                  vol_name: pick(names),
                  src_vol_name: pick(names),
                  clone_type: rand() < 0.5 ? 'full' : 'linked',
                });
              else
                await call(sock, 'EXTEND_VOLUME_REQ', {
                  vol_name: pick(names),
                  vol_size: 40 + Math.floor(rand() * 40),
                });
              ops++;
            } catch {
              // the daemon died under us: expected
              return;
            }
          }
        };
        const workers = Array.from({ length: 6 }, () => worker());
        // The kill must land while operations run: wait for the first to complete (a loaded machine can take
        // longer than the random delay to get there), then let the seeded delay decide where it lands.
        for (let waited = 0; ops === 0 && waited < 10_000; waited += 5) await sleep(5);
        await sleep(30 + Math.floor(rand() * 250));
        await d.kill9();
        stop = true;
        await Promise.all(workers);
        expect(ops).toBeGreaterThan(0);
        d = await startDaemon({ dir: join(dir, String(seed)), args: POOL });
        repairs.push(
          /"msg":"reconciled"/.test(d.stderr()) ? (/\{[^\n]*"msg":"reconciled"\}/.exec(d.stderr())?.[0] ?? '') : '',
        );
        await checkConsistent(d);
      }
      if (process.env.EMULATOR_SOAK_ROUNDS) console.log(repairs.join('\n'));
      const left = await stopAndCheck(d);
      expect(left).toEqual({ code: 0, loops: [], mounts: [] });
    },
    120_000,
  );
});
