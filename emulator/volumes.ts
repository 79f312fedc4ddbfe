// Volumes: create (thin or thick), clone (from a snapshot or a volume, linked or full), extend, modify,
// delete. Each keeps the order of file work and commits that reconcile.ts relies on (emulator/README.md).
import { Key } from '../src/protocol/catalog.js';
import { renameSync, statSync, unlinkSync } from 'node:fs';
import { RetCode, type Field } from '../src/protocol/vbs.js';
import { nowSeconds, poolOf, usablePool, type Ctx } from './context.js';
import { busy, fromIoError, notExist, VbsError } from './errors.js';
import {
  createSparseSync,
  removeQuietly,
  renameDurably,
  growSync,
  MiB,
  preallocate,
  reflink,
  sparseCopy,
  allocatedBytes,
} from './files.js';
import { volKey, snapKey } from './locks.js';
import { flushDevice, refreshCapacity, setDirectIo } from './loopdev.js';
import type { Params } from './params.js';
import type { Pool } from './pools.js';
import { checkCapacity, reserve, waitOutAllocations } from './capacity.js';
import { field, volumeRecord } from './records.js';
import type { NewVolume, VolumeRow } from './store.js';

export {
  CACHE_POLICIES,
  parseCreateSpec,
  parseQos,
  type CachePolicy,
  type CreateSpec,
  type QosSpec,
} from './volume-spec.js';
import { parseCreateSpec, type CachePolicy, type CreateSpec } from './volume-spec.js';

export function volumeField(ctx: Ctx, row: VolumeRow, allocBytes?: number): Field {
  return field('volume0', volumeRecord(ctx, row, { allocBytes }));
}

/** Refuses a name in use: BUSY while its volume is being made, changed or deleted, else ALREADY_EXISTS. */
export function checkVolumeNameFree(ctx: Ctx, name: string): void {
  const holder = ctx.locks.holder(volKey(name));
  const row = ctx.store.volume(name);
  if (!row) {
    if (holder) throw busy(`volume ${name}`, holder);
    return;
  }
  if (row.state === 'creating' || row.state === 'extending' || row.state === 'deleting' || holder) {
    throw busy(`volume ${name}`, holder ?? row.state);
  }
  throw new VbsError(RetCode.ALREADY_EXISTS, `${Key.VOL_NAME}: volume ${name} already exists`, [volumeField(ctx, row)]);
}

/** A new volume row of `spec`; `extra` says how it is made when not by a plain create. */
export function newVolume(
  spec: CreateSpec,
  sizeMb: number,
  state: NewVolume['state'],
  extra: Partial<NewVolume>,
): NewVolume {
  return {
    name: spec.name,
    pool: spec.pool.name,
    size_mb: sizeMb,
    thin: spec.thin ? 1 : 0,
    state,
    op: 'create',
    src_type: 'none',
    src_name: '',
    src_id: null,
    clone_type: '',
    max_iops: spec.maxIops,
    max_mbps: spec.maxMbps,
    io_priority: spec.ioPriority,
    io_class_id: spec.ioClassId,
    cache_policy: spec.cachePolicy,
    create_time: nowSeconds(),
    job_id: null,
    ...extra,
  };
}

/** A clone's source row: it must exist, not be in one of `busyStates` (BUSY), nor be faulty (INTERNAL). */
function cloneable<R extends { state: string; fault_reason: string }>(
  row: R | undefined,
  what: string,
  busyStates: readonly string[],
): R {
  if (!row) throw notExist(what);
  if (busyStates.includes(row.state)) throw busy(what, row.state);
  if (row.state === 'fault') throw new VbsError(RetCode.INTERNAL, `${what} is faulty: ${row.fault_reason}`);
  return row;
}

/** Runs `fn`; when it throws, undoes what was taken before it (locks, reservations) and rethrows. */
export function orUndo<T>(fn: () => T, ...undo: Array<() => void>): T {
  try {
    return fn();
  } catch (err) {
    for (const u of undo) u();
    throw err;
  }
}

export function takeLocks(ctx: Ctx, keys: string[], op: string): () => void {
  const holder = ctx.locks.tryTake(keys, op);
  if (holder !== undefined) throw busy(keys.map((k) => k.replace(':', ' ')).join(' / '), holder);
  return () => ctx.locks.release(keys);
}

