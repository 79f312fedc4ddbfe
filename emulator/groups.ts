// Group snapshots: the members of a group are cut at one point in time. The file systems mounted from the
// members' devices on this host are frozen, every device is flushed, every volume file is reflinked, and
// everything is thawed again — within a bounded window, on every path. A group is all or nothing: the group
// row and its member rows are committed 'creating' first and become 'available' in one transaction once
// every member file is in place; any failure (or a restart, see reconcile.ts) removes them all.
import { Key } from '../src/protocol/catalog.js';
import { createHash } from 'node:crypto';
import { promises as fsp, renameSync } from 'node:fs';
import { RetCode, type Field } from '../src/protocol/vbs.js';
import { nowSeconds, usablePool, type Ctx } from './context.js';
import { busy, fromIoError, invalid, notExist, VbsError } from './errors.js';
import { fsyncPath, reflink } from './files.js';
import { FreezeError, mountPointsOf } from './freeze.js';
import { snapKey, volKey } from './locks.js';
import type { Params } from './params.js';
import { field, groupRecord, snapshotRecord } from './records.js';
import type { GroupRow, Quiesce, SnapshotRow, VolumeRow } from './store.js';
import { takeLocks } from './volumes.js';

export const MAX_GROUP_MEMBERS = 128;
export const DEFAULT_FREEZE_TIMEOUT_MS = 10_000;
const QUIESCE_MODES: readonly Quiesce[] = ['freeze', 'flush'];

export const groupKey = (name: string): string => `group:${name}`;

/**
 * The member snapshot's name: derived from the group and the volume, so a repeated request makes the same
 * names; at most 60 + 1 + 24 = 85 characters, a valid name because the group name is one.
 */
export function memberSnapshotName(groupName: string, volName: string): string {
  const digest = createHash('sha256').update(`${groupName}\0${volName}`, 'utf8').digest('hex').slice(0, 24);
  return `${groupName.slice(0, 60)}_${digest}`;
}

export interface GroupSpec {
  name: string;
  volNames: string[];
  quiesce: Quiesce;
  freezeTimeoutMs: number;
}

export function parseGroupSpec(p: Params): GroupSpec {
  const name = p.name(Key.GROUP_NAME);
  const raw = p.fields
    .getAll(Key.VOL_NAME)
    .map((v) => v.trim())
    .filter((v) => v !== '');
  if (raw.length === 0) throw invalid(Key.VOL_NAME, 'at least one member volume is required');
  if (raw.length > MAX_GROUP_MEMBERS)
    throw invalid(Key.VOL_NAME, `at most ${MAX_GROUP_MEMBERS} member volumes are allowed, ${raw.length} given`);
  const seen = new Set<string>();
  for (const v of raw) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$/.test(v)) {
      throw invalid(
        Key.VOL_NAME,
        `${JSON.stringify(v.slice(0, 100))} must be 1-96 characters of [A-Za-z0-9_.-] starting with a letter or digit`,
      );
    }
    if (seen.has(v)) throw invalid(Key.VOL_NAME, `volume ${v} is listed twice`);
    seen.add(v);
  }
  return {
    name,
    volNames: [...seen].sort(),
    quiesce: p.oneOf(Key.QUIESCE, QUIESCE_MODES, 'freeze'),
    freezeTimeoutMs: p.int(Key.FREEZE_TIMEOUT_MS, 1000, 60_000, DEFAULT_FREEZE_TIMEOUT_MS),
  };
}

/** The reply fields of a group: group0, snap_num and its members. */
export function groupFields(ctx: Ctx, group: GroupRow): Field[] {
  const members = ctx.store.groupMembers(group.name);
  return [
    field('group0', groupRecord(ctx, group, members)),
    [Key.SNAP_NUM, String(members.length)],
    ...members.map((m, i) => field(`snapshot${i}`, snapshotRecord(ctx, m))),
  ];
}

export function queryGroup(ctx: Ctx, name: string): GroupRow {
  const row = ctx.store.group(name);
  if (!row) throw notExist(`group snapshot ${name}`);
  return row;
}

