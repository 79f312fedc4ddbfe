// Snapshots: a reflink copy of the volume file (a sparse full copy on a directory pool), taken after the
// volume's block device is flushed, so the snapshot is crash-consistent.
import { Key } from '../src/protocol/catalog.js';
import { RetCode, type Field } from '../src/protocol/vbs.js';
import { nowSeconds, usablePool, type Ctx } from './context.js';
import { busy, fromIoError, notExist, VbsError } from './errors.js';
import { allocatedBytes, MiB, reflink, removeQuietly, renameDurably, sparseCopy } from './files.js';
import { snapKey, volKey } from './locks.js';
import { flushDevice } from './loopdev.js';
import { field, snapshotRecord } from './records.js';
import type { SnapshotRow } from './store.js';
import { checkCapacity } from './capacity.js';
import { orUndo, takeLocks } from './volumes.js';

export function snapshotField(ctx: Ctx, row: SnapshotRow): Field {
  return field('snapshot0', snapshotRecord(ctx, row));
}

export async function createSnapshot(ctx: Ctx, name: string, volName: string): Promise<SnapshotRow> {
  const existing = ctx.store.snapshot(name);
  const holder = ctx.locks.holder(snapKey(name));
  if (existing) {
    if (holder || existing.state === 'creating' || existing.state === 'deleting')
      throw busy(`snapshot ${name}`, holder ?? existing.state);
    throw new VbsError(RetCode.ALREADY_EXISTS, `${Key.SNAP_NAME}: snapshot ${name} already exists`, [
      snapshotField(ctx, existing),
    ]);
  }
  if (holder) throw busy(`snapshot ${name}`, holder);
  const vol = ctx.store.volume(volName);
  if (!vol) throw notExist(`volume ${volName}`);
  if (vol.state === 'creating' || vol.state === 'extending' || vol.state === 'deleting')
    throw busy(`volume ${volName}`, vol.state);
  if (vol.state === 'fault') throw new VbsError(RetCode.INTERNAL, `volume ${volName} is faulty: ${vol.fault_reason}`);
  const pool = usablePool(ctx, vol.pool);
  const src = pool.volumePath(vol.name);
  // A directory pool copies the data: it needs the space now.
  if (!pool.linkedClone) checkCapacity(ctx, pool, 0, allocatedBytes(src));
  const release = takeLocks(ctx, [snapKey(name), volKey(volName)], 'snapshot');
  const id = orUndo(
    () =>
      ctx.store.insertSnapshot({
        name,
        vol_id: vol.id,
        vol_name: vol.name,
        pool: pool.name,
        size_mb: vol.size_mb,
        state: 'creating',
        create_time: nowSeconds(),
      }),
    release,
  );
  const tmp = pool.tmpPath(`snap-${id}`);
  try {
    const att = ctx.store.attachment(vol.id);
    if (att?.state === 'attached') flushDevice(att.device);
    if (pool.linkedClone) await reflink(src, tmp);
    else await sparseCopy(src, tmp);
    renameDurably(tmp, pool.snapshotPath(name), pool.snapshotsDir);
    ctx.store.setSnapshotState(id, 'available');
    return ctx.store.snapshot(name)!;
  } catch (err) {
    await removeQuietly(tmp);
    ctx.store.deleteSnapshot(id);
    throw fromIoError(err, `snapshot ${volName} as ${name}`);
  } finally {
    release();
  }
}

/** Accepts a delete; the promise tells when it is done (true) or failed (false). */
export function deleteSnapshot(ctx: Ctx, name: string): Promise<boolean> {
  const row = ctx.store.snapshot(name);
  if (!row) throw notExist(`snapshot ${name}`);
  if (row.state === 'deleting') return Promise.resolve(false);
  if (row.group_name !== '' && ctx.store.group(row.group_name)) {
    throw new VbsError(
      RetCode.GROUP_MEMBER,
      `${Key.SNAP_NAME}: snapshot ${name} belongs to group snapshot ${row.group_name}; delete the group instead`,
    );
  }
  const holder = ctx.locks.holder(snapKey(name));
  if (holder || row.state === 'creating') throw busy(`snapshot ${name}`, holder ?? row.state);
  ctx.store.setSnapshotState(row.id, 'deleting');
  const pool = ctx.pools.get(row.pool);
  return ctx.deleter.enqueue({ kind: 'snapshot', id: row.id, name, path: pool ? pool.snapshotPath(name) : undefined });
}

/** A snapshot whose file may be read now (extent maps): cut, not being deleted, healthy. */
export function readableSnapshot(
  ctx: Ctx,
  name: string,
  key: string,
): { row: SnapshotRow; path: string; sizeBytes: number } {
  const row = ctx.store.snapshot(name);
  if (!row || row.state === 'deleting') throw notExist(`${key}: snapshot ${name}`);
  if (row.state === 'creating') throw busy(`snapshot ${name}`, 'create');
  if (row.state === 'fault') throw new VbsError(RetCode.INTERNAL, `snapshot ${name} is faulty: ${row.fault_reason}`);
  const pool = usablePool(ctx, row.pool);
  return { row, path: pool.snapshotPath(name), sizeBytes: row.size_mb * MiB };
}