export async function createVolume(ctx: Ctx, spec: CreateSpec): Promise<VolumeRow> {
  const sizeMb = spec.sizeMb!;
  let pool: Pool;
  for (;;) {
    checkVolumeNameFree(ctx, spec.name);
    pool = usablePool(ctx, spec.pool.name);
    try {
      checkCapacity(ctx, pool, sizeMb, spec.thin ? 0 : sizeMb * MiB);
      break;
    } catch (err) {
      if (spec.thin) throw err;
      await waitOutAllocations(ctx, pool.name, err);
    }
  }
  const path = pool.volumePath(spec.name);
  if (spec.thin) {
    // The hot path: the row and the sparse file in one transaction, no fsync. The commit happens only after
    // the file exists, so a crash leaves at worst a file without a row, which reconcile removes.
    let madeFile = false;
    try {
      const id = ctx.store.tx(() => {
        const newId = ctx.store.insertVolume(newVolume(spec, sizeMb, 'available', {}));
        createSparseSync(path, sizeMb * MiB);
        madeFile = true;
        return newId;
      });
      return ctx.store.volumeById(id)!;
    } catch (err) {
      if (madeFile)
        try {
          unlinkSync(path);
        } catch {
          /* reconcile removes it */
        }
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new VbsError(
          RetCode.INTERNAL,
          `volume file of ${spec.name} exists without metadata; restart the emulator to reconcile`,
        );
      }
      throw fromIoError(err, `create volume ${spec.name}`);
    }
  }
  // Thick: preallocation takes a while, so the name is reserved by a 'creating' row first and the file is
  // built under .tmp/ and renamed into place when complete.
  const release = takeLocks(ctx, [volKey(spec.name)], 'create');
  const id = orUndo(() => ctx.store.insertVolume(newVolume(spec, sizeMb, 'creating', {})), release);
  const tmp = pool.tmpPath(`vol-${id}`);
  // Taken in the same step as the check above (no await in between), so concurrent creates see it.
  const unreserve = reserve(ctx, pool.name, sizeMb * MiB, tmp);
  try {
    createSparseSync(tmp, sizeMb * MiB);
    await preallocate(tmp, 0, sizeMb * MiB);
    renameSync(tmp, path);
    ctx.store.setVolumeState(id, 'available');
    return ctx.store.volumeById(id)!;
  } catch (err) {
    await removeQuietly(tmp);
    ctx.store.deleteVolume(id);
    throw fromIoError(err, `create volume ${spec.name}`);
  } finally {
    unreserve();
    release();
  }
}

export type CloneSource = { type: 'snapshot'; name: string } | { type: 'volume'; name: string };

/**
 * A volume made from a snapshot or another volume: a reflink (linked clone) or an independent sparse copy
 * (full). Returns when the clone is complete; meanwhile the target answers BUSY.
 */