/** The volumes of a new group, checked: they exist, are idle and share one pool that can reflink. */
function memberVolumes(ctx: Ctx, spec: GroupSpec): VolumeRow[] {
  const vols = spec.volNames.map((name) => {
    const vol = ctx.store.volume(name);
    if (!vol || vol.state === 'deleting') throw notExist(`${Key.VOL_NAME}: volume ${name}`);
    if (vol.state === 'creating' || vol.state === 'extending') throw busy(`member volume ${name}`, vol.state);
    if (vol.state === 'fault')
      throw new VbsError(RetCode.INTERNAL, `member volume ${name} is faulty: ${vol.fault_reason}`);
    const att = ctx.store.attachment(vol.id);
    if (att && att.state !== 'attached')
      throw busy(`member volume ${name}`, att.state === 'attaching' ? 'attach' : 'detach');
    return vol;
  });
  const pools = [...new Set(vols.map((v) => v.pool))];
  if (pools.length > 1) {
    const where = vols.map((v) => `${v.name} in ${v.pool}`).join(', ');
    throw new VbsError(
      RetCode.NOT_SUPPORTED,
      `${Key.VOL_NAME}: the members of a group snapshot must share one pool; ${where}`,
    );
  }
  const pool = usablePool(ctx, pools[0]!);
  if (!pool.linkedClone) {
    throw new VbsError(
      RetCode.NOT_SUPPORTED,
      `${Key.VOL_NAME}: pool ${pool.name} (${pool.kind}) cannot cut group snapshots: its copies are not instant; use an xfs-reflink pool`,
    );
  }
  return vols;
}

/**
 * One cut: freezes file systems within a window of `timeoutMs`. When the window closes before the cut is
 * done, everything is thawed at once and the cut is spoiled (`check` throws); so is a cut whose file
 * systems were thawed from outside (shutdown).
 */
class Cut {
  private ours: string[] = [];
  private expired = false;
  private deadline = Infinity;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ctx: Ctx,
    private readonly timeoutMs: number,
  ) {}

  /** The window opens with the first freeze: a cut that freezes nothing blocks no writer and has no bound. */
  private open(): void {
    if (this.timer) return;
    this.deadline = Date.now() + this.timeoutMs;
    this.timer = setTimeout(() => {
      this.expired = true;
      this.ctx.log.warn(
        { timeoutMs: this.timeoutMs },
        'group snapshot freeze window closed before the cut was done; thawing',
      );
      void this.thaw();
    }, this.timeoutMs);
  }

  async freeze(mountPoint: string): Promise<void> {
    this.check();
    this.open();
    // Recorded before the attempt, so the window's timer thaws it too if it closes meanwhile.
    this.ours.push(mountPoint);
    try {
      await this.ctx.freezer.freeze(mountPoint, this.deadline - Date.now());
    } catch (err) {
      // The freezer thawed what its failed attempt may have frozen (or it was someone else's freeze).
      this.ours = this.ours.filter((mp) => mp !== mountPoint);
      throw err;
    }
    if (this.expired) {
      // The window closed while this freeze ran: the timer's thaw may have come before the freeze took hold.
      await this.ctx.freezer.thaw(mountPoint).catch(() => undefined);
      this.check();
    }
  }

  check(): void {
    if (this.expired)
      throw new FreezeError(`the cut took longer than freeze_timeout_ms=${this.timeoutMs}; nothing was kept`);
    const lost = this.ours.find((mp) => !this.ctx.freezer.frozenNow.includes(mp));
    if (lost !== undefined)
      throw new FreezeError(
        `the file system at ${lost} was thawed during the cut (the VBS is stopping); nothing was kept`,
      );
  }

  get frozenCount(): number {
    return this.ours.length;
  }

  /** Thaws what this cut froze, each mount point once. */
  async thaw(): Promise<void> {
    clearTimeout(this.timer);
    const mine = this.ours.splice(0);
    await Promise.all(mine.map((mp) => this.ctx.freezer.thaw(mp).catch(() => undefined)));
  }
}

