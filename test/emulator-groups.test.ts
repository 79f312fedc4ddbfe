// Group snapshots on the emulator, request by request (docs/socket-api.md §2.6): the cut through frozen file
// systems, idempotency by name, all-or-nothing failures, member rules, deletes, and recovery after kill -9
// (a half-made group is removed whole; a file system left frozen is thawed at the next start).
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { openDatabase } from '../emulator/sqlite.js';
import { beforeAll, describe, expect, it } from 'vitest';
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
  waitGone,
  waitForLog,
} from './support/emulator.js';
import { daemonForSuite } from './support/emulator-suite.js';

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.status} ${r.stderr}`);
  return r.stdout;
}

/**
 * Whether the file system at `dir` is frozen, without blocking (a writer to a frozen file system sleeps
 * uninterruptibly until the thaw): freezing a frozen one fails with EBUSY; one that was not frozen is thawed
 * again at once.
 */
function frozen(dir: string): boolean {
  const r = spawnSync('fsfreeze', ['-f', dir], { encoding: 'utf8' });
  if (r.status === 0) {
    sh('fsfreeze', ['-u', dir]);
    return false;
  }
  if (/busy/i.test(r.stderr)) return true;
  throw new Error(`fsfreeze -f ${dir}: ${r.stderr}`);
}

/** Writes every other 4 KiB block of a device, so the volume file behind it holds thousands of extents. */
function fragment(device: string, bytes: number): void {
  const fd = openSync(device, 'r+');
  try {
    const block = Buffer.alloc(4096, 0x5a);
    for (let off = 0; off < bytes; off += 8192) writeSync(fd, block, 0, 4096, off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Volumes mapped to the daemon's host, attached with the real sds_cli, ext4 on each, mounted under `root`. */
async function mountedVolumes(
  d: Daemon,
  root: string,
  names: string[],
  sizeMb = 64,
  fragmented = false,
): Promise<Map<string, { device: string; dir: string }>> {
  const out = new Map<string, { device: string; dir: string }>();
  for (const name of names) {
    expect((await call(d.info.controlSocket, 'CREATE_VOLUME_REQ', { vol_name: name, vol_size: sizeMb })).retcode).toBe(
      0,
    );
    expect(
      (await call(d.info.controlSocket, 'MAP_VOLUME_REQ', { vol_name: name, host_id: d.info.hostId })).retcode,
    ).toBe(0);
    const attached = sdsCli(d.info.kvSocket, ['-c', 'attach', '-v', name]);
    expect(attached.values.get('ret_code')).toBe('0');
    const device = attached.values.get('dev_addr')!;
    if (fragmented) fragment(device, sizeMb * MiB);
    // 4 KiB blocks: clones come back with 4 KiB sectors. nodiscard: a discard would punch the fragmented
    // pattern out of the volume file again.
    sh('mkfs.ext4', ['-q', '-F', '-b', '4096', '-E', 'nodiscard', device]);
    const dir = join(root, name);
    mkdirSync(dir, { recursive: true });
    sh('mount', [device, dir]);
    out.set(name, { device, dir });
  }
  return out;
}

async function unmountAll(d: Daemon, vols: Map<string, { device: string; dir: string }>): Promise<void> {
  for (const [name, v] of vols) {
    spawnSync('fsfreeze', ['-u', v.dir]);
    sh('umount', [v.dir]);
    expect(sdsCli(d.info.kvSocket, ['-c', 'detach', '-v', name]).values.get('ret_code')).toBe('0');
  }
}

/** The end of a test with its own daemon: volumes unmounted and detached, the daemon stopped, nothing left. */
async function finishCleanly(d: Daemon, vols: Map<string, { device: string; dir: string }>): Promise<void> {
  await unmountAll(d, vols);
  expect(await stopAndCheck(d)).toEqual({ code: 0, loops: [], mounts: [] });
}

/** Whatever happened: thaws what may still be frozen (`vols` unless already unmounted), kills the daemon, removes `dir`. */
async function abandon(
  d: Daemon,
  vols: Map<string, { device: string; dir: string }> | undefined,
  dir: string,
): Promise<void> {
  if (vols) for (const v of vols.values()) spawnSync('fsfreeze', ['-u', v.dir]);
  await d.kill9();
  forceCleanup(dir);
}

/** Reads a file from a snapshot: a linked clone of it, attached and mounted read-only. */
async function readFromSnapshot(d: Daemon, root: string, snap: string, file: string): Promise<string | undefined> {
  const clone = `rd-${snap.slice(-12)}-${Math.random().toString(36).slice(2, 8)}`;
  expect(
    (
      await call(d.info.controlSocket, 'CREATE_VOLUME_FROM_SNAPSHOT_REQ', {
        vol_name: clone,
        snap_name_src: snap,
        vol_num: 1,
      })
    ).retcode,
  ).toBe(0);
  expect(
    (await call(d.info.controlSocket, 'MAP_VOLUME_REQ', { vol_name: clone, host_id: d.info.hostId })).retcode,
  ).toBe(0);
  const device = sdsCli(d.info.kvSocket, ['-c', 'attach', '-v', clone]).values.get('dev_addr')!;
  const dir = join(root, clone);
  mkdirSync(dir, { recursive: true });
  // noload: the frozen file system's journal is clean; a crash-consistent one would need replay (ro cannot).
  sh('mount', ['-o', 'ro,noload', device, dir]);
  try {
    return existsSync(join(dir, file)) ? readFileSync(join(dir, file), 'utf8') : undefined;
  } finally {
    sh('umount', [dir]);
    sdsCli(d.info.kvSocket, ['-c', 'detach', '-v', clone]);
    await call(d.info.controlSocket, 'DELETE_VOLUME_REQ', { vol_name: clone });
  }
}

describe('emulator group snapshots', () => {
  let d: Daemon;
  let sock: string;
  let mnt: string;

  daemonForSuite({ args: ['--pool', 'pool0:2G', '--pool', 'pool1:1G'] }, (started) => {
    d = started;
    sock = started.info.controlSocket;
  });
  beforeAll(async () => {
    mnt = join(d.dir, 'mnt');
    mkdirSync(mnt);
  });

  it('advertises group_snapshot and extent_map', async () => {
    const caps = (await call(sock, 'QUERY_CAPABILITY_REQ')).fields.getAll('capability');
    expect(caps).toEqual(expect.arrayContaining(['group_snapshot', 'extent_map']));
  });

  it('cuts mounted members through frozen file systems: data not yet synced is in the snapshots', async () => {
    const vols = await mountedVolumes(d, mnt, ['ga', 'gb', 'gc']);
    try {
      // Written without fsync: only the freeze (which syncs the file system) puts it on the device.
      for (const [name, v] of vols) writeFileSync(join(v.dir, 'payload'), `data of ${name}\n`);
      const a = await call(sock, 'CREATE_GROUP_SNAPSHOT_REQ', { group_name: 'grp1', vol_name: ['gc', 'ga', 'gb'] });
      expect(a.retcode, a.text).toBe(0);
      expect(a.record('group0')).toMatchObject({
        status: '1',
        group_name: 'grp1',
        pool_id: 'pool0',
        snap_num: '3',
        vol_names: 'ga:gb:gc',
        quiesce: 'freeze',
        frozen_num: '3',
        health: 'ok',
      });
      expect(a.get('snap_num')).toBe('3');
      const members = [0, 1, 2].map((i) => a.record(`snapshot${i}`));
      expect(members.map((m) => m.vol_name)).toEqual(['ga', 'gb', 'gc']);
      for (const m of members) {
        expect(m).toMatchObject({ status: '1', group_name: 'grp1' });
        expect(m.snap_name!.length).toBeLessThanOrEqual(96);
        expect(m.snap_name).toMatch(/^grp1_[0-9a-f]{24}$/);
        expect(existsSync(snapshotPath(d, m.snap_name!))).toBe(true);
      }
      // Everything is thawed afterwards.
      for (const v of vols.values()) expect(frozen(v.dir)).toBe(false);
      for (const m of members)
        expect(await readFromSnapshot(d, mnt, m.snap_name!, 'payload')).toBe(`data of ${m.vol_name}\n`);
      // Members are ordinary snapshots otherwise: queried and listed with their group.
      const q = await call(sock, 'QUERY_SNAPSHOT_REQ', { snap_name: members[0]!.snap_name });
      expect(q.record('snapshot0').group_name).toBe('grp1');
    } finally {
      await unmountAll(d, vols);
    }
  });

  it('is idempotent by name: the same name answers -900011 with the existing group and members', async () => {
    const again = await call(sock, 'CREATE_GROUP_SNAPSHOT_REQ', { group_name: 'grp1', vol_name: ['ga', 'gb', 'gc'] });
    expect(again.retcode).toBe(-900011);
    expect(again.record('group0')).toMatchObject({ group_name: 'grp1', vol_names: 'ga:gb:gc' });
    expect(again.get('snap_num')).toBe('3');
    const other = await call(sock, 'CREATE_GROUP_SNAPSHOT_REQ', { group_name: 'grp1', vol_name: ['ga'] });
    expect(other.retcode).toBe(-900011);
    expect(other.record('group0').vol_names).toBe('ga:gb:gc');
    const q = await call(sock, 'QUERY_GROUP_SNAPSHOT_REQ', { group_name: 'grp1' });
    expect(q.retcode).toBe(0);
    expect(q.record('group0').snap_num).toBe('3');
  });

  it('refuses to delete a member alone (-900022) and deletes the whole group', async () => {
    const q = await call(sock, 'QUERY_GROUP_SNAPSHOT_REQ', { group_name: 'grp1' });
    const names = [0, 1, 2].map((i) => q.record(`snapshot${i}`).snap_name);
    const alone = await call(sock, 'DELETE_SNAPSHOT_REQ', { snap_name: names[0]! });
    expect(alone.retcode).toBe(-900022);
    expect(alone.get('ret_desc')).toMatch(/group snapshot grp1/);
    expect((await call(sock, 'DELETE_GROUP_SNAPSHOT_REQ', { group_name: 'grp1' })).retcode).toBe(0);
    await waitGone(sock, 'QUERY_SNAPSHOT_REQ', { snap_name: names[2]! });
    const deadline = Date.now() + 10_000;
    while ((await call(sock, 'QUERY_GROUP_SNAPSHOT_REQ', { group_name: 'grp1' })).retcode !== -900079) {
      if (Date.now() > deadline) throw new Error('group not gone');
      await sleep(5);
    }
    for (const n of names) expect(existsSync(snapshotPath(d, n!))).toBe(false);
    expect((await call(sock, 'DELETE_GROUP_SNAPSHOT_REQ', { group_name: 'grp1' })).retcode).toBe(-900079);
  });

  it.each([
    [{ group_name: 'g-bad' }, -900003, /vol_name: at least one/],
    [{ group_name: 'g-bad', vol_name: ['ga', 'ga'] }, -900003, /listed twice/],
    [{ group_name: 'g-bad', vol_name: ['ga', 'nope'] }, -900079, /volume nope/],
    [{ group_name: '.g', vol_name: ['ga'] }, -900003, /group_name/],
    [{ group_name: 'g-bad', vol_name: ['ga'], quiesce: 'sleep' }, -900003, /quiesce/],
    [{ group_name: 'g-bad', vol_name: ['ga'], freeze_timeout_ms: 5 }, -900003, /freeze_timeout_ms/],
    [{ group_name: 'g-bad', vol_name: Array.from({ length: 129 }, (_, i) => `v${i}`) }, -900003, /at most 128/],
  ])('refuses %j with %i', async (fields, code, desc) => {
    const a = await call(sock, 'CREATE_GROUP_SNAPSHOT_REQ', fields as Record<string, string | string[]>);
    expect(a.retcode).toBe(code);
    expect(a.get('ret_desc')).toMatch(desc);
    expect((await call(sock, 'QUERY_GROUP_SNAPSHOT_REQ', { group_name: 'g-bad' })).retcode).toBe(-900079);
  });

  it('refuses members in several pools (-900015) and leaves nothing', async () => {
    expect(
      (await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'other-pool', vol_size: 16, pool_id: 'pool1' })).retcode,
    ).toBe(0);
    const a = await call(sock, 'CREATE_GROUP_SNAPSHOT_REQ', { group_name: 'g-pools', vol_name: ['ga', 'other-pool'] });
    expect(a.retcode).toBe(-900015);
    expect(a.get('ret_desc')).toMatch(/ga in pool0, other-pool in pool1/);
    expect((await call(sock, 'LIST_SNAPSHOTS_REQ', { vol_name: 'ga' })).get('snap_num')).toBe('0');
  });

  it('leaves a file system someone else froze frozen and answers -900013, with nothing kept', async () => {
    const vols = await mountedVolumes(d, mnt, ['fz']);
    const dir = vols.get('fz')!.dir;
    try {
      sh('fsfreeze', ['-f', dir]);
      const a = await call(sock, 'CREATE_GROUP_SNAPSHOT_REQ', { group_name: 'g-frozen', vol_name: ['fz', 'ga'] });
      expect(a.retcode).toBe(-900013);
      expect(a.get('ret_desc')).toMatch(/already frozen by someone else/);
      // Still frozen: thawing it (ours to do) succeeds, a second thaw finds it thawed.
      expect(spawnSync('fsfreeze', ['-u', dir]).status).toBe(0);
      expect(spawnSync('fsfreeze', ['-u', dir]).status).not.toBe(0);
      expect((await call(sock, 'QUERY_GROUP_SNAPSHOT_REQ', { group_name: 'g-frozen' })).retcode).toBe(-900079);
      expect((await call(sock, 'LIST_SNAPSHOTS_REQ', { vol_name: 'fz' })).get('snap_num')).toBe('0');
      // quiesce=flush does not freeze (frozen_num 0) and still cuts.
      const flushed = await call(sock, 'CREATE_GROUP_SNAPSHOT_REQ', {
        group_name: 'g-flush',
        vol_name: ['fz', 'ga'],
        quiesce: 'flush',
      });
      expect(flushed.retcode, flushed.text).toBe(0);
      expect(flushed.record('group0')).toMatchObject({ quiesce: 'flush', frozen_num: '0', snap_num: '2' });
      expect((await call(sock, 'DELETE_GROUP_SNAPSHOT_REQ', { group_name: 'g-flush' })).retcode).toBe(0);
    } finally {
      await unmountAll(d, vols);
    }
  });

  it('cleans up every member when one member fails half-way (its file vanished): -900030, nothing kept', async () => {
    for (const n of ['pf-a', 'pf-b', 'pf-c'])
      expect((await call(sock, 'CREATE_VOLUME_REQ', { vol_name: n, vol_size: 16 })).retcode).toBe(0);
    // The last member's file goes missing behind the VBS's back: the first two reflinks succeed, the third fails.
    unlinkSync(join(d.dataDir, 'pools', 'pool0', 'volumes', 'pf-c'));
    const a = await call(sock, 'CREATE_GROUP_SNAPSHOT_REQ', {
      group_name: 'g-partial',
      vol_name: ['pf-a', 'pf-b', 'pf-c'],
    });
    expect(a.retcode).toBe(-900030);
    expect(a.get('ret_desc')).toMatch(/group snapshot g-partial/);
    expect((await call(sock, 'QUERY_GROUP_SNAPSHOT_REQ', { group_name: 'g-partial' })).retcode).toBe(-900079);
    for (const v of ['pf-a', 'pf-b', 'pf-c'])
      expect((await call(sock, 'LIST_SNAPSHOTS_REQ', { vol_name: v })).get('snap_num')).toBe('0');
    expect(readdirSync(join(d.dataDir, 'pools', 'pool0', '.tmp'))).toEqual([]);
    expect(
      readdirSync(join(d.dataDir, 'pools', 'pool0', 'snapshots')).filter((f) => f.startsWith('g-partial')),
    ).toEqual([]);
    for (const n of ['pf-a', 'pf-b', 'pf-c'])
      expect((await call(sock, 'DELETE_VOLUME_REQ', { vol_name: n })).retcode).toBe(0);
  });

  it('thaws when the freeze window closes before the cut is done, and keeps nothing', async () => {
    const vols = await mountedVolumes(d, mnt, ['fw']);
    try {
      // A member whose file holds 131,072 extents: its reflink takes about two seconds here.
      expect((await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'fw-slow', vol_size: 1024 })).retcode).toBe(0);
      const fd = openSync(join(d.dataDir, 'pools', 'pool0', 'volumes', 'fw-slow'), 'r+');
      const block = Buffer.alloc(4096, 0x33);
      for (let off = 0; off < 1024 * MiB; off += 8192) writeSync(fd, block, 0, 4096, off);
      fsyncSync(fd);
      closeSync(fd);
      const a = await call(sock, 'CREATE_GROUP_SNAPSHOT_REQ', {
        group_name: 'g-window',
        vol_name: ['fw', 'fw-slow'],
        freeze_timeout_ms: 1000,
      });
      expect(a.retcode).toBe(-900030);
      expect(a.get('ret_desc')).toMatch(/longer than freeze_timeout_ms=1000; nothing was kept/);
      expect(frozen(vols.get('fw')!.dir)).toBe(false);
      expect(await waitForLog(d, /freeze window closed before the cut was done/)).toBeTruthy();
      expect((await call(sock, 'QUERY_GROUP_SNAPSHOT_REQ', { group_name: 'g-window' })).retcode).toBe(-900079);
      for (const v of ['fw', 'fw-slow'])
        expect((await call(sock, 'LIST_SNAPSHOTS_REQ', { vol_name: v })).get('snap_num')).toBe('0');
      expect(readdirSync(join(d.dataDir, 'pools', 'pool0', '.tmp'))).toEqual([]);
      // Without the freeze (flush only) there is no window, and the same cut completes.
      const flushed = await call(sock, 'CREATE_GROUP_SNAPSHOT_REQ', {
        group_name: 'g-window',
        vol_name: ['fw', 'fw-slow'],
        quiesce: 'flush',
      });
      expect(flushed.retcode, flushed.text).toBe(0);
      expect((await call(sock, 'DELETE_GROUP_SNAPSHOT_REQ', { group_name: 'g-window' })).retcode).toBe(0);
    } finally {
      await unmountAll(d, vols);
    }
  });

  it('answers -900013 to a concurrent cut of the same group name', async () => {
    const both = await Promise.all([
      call(sock, 'CREATE_GROUP_SNAPSHOT_REQ', { group_name: 'g-race', vol_name: ['ga', 'gb'] }),
      call(sock, 'CREATE_GROUP_SNAPSHOT_REQ', { group_name: 'g-race', vol_name: ['ga', 'gb'] }),
    ]);
    const codes = both.map((b) => b.retcode).sort();
    // Either the second one found the first still cutting (busy) or already done (exists).
    expect(codes[1]).toBe(0);
    expect([-900013, -900011]).toContain(codes[0]);
    expect((await call(sock, 'DELETE_GROUP_SNAPSHOT_REQ', { group_name: 'g-race' })).retcode).toBe(0);
  });
});

/** A fresh daemon dir for a recovery test, with the mnt/ its volumes are mounted under. */
function recoveryDirs(): { dir: string; mnt: string } {
  const dir = makeTempDir();
  const mnt = join(dir, 'mnt');
  mkdirSync(mnt);
  return { dir, mnt };
}

describe('emulator group snapshot recovery', () => {
  it('rolls back a group left half-made and thaws the file systems recorded as frozen', async () => {
    const { dir, mnt } = recoveryDirs();
    let d = await startDaemon({ dir, args: ['--pool', 'pool0:1G'] });
    let vols: Map<string, { device: string; dir: string }> | undefined;
    try {
      vols = await mountedVolumes(d, mnt, ['ra', 'rb']);
      const ok = await call(d.info.controlSocket, 'CREATE_GROUP_SNAPSHOT_REQ', {
        group_name: 'kept',
        vol_name: ['ra', 'rb'],
      });
      expect(ok.retcode).toBe(0);
      await d.kill9();
      // The state kill -9 leaves inside the freeze window: the group and its members 'creating', the mount
      // points recorded, the file systems frozen, one member's file already in place.
      const db = openDatabase(join(d.dataDir, 'emulator.db'));
      const frozenDirs = [vols.get('ra')!.dir, vols.get('rb')!.dir];
      const now = Math.floor(Date.now() / 1000);
      const gid = db
        .prepare(
          "INSERT INTO group_snapshots (name, pool, state, vol_names, quiesce, frozen, create_time) VALUES ('half', 'pool0', 'creating', 'ra:rb', 'freeze', ?, ?)",
        )
        .run(JSON.stringify(frozenDirs), now).lastInsertRowid;
      expect(Number(gid)).toBeGreaterThan(0);
      const vol = (name: string) => db.prepare('SELECT id FROM volumes WHERE name = ?').get(name) as { id: number };
      for (const [name, snap] of [
        ['ra', 'half_a'],
        ['rb', 'half_b'],
      ]) {
        db.prepare(
          "INSERT INTO snapshots (name, vol_id, vol_name, pool, size_mb, state, group_name, create_time) VALUES (?, ?, ?, 'pool0', 64, 'creating', 'half', ?)",
        ).run(snap, vol(name!).id, name, now);
      }
      db.close();
      writeFileSync(snapshotPath(d, 'half_a'), Buffer.alloc(64 * MiB));
      for (const f of frozenDirs) sh('fsfreeze', ['-f', f]);
      for (const f of frozenDirs) expect(frozen(f)).toBe(true);

      d = await startDaemon({ dir, args: ['--pool', 'pool0:1G'] });
      for (const f of frozenDirs) expect(frozen(f)).toBe(false);
      expect((await call(d.info.controlSocket, 'QUERY_GROUP_SNAPSHOT_REQ', { group_name: 'half' })).retcode).toBe(
        -900079,
      );
      expect((await call(d.info.controlSocket, 'QUERY_SNAPSHOT_REQ', { snap_name: 'half_a' })).retcode).toBe(-900079);
      expect(existsSync(snapshotPath(d, 'half_a'))).toBe(false);
      // The group that was complete before the crash is intact.
      const kept = await call(d.info.controlSocket, 'QUERY_GROUP_SNAPSHOT_REQ', { group_name: 'kept' });
      expect(kept.record('group0')).toMatchObject({ status: '1', snap_num: '2', health: 'ok' });
      expect(await waitForLog(d, /thawed a file system left frozen/)).toBeTruthy();
      await finishCleanly(d, vols);
      vols = undefined;
    } finally {
      await abandon(d, vols, dir);
    }
  });

  it('kill -9 at random moments of group snapshots: each group is whole or absent, nothing stays frozen', async () => {
    const { dir, mnt } = recoveryDirs();
    let d = await startDaemon({ dir, args: ['--pool', 'pool0:1G'] });
    let vols: Map<string, { device: string; dir: string }> | undefined;
    try {
      // Thousands of extents per volume file make each reflink take a while, so kills land inside the cut.
      vols = await mountedVolumes(d, mnt, ['ka', 'kb', 'kc'], 96, true);
      // One undisturbed cut, to aim the kills across its whole duration (before, inside and after the freeze).
      const t0 = Date.now();
      expect(
        (
          await call(d.info.controlSocket, 'CREATE_GROUP_SNAPSHOT_REQ', {
            group_name: 'timed',
            vol_name: ['ka', 'kb', 'kc'],
          })
        ).retcode,
      ).toBe(0);
      const cutMs = Date.now() - t0;
      expect((await call(d.info.controlSocket, 'DELETE_GROUP_SNAPSHOT_REQ', { group_name: 'timed' })).retcode).toBe(0);
      let seed = 7;
      const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
      const outcomes = { whole: 0, absent: 0 };
      for (let round = 0; round < 6; round++) {
        const name = `k${round}`;
        const pending = call(d.info.controlSocket, 'CREATE_GROUP_SNAPSHOT_REQ', {
          group_name: name,
          vol_name: ['ka', 'kb', 'kc'],
        }).catch(() => undefined);
        await sleep(Math.floor(rand() * cutMs * 1.5));
        await d.kill9();
        await pending;
        d = await startDaemon({ dir, args: ['--pool', 'pool0:1G'] });
        for (const v of vols.values()) expect(frozen(v.dir)).toBe(false);
        const q = await call(d.info.controlSocket, 'QUERY_GROUP_SNAPSHOT_REQ', { group_name: name });
        if (q.retcode === 0) {
          expect(q.record('group0')).toMatchObject({ status: '1', snap_num: '3', health: 'ok' });
          outcomes.whole++;
        } else {
          expect(q.retcode).toBe(-900079);
          outcomes.absent++;
        }
        // No member of an absent group, no member file without its row.
        const listed = await call(d.info.controlSocket, 'LIST_SNAPSHOTS_REQ', { limit: 1000 });
        const snaps = Array.from({ length: Number(listed.get('snap_num')) }, (_, i) => listed.record(`snapshot${i}`));
        for (const s of snaps) expect(s.group_name === '' || (s.status === '1' && s.health === 'ok')).toBe(true);
        expect(snaps.filter((s) => s.group_name === name).length).toBe(q.retcode === 0 ? 3 : 0);
      }
      expect(outcomes.whole + outcomes.absent).toBe(6);
      await finishCleanly(d, vols);
      vols = undefined;
    } finally {
      await abandon(d, vols, dir);
    }
  });
});