export async function cloneVolume(
  ctx: Ctx,
  p: Params,
  source: CloneSource,
  cloneType: 'linked' | 'full',
  smallerCode: number,
): Promise<VolumeRow> {
  let srcPath: string;
  let srcSizeMb: number;
  let srcId: number;
  let srcPool: string;
  let attachedDevice: string | undefined;
  const srcKey = source.type === 'snapshot' ? snapKey(source.name) : volKey(source.name);
  if (source.type === 'snapshot') {
    const snap = cloneable(ctx.store.snapshot(source.name), `snapshot ${source.name}`, ['creating', 'deleting']);
    srcPool = snap.pool;
    srcSizeMb = snap.size_mb;
    srcId = snap.id;
    srcPath = poolOf(ctx, snap.pool).snapshotPath(snap.name);
  } else {
    const vol = cloneable(ctx.store.volume(source.name), `volume ${source.name}`, [
      'creating',
      'extending',
      'deleting',
    ]);
    srcPool = vol.pool;
    srcSizeMb = vol.size_mb;
    srcId = vol.id;
    srcPath = poolOf(ctx, vol.pool).volumePath(vol.name);
    const att = ctx.store.attachment(vol.id);
    if (att?.state === 'attached') attachedDevice = att.device;
  }
  const spec = parseCreateSpec(ctx, p, false, srcPool);
  const sizeMb = spec.sizeMb ?? srcSizeMb;
  if (sizeMb < srcSizeMb)
    throw new VbsError(smallerCode, `${Key.VOL_SIZE}: ${sizeMb} MiB is smaller than the source's ${srcSizeMb} MiB`);
  const pool = usablePool(ctx, srcPool);
  if (cloneType === 'linked' && !pool.linkedClone) {
    throw new VbsError(
      RetCode.NOT_SUPPORTED,
      `${Key.CLONE_TYPE}: pool ${pool.name} (${pool.kind}) cannot make linked clones; use clone_type=full`,
    );
  }
  checkVolumeNameFree(ctx, spec.name);
  const copyBytes = cloneType === 'full' ? allocatedBytes(srcPath) : 0;
  const needBytes = spec.thin ? copyBytes : Math.max(copyBytes, sizeMb * MiB);
  checkCapacity(ctx, pool, sizeMb, needBytes);

  const release = takeLocks(ctx, [volKey(spec.name), srcKey], cloneType === 'linked' ? 'linked clone' : 'full copy');
  const id = orUndo(
    () =>
      ctx.store.insertVolume(
        newVolume(spec, sizeMb, 'creating', {
          op: 'clone',
          src_type: source.type,
          src_name: source.name,
          src_id: srcId,
          clone_type: cloneType,
        }),
      ),
    release,
  );
  const tmp = pool.tmpPath(`vol-${id}`);
  const unreserve = reserve(ctx, pool.name, needBytes, tmp);
  const path = pool.volumePath(spec.name);
  try {
    // A volume in use is flushed first, so the clone holds everything written before the request.
    if (attachedDevice) flushDevice(attachedDevice);
    if (cloneType === 'linked') await reflink(srcPath, tmp);
    else await sparseCopy(srcPath, tmp);
    if (sizeMb > srcSizeMb) growSync(tmp, sizeMb * MiB);
    if (!spec.thin) await preallocate(tmp, 0, sizeMb * MiB);
    // The clone carries data: make it durable before it becomes visible (not on the create hot path).
    renameDurably(tmp, path, pool.volumesDir);
    ctx.store.setVolumeState(id, 'available');
    return ctx.store.volumeById(id)!;
  } catch (err) {
    await removeQuietly(tmp);
    ctx.store.deleteVolume(id);
    throw fromIoError(err, `clone ${source.type} ${source.name} to ${spec.name}`);
  } finally {
    unreserve();
    release();
  }
}

/**
 * Files with at most this much allocated are unlinked inline, in the request: their unlink frees few extents
 * and takes microseconds. Bigger ones go to the background deleter, whose thread-pool unlink never holds up
 * the event loop, however many extents the file system must free.
 */
const INLINE_UNLINK_MAX_BYTES = 16 * MiB;

/** Whether `path` is missing or holds little enough to unlink inline; any doubt (an error) says no. */
function unlinkableInline(path: string): boolean {
  try {
    const st = statSync(path, { throwIfNoEntry: false });
    return st === undefined || st.blocks * 512 <= INLINE_UNLINK_MAX_BYTES;
  } catch {
    return false;
  }
}

/**
 * Accepts a delete. An empty-enough volume file (the usual thin volume) in a healthy pool is deleted at once
 * (a faulty pool's file system may hang: the thread pool's unlink does not stop the event loop): its row is dropped
 * in one commit, then its file is unlinked, and the answer is `true`. A crash between the two leaves a file
 * without a row, which reconcile removes, as after a create's crash (emulator/README.md). Otherwise 'deleting'
 * is committed and the file and row go in the background; the promise tells when that is done (true) or
 * failed (false).
 */