export async function createGroupSnapshot(ctx: Ctx, spec: GroupSpec): Promise<GroupRow> {
  const existing = ctx.store.group(spec.name);
  const holder = ctx.locks.holder(groupKey(spec.name));
  if (existing) {
    if (holder || existing.state !== 'available') throw busy(`group snapshot ${spec.name}`, holder ?? existing.state);
    throw new VbsError(
      RetCode.ALREADY_EXISTS,
      `${Key.GROUP_NAME}: group snapshot ${spec.name} already exists`,
      groupFields(ctx, existing),
    );
  }
  if (holder) throw busy(`group snapshot ${spec.name}`, holder);
  const vols = memberVolumes(ctx, spec);
  const pool = usablePool(ctx, vols[0]!.pool);
  const members = vols.map((vol) => ({ vol, snapName: memberSnapshotName(spec.name, vol.name) }));
  for (const m of members) {
    const taken = ctx.store.snapshot(m.snapName);
    if (taken) {
      throw new VbsError(
        RetCode.ALREADY_EXISTS,
        `${Key.GROUP_NAME}: the member name ${m.snapName} (volume ${m.vol.name}) is taken by a snapshot of group "${taken.group_name}"`,
      );
    }
  }
  const release = takeLocks(
    ctx,
    [groupKey(spec.name), ...members.map((m) => volKey(m.vol.name)), ...members.map((m) => snapKey(m.snapName))],
    'group snapshot',
  );
  const created = nowSeconds();
  let groupId: number;
  let rows: Array<{ id: number; vol: VolumeRow; snapName: string; tmp: string; final: string }>;
  try {
    ({ groupId, rows } = ctx.store.tx(() => {
      const id = ctx.store.insertGroup({
        name: spec.name,
        pool: pool.name,
        state: 'creating',
        vol_names: spec.volNames.join(':'),
        quiesce: spec.quiesce,
        create_time: created,
      });
      return {
        groupId: id,
        rows: members.map((m) => {
          const sid = ctx.store.insertSnapshot({
            name: m.snapName,
            vol_id: m.vol.id,
            vol_name: m.vol.name,
            pool: pool.name,
            size_mb: m.vol.size_mb,
            state: 'creating',
            group_name: spec.name,
            create_time: created,
          });
          return {
            id: sid,
            vol: m.vol,
            snapName: m.snapName,
            tmp: pool.tmpPath(`snap-${sid}`),
            final: pool.snapshotPath(m.snapName),
          };
        }),
      };
    }));
  } catch (err) {
    release();
    throw err;
  }
  const log = ctx.log.child({ group: spec.name });
  const renamed: string[] = [];
  try {
    const frozenCount = await cut(ctx, groupId, spec, rows, pool.volumePath.bind(pool), log);
    for (const r of rows) fsyncPath(r.tmp);
    for (const r of rows) {
      renameSync(r.tmp, r.final);
      renamed.push(r.final);
    }
    fsyncPath(pool.snapshotsDir);
    ctx.store.tx(() => {
      for (const r of rows) ctx.store.setSnapshotState(r.id, 'available');
      ctx.store.setGroupFrozenNum(groupId, frozenCount);
      ctx.store.setGroupState(groupId, 'available');
    });
    log.info({ members: rows.length, frozen: frozenCount }, 'group snapshot cut');
    return ctx.store.group(spec.name)!;
  } catch (err) {
    await Promise.all(
      [...rows.map((r) => r.tmp), ...renamed].map((p) => fsp.rm(p, { force: true }).catch(() => undefined)),
    );
    ctx.store.tx(() => {
      for (const r of rows) ctx.store.deleteSnapshot(r.id);
      ctx.store.deleteGroup(groupId, spec.name);
    });
    if (err instanceof FreezeError) {
      throw new VbsError(
        err.frozenElsewhere ? RetCode.BUSY : RetCode.INTERNAL,
        `group snapshot ${spec.name}: ${err.message}`,
      );
    }
    throw fromIoError(err, `group snapshot ${spec.name}`);
  } finally {
    release();
  }
}

/**
 * The cut itself: freeze the members' mounted file systems, flush every attached member's device, reflink
 * every member, thaw. Returns how many file systems were frozen. The mount points are committed before
 * the first freeze so that a restart after kill -9 thaws them (reconcile.ts).
 */
async function cut(
  ctx: Ctx,
  groupId: number,
  spec: GroupSpec,
  rows: Array<{ vol: VolumeRow; tmp: string }>,
  volumePath: (name: string) => string,
  log: Ctx['log'],
): Promise<number> {
  const devices: string[] = [];
  const mountPoints: string[] = [];
  for (const r of rows) {
    const att = ctx.store.attachment(r.vol.id);
    if (att?.state !== 'attached' || !att.device) continue;
    devices.push(att.device);
    if (spec.quiesce !== 'freeze') continue;
    const mounts = mountPointsOf(att.dev_major, att.dev_minor);
    if (mounts.length > 0) mountPoints.push(mounts[0]!);
    else
      log.info({ volume: r.vol.name, device: att.device }, 'member not mounted on this host (raw block): flushed only');
  }
  if (ctx.stopping) throw new VbsError(RetCode.UNAVAILABLE, 'the VBS is shutting down; retry');
  ctx.store.setGroupFrozen(groupId, mountPoints);
  // Logged before the freeze: should this process die now, the operator knows what to thaw (docs/group-snapshots.md).
  if (mountPoints.length > 0)
    log.info({ mountPoints, timeoutMs: spec.freezeTimeoutMs }, 'freezing file systems for a group snapshot');
  const session = new Cut(ctx, spec.freezeTimeoutMs);
  const started = process.hrtime.bigint();
  try {
    for (const mp of mountPoints) await session.freeze(mp);
    session.check();
    // Frozen file systems have written everything to their devices; the flush takes it through the loop
    // device into the volume file, and the reflink shares exactly that. (Off the event loop, so the window's
    // timer can still fire.)
    await Promise.all(devices.map((device) => flushDeviceAsync(device)));
    await Promise.all(rows.map((r) => reflink(volumePath(r.vol.name), r.tmp)));
    session.check();
    return session.frozenCount;
  } finally {
    await session.thaw();
    ctx.store.setGroupFrozen(groupId, []);
    log.debug(
      { windowMs: Number(process.hrtime.bigint() - started) / 1e6, frozen: mountPoints.length },
      'group snapshot freeze window',
    );
  }
}

/** fsync of a block device: the loop driver writes out its page cache and fsyncs the backing file. */
async function flushDeviceAsync(device: string): Promise<void> {
  const fh = await fsp.open(device, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Accepts a delete: the group and its members go 'deleting'; files and rows go in the background. */
export function deleteGroupSnapshot(ctx: Ctx, name: string): void {
  const row = queryGroup(ctx, name);
  if (row.state === 'deleting') return;
  const holder = ctx.locks.holder(groupKey(name));
  if (holder || row.state === 'creating') throw busy(`group snapshot ${name}`, holder ?? row.state);
  const members = ctx.store.groupMembers(name);
  for (const m of members) {
    const h = ctx.locks.holder(snapKey(m.name));
    if (h) throw busy(`member snapshot ${m.name}`, h);
  }
  ctx.store.tx(() => {
    ctx.store.setGroupState(row.id, 'deleting');
    for (const m of members) if (m.state !== 'deleting') ctx.store.setSnapshotState(m.id, 'deleting');
  });
  const pool = ctx.pools.get(row.pool);
  for (const m of members) {
    void ctx.deleter.enqueue({
      kind: 'snapshot',
      id: m.id,
      name: m.name,
      path: pool ? pool.snapshotPath(m.name) : undefined,
    });
  }
  void ctx.deleter.enqueue({ kind: 'group', id: row.id, name, path: undefined });
}

/** The group a snapshot belongs to, when that group still exists. */
export function owningGroup(ctx: Ctx, snap: SnapshotRow): GroupRow | undefined {
  return snap.group_name === '' ? undefined : ctx.store.group(snap.group_name);
}