export function deleteVolume(ctx: Ctx, name: string): true | Promise<boolean> {
  const row = ctx.store.volume(name);
  if (!row) throw notExist(`volume ${name}`);
  if (row.state === 'deleting') return Promise.resolve(false);
  const holder = ctx.locks.holder(volKey(name));
  if (holder || row.state === 'creating' || row.state === 'extending')
    throw busy(`volume ${name}`, holder ?? row.state);
  const att = ctx.store.attachment(row.id);
  if (att) {
    throw new VbsError(
      RetCode.ATTACHED,
      `${Key.VOL_NAME}: volume ${name} is attached on host ${att.host_id}${att.device ? ` as ${att.device}` : ''}; detach it first`,
    );
  }
  const pool = ctx.pools.get(row.pool);
  const path = pool ? pool.volumePath(name) : undefined;
  if (pool?.healthy && path !== undefined && unlinkableInline(path)) {
    ctx.store.tx(() => ctx.store.deleteVolume(row.id));
    try {
      unlinkSync(path);
    } catch (err) {
      // The row is gone: the file is an orphan now, removed by the next start's reconcile.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        ctx.log.error({ err, volume: name, file: path }, 'cannot unlink a deleted volume file; removed at restart');
    }
    return true;
  }
  ctx.store.tx(() => {
    ctx.store.setVolumeState(row.id, 'deleting');
    ctx.store.deleteMappingsOf(row.id);
  });
  return ctx.deleter.enqueue({ kind: 'volume', id: row.id, name, path });
}

export async function extendVolume(ctx: Ctx, name: string, newMb: number): Promise<VolumeRow> {
  const row = ctx.store.volume(name);
  if (!row) throw notExist(`volume ${name}`);
  const holder = ctx.locks.holder(volKey(name));
  if (holder || row.state === 'creating' || row.state === 'extending' || row.state === 'deleting') {
    throw busy(`volume ${name}`, holder ?? row.state);
  }
  if (row.state === 'fault') throw new VbsError(RetCode.INTERNAL, `volume ${name} is faulty: ${row.fault_reason}`);
  if (newMb < row.size_mb)
    throw new VbsError(
      RetCode.CANNOT_SHRINK,
      `${Key.VOL_SIZE}: ${newMb} MiB is smaller than the current ${row.size_mb} MiB`,
    );
  if (newMb === row.size_mb) return row;
  const pool = usablePool(ctx, row.pool);
  const deltaMb = newMb - row.size_mb;
  checkCapacity(ctx, pool, deltaMb, row.thin ? 0 : deltaMb * MiB);
  const release = takeLocks(ctx, [volKey(name)], 'extend');
  const path = pool.volumePath(name);
  const unreserve = reserve(ctx, pool.name, row.thin ? 0 : deltaMb * MiB, path);
  // The target size is committed before the file grows: a crash in between is finished by reconcile.
  orUndo(() => ctx.store.beginExtend(row.id, newMb), unreserve, release);
  try {
    growSync(path, newMb * MiB);
    if (!row.thin) await preallocate(path, row.size_mb * MiB, deltaMb * MiB);
    const att = ctx.store.attachment(row.id);
    if (att?.state === 'attached') await refreshCapacity(att.device);
    ctx.store.finishExtend(row.id);
    return ctx.store.volumeById(row.id)!;
  } catch (err) {
    ctx.store.abortExtend(row.id);
    throw fromIoError(err, `extend volume ${name}`);
  } finally {
    unreserve();
    release();
  }
}

export interface QosChange {
  maxIops?: number;
  maxMbps?: number;
  ioPriority?: number;
  cachePolicy?: CachePolicy;
}

export async function modifyVolume(ctx: Ctx, name: string, change: QosChange): Promise<VolumeRow> {
  const row = ctx.store.volume(name);
  if (!row) throw notExist(`volume ${name}`);
  const holder = ctx.locks.holder(volKey(name));
  if (holder || row.state === 'creating' || row.state === 'deleting') throw busy(`volume ${name}`, holder ?? row.state);
  const next = {
    max_iops: change.maxIops ?? row.max_iops,
    max_mbps: change.maxMbps ?? row.max_mbps,
    io_priority: change.ioPriority ?? row.io_priority,
    cache_policy: change.cachePolicy ?? row.cache_policy,
  };
  ctx.store.setQos(row.id, next);
  const att = ctx.store.attachment(row.id);
  if (att?.state === 'attached') {
    ctx.qos.apply(att.dev_major, att.dev_minor, { maxIops: next.max_iops, maxMbps: next.max_mbps });
    if (next.cache_policy !== row.cache_policy && (next.cache_policy === 'none') !== (row.cache_policy === 'none')) {
      await setDirectIo(att.device, next.cache_policy === 'none').catch((err: unknown) => {
        ctx.log.warn({ err, device: att.device }, 'cannot change direct I/O of the device');
      });
    }
  }
  return ctx.store.volumeById(row.id)!;
}
