// One handler per request type of the socket API (docs/socket-api.md §1.3, §2.6): parse and validate the
// keys, call the operation, build the reply. The operations live in volumes.ts, snapshots.ts, ...
import { Capability, Key, requestTypesOf, Requests, type ProtocolLevel } from '../src/protocol/catalog.js';
import {
  encodeRecord,
  MAX_LIST_LIMIT,
  MAX_REPLY_BYTES,
  MAX_REQUEST_BYTES,
  RetCode,
  type Field,
} from '../src/protocol/vbs.js';
import type { AttachService } from './attach.js';
import type { Ctx } from './context.js';
import { fromIoError, invalid, notExist, VbsError } from './errors.js';
import type { ImageService } from './images.js';
import type { Logger } from './log.js';
import { hostsList, mapVolume, setHostState, unmapVolume, volumeHosts } from './mappings.js';
import type { Params } from './params.js';
import { field, jobRecord, poolRecord, snapshotRecord, volumePageRecords } from './records.js';
import { createSnapshot, deleteSnapshot, readableSnapshot, snapshotField } from './snapshots.js';
import { allocatedPage, BLOCK_SIZE, deltaPage, type ExtentPage } from './extents.js';
import { createGroupSnapshot, deleteGroupSnapshot, groupFields, parseGroupSpec, queryGroup } from './groups.js';
import {
  CACHE_POLICIES,
  cloneVolume,
  type CloneSource,
  createVolume,
  deleteVolume,
  extendVolume,
  modifyVolume,
  parseCreateSpec,
  volumeField,
} from './volumes.js';

export interface Reply {
  retcode: number;
  fields: Field[];
}

export interface HandlerRequest {
  params: Params;
  log: Logger;
}

export type Handler = (req: HandlerRequest) => Reply | Promise<Reply>;

/**
 * A handler table exactly as the catalog (src/protocol/catalog.ts) defines `level`: one handler per request
 * type of that level and none besides. Checked when the daemon builds it, so the catalog and the emulator
 * cannot drift apart.
 */
export function checkedAgainstCatalog(handlers: Map<string, Handler>, level: ProtocolLevel): Map<string, Handler> {
  const expected = requestTypesOf(level);
  const missing = expected.filter((t) => !handlers.has(t));
  const extra = [...handlers.keys()].filter((t) => !expected.includes(t));
  if (missing.length > 0 || extra.length > 0) {
    throw new Error(
      `the ${level} handler table does not match the catalog: missing ${missing.join(', ') || 'none'}, extra ${extra.join(', ') || 'none'}`,
    );
  }
  return handlers;
}

export const EMULATOR_VERSION = '0.1.0';

const ok = (fields: Field[] = []): Reply => ({ retcode: RetCode.OK, fields });

/**
 * How long a delete's reply waits for the delete itself (§2.5). Most finish in well under a millisecond; a
 * big allocated file may take longer, and waiting here costs the client no more than polling would.
 */
const DELETE_REPLY_WINDOW_MS = 200;

/** `deleted=1` when the accepted delete completed within the window, so the client need not poll. */
async function deletedWithinReplyWindow(done: true | Promise<boolean>): Promise<Field[]> {
  if (done === true) return [[Key.DELETED, '1']];
  let timer: NodeJS.Timeout | undefined;
  const window = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), DELETE_REPLY_WINDOW_MS)));
  const deleted = await Promise.race([done, window]);
  clearTimeout(timer);
  return deleted ? [[Key.DELETED, '1']] : [];
}

function extentFields(sizeBytes: number, page: ExtentPage): Field[] {
  return [
    [Key.SIZE_BYTES, String(sizeBytes)],
    [Key.BLOCK_SIZE, String(BLOCK_SIZE)],
    [Key.EXTENT_NUM, String(page.extents.length)],
    ...page.extents.map((e, i) => field(`extent${i}`, { offset: e.offset, length: e.length })),
    [Key.NEXT_OFFSET, page.nextOffset === undefined ? '' : String(page.nextOffset)],
  ];
}

/** `offset` and `limit` of an extent request; an offset past the end is refused. */
function extentWindow(p: Params, sizeBytes: number): { offset: number; limit: number } {
  const offset = p.int(Key.OFFSET, 0, Number.MAX_SAFE_INTEGER, 0);
  if (offset > sizeBytes) throw invalid(Key.OFFSET, `${offset} is beyond the snapshot's size of ${sizeBytes} bytes`);
  return { offset, limit: p.int(Key.LIMIT, 1, MAX_LIST_LIMIT, MAX_LIST_LIMIT) };
}

function cloneTypeOf(p: Params): 'linked' | 'full' {
  return p.oneOf(Key.CLONE_TYPE, ['linked', 'full'] as const, 'linked');
}

export function buildHandlers(ctx: Ctx, attach: AttachService, images: ImageService): Map<string, Handler> {
  const h = new Map<string, Handler>();

  h.set(Requests.QUERY_CAPABILITY.type, () => {
    const caps: string[] = [
      Capability.FULL_CLONE,
      Capability.CLONE_VOLUME,
      Capability.LIST,
      Capability.QOS,
      Capability.CACHE,
      Capability.IMAGE_IMPORT,
      Capability.IMAGE_EXPORT,
      Capability.MAP,
      Capability.AUTH_TOKEN,
      Capability.EXTENT_MAP,
    ];
    if ([...ctx.pools.values()].some((pool) => pool.linkedClone))
      caps.unshift(Capability.LINKED_CLONE, Capability.GROUP_SNAPSHOT);
    if (ctx.qos.enabled) caps.push(Capability.QOS_ENFORCED);
    if (images.qcow2) caps.push(Capability.IMAGE_QCOW2);
    return ok([
      [Key.PRODUCT, 'SDSHypervisor'],
      [Key.VERSION, EMULATOR_VERSION],
      [Key.API_VERSION, '1'],
      [Key.HOST_ID, ctx.hostId],
      ...caps.map((c): Field => [Key.CAPABILITY, c]),
      // Where EXPORT_IMAGE_REQ may write and IMPORT_IMAGE_REQ may read on this host.
      ...ctx.config.imageDirs.map((d): Field => [Key.IMAGE_DIR, d]),
      [Key.MAX_REQUEST_BYTES, String(MAX_REQUEST_BYTES)],
      [Key.MAX_REPLY_BYTES, String(MAX_REPLY_BYTES)],
      [Key.MAX_LIST_LIMIT, String(MAX_LIST_LIMIT)],
    ]);
  });

  h.set(Requests.CREATE_VOLUME.type, async ({ params }) => {
    const spec = parseCreateSpec(ctx, params, true);
    const row = await createVolume(ctx, spec);
    // A new thin volume holds no blocks; a thick one holds all of them.
    return ok([volumeField(ctx, row, row.thin ? 0 : row.size_mb * 1024 * 1024)]);
  });

  h.set(Requests.DELETE_VOLUME.type, async ({ params }) =>
    ok(await deletedWithinReplyWindow(deleteVolume(ctx, params.name(Key.VOL_NAME)))),
  );

  h.set(Requests.EXTEND_VOLUME.type, async ({ params }) => {
    const name = params.name(Key.VOL_NAME);
    const row = await extendVolume(ctx, name, params.sizeMb());
    return ok([volumeField(ctx, row)]);
  });

  h.set(Requests.QUERY_VOLUME.type, ({ params }) => {
    const name = params.name(Key.VOL_NAME);
    const row = ctx.store.volume(name);
    if (!row) throw notExist(`volume ${name}`);
    return ok([volumeField(ctx, row)]);
  });

  h.set(Requests.CREATE_SNAPSHOT.type, async ({ params }) => {
    const name = params.name(Key.SNAP_NAME);
    const volName = params.name(Key.VOL_NAME);
    return ok([snapshotField(ctx, await createSnapshot(ctx, name, volName))]);
  });

  h.set(Requests.DELETE_SNAPSHOT.type, async ({ params }) =>
    ok(await deletedWithinReplyWindow(deleteSnapshot(ctx, params.name(Key.SNAP_NAME)))),
  );

  h.set(Requests.QUERY_SNAPSHOT.type, ({ params }) => {
    const name = params.name(Key.SNAP_NAME);
    const row = ctx.store.snapshot(name);
    if (!row) throw notExist(`snapshot ${name}`);
    return ok([snapshotField(ctx, row)]);
  });

  /** A clone of a snapshot or a volume, the clone type from the request; `smallerCode` for a size below the source's. */
  const cloned = async (params: Params, source: CloneSource, smallerCode: number): Promise<Reply> =>
    ok([volumeField(ctx, await cloneVolume(ctx, params, source, cloneTypeOf(params), smallerCode))]);

  h.set(Requests.CREATE_VOLUME_FROM_SNAPSHOT.type, async ({ params }) => {
    params.name(Key.VOL_NAME);
    const snap = params.name(Key.SNAP_NAME_SRC);
    const count = params.optInt(Key.VOL_NUM, 1, 1);
    if (count !== undefined && count !== 1) throw invalid(Key.VOL_NUM, 'must be 1');
    return cloned(params, { type: 'snapshot', name: snap }, RetCode.INVALID_PARAMETER);
  });

  h.set(Requests.CLONE_VOLUME.type, async ({ params }) => {
    params.name(Key.VOL_NAME);
    const src = params.name(Key.SRC_VOL_NAME);
    return cloned(params, { type: 'volume', name: src }, RetCode.CANNOT_SHRINK);
  });

  h.set(Requests.MODIFY_VOLUME.type, async ({ params }) => {
    const name = params.name(Key.VOL_NAME);
    const row = await modifyVolume(ctx, name, {
      maxIops: params.optInt(Key.MAX_IOPS, 0, 10_000_000),
      maxMbps: params.optInt(Key.MAX_MBPS, 0, 1_000_000, 'MB/s'),
      ioPriority: params.optInt(Key.IO_PRIORITY, 1, 3),
      cachePolicy: params.optOneOf(Key.CACHE_POLICY, CACHE_POLICIES),
    });
    return ok([volumeField(ctx, row)]);
  });

  h.set(Requests.QUERY_POOLS_CAPABILITY.type, ({ params }) => {
    const count = params.int(Key.POOL_NUM, 0, 1000, 0);
    const ids = params.poolIds();
    ids.forEach((id) => {
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$/.test(id))
        throw invalid(Key.POOL_ID, `${JSON.stringify(id)} is not a pool name`);
    });
    const pools =
      count === 0 || ids.length === 0
        ? [...ctx.pools.values()]
        : ids.map((id) => {
            const pool = ctx.pools.get(id);
            if (!pool) throw new VbsError(RetCode.POOL_NOT_EXIST, `${Key.POOL_ID}: pool ${id} does not exist`);
            return pool;
          });
    return ok(pools.map((pool, i) => field(`pool${i}`, poolRecord(ctx, pool))));
  });

  h.set(Requests.LIST_VOLUMES.type, ({ params }) => {
    const { marker, limit } = params.page();
    const pool = params.optName(Key.POOL_ID);
    if (pool !== undefined && !ctx.pools.has(pool) && !ctx.store.poolRow(pool)) {
      throw new VbsError(RetCode.POOL_NOT_EXIST, `${Key.POOL_ID}: pool ${pool} does not exist`);
    }
    const rows = ctx.store.listVolumes(marker, limit + 1, pool);
    const page = rows.slice(0, limit);
    return ok([
      [Key.VOL_NUM, String(page.length)],
      ...volumePageRecords(ctx, page).map((record, i) => field(`volume${i}`, record)),
      [Key.NEXT_MARKER, rows.length > limit ? page[page.length - 1]!.name : ''],
    ]);
  });

  h.set(Requests.LIST_SNAPSHOTS.type, ({ params }) => {
    const { marker, limit } = params.page();
    const volName = params.optName(Key.VOL_NAME);
    const snapName = params.optName(Key.SNAP_NAME);
    let rows;
    if (snapName !== undefined) {
      const row = ctx.store.snapshot(snapName);
      rows = row && row.name > marker && (volName === undefined || row.vol_name === volName) ? [row] : [];
    } else {
      rows = ctx.store.listSnapshots(marker, limit + 1, volName);
    }
    const page = rows.slice(0, limit);
    return ok([
      [Key.SNAP_NUM, String(page.length)],
      ...page.map((row, i) => field(`snapshot${i}`, snapshotRecord(ctx, row))),
      [Key.NEXT_MARKER, rows.length > limit ? page[page.length - 1]!.name : ''],
    ]);
  });

  h.set(Requests.MAP_VOLUME.type, ({ params }) => {
    const name = params.name(Key.VOL_NAME);
    const host = params.name(Key.HOST_ID);
    const mode = params.oneOf(Key.ACCESS_MODE, ['rw', 'ro'] as const, 'rw');
    mapVolume(ctx, name, host, mode, params.flag(Key.EXCLUSIVE, false));
    return ok();
  });

  h.set(Requests.UNMAP_VOLUME.type, async ({ params }) => {
    const name = params.name(Key.VOL_NAME);
    const host = params.name(Key.HOST_ID);
    await unmapVolume(ctx, attach, name, host, params.flag(Key.FORCE, false));
    return ok();
  });

  h.set(Requests.QUERY_VOLUME_HOSTS.type, ({ params }) => ok(volumeHosts(ctx, attach, params.name(Key.VOL_NAME))));

  h.set(Requests.QUERY_HOSTS.type, () => ok(hostsList(ctx)));

  // Emulator only: marks a host down (online=0) or up, standing in for the cluster's heartbeats.
  h.set(Requests.SET_HOST_STATE.type, ({ params }) => {
    setHostState(ctx, params.name(Key.HOST_ID), params.flag(Key.ONLINE, true));
    return ok();
  });

  h.set(Requests.IMPORT_IMAGE.type, async ({ params, log }) => {
    const { jobId, volume } = await images.startImport(params, log);
    return ok([[Key.JOB_ID, jobId], volumeField(ctx, volume)]);
  });

  h.set(Requests.EXPORT_IMAGE.type, ({ params, log }) => ok([[Key.JOB_ID, images.startExport(params, log)]]));

  h.set(Requests.QUERY_IMAGE_JOB.type, ({ params }) => {
    const id = params.req(Key.JOB_ID);
    if (!/^[A-Za-z0-9_.-]{1,96}$/.test(id)) throw invalid(Key.JOB_ID, 'is not a job id');
    const { row, live } = images.job(id);
    return ok([['job0', encodeRecord(jobRecord(row, live))]]);
  });

  h.set(Requests.CREATE_GROUP_SNAPSHOT.type, async ({ params }) =>
    ok(groupFields(ctx, await createGroupSnapshot(ctx, parseGroupSpec(params)))),
  );

  h.set(Requests.DELETE_GROUP_SNAPSHOT.type, ({ params }) => {
    deleteGroupSnapshot(ctx, params.name(Key.GROUP_NAME));
    return ok();
  });

  h.set(Requests.QUERY_GROUP_SNAPSHOT.type, ({ params }) =>
    ok(groupFields(ctx, queryGroup(ctx, params.name(Key.GROUP_NAME)))),
  );

  h.set(Requests.QUERY_SNAPSHOT_EXTENTS.type, async ({ params }) => {
    const snap = readableSnapshot(ctx, params.name(Key.SNAP_NAME), Key.SNAP_NAME);
    const { offset, limit } = extentWindow(params, snap.sizeBytes);
    try {
      return ok(extentFields(snap.sizeBytes, await allocatedPage(snap.path, snap.sizeBytes, offset, limit)));
    } catch (err) {
      throw fromIoError(err, `extent map of snapshot ${snap.row.name}`);
    }
  });

  h.set(Requests.QUERY_SNAPSHOT_DELTA.type, async ({ params }) => {
    const base = readableSnapshot(ctx, params.name(Key.BASE_SNAP_NAME), Key.BASE_SNAP_NAME);
    const target = readableSnapshot(ctx, params.name(Key.SNAP_NAME), Key.SNAP_NAME);
    if (base.row.vol_id !== target.row.vol_id || base.row.vol_name !== target.row.vol_name) {
      throw invalid(
        Key.BASE_SNAP_NAME,
        `snapshot ${base.row.name} is of volume ${base.row.vol_name} and ${target.row.name} of volume ${target.row.vol_name}; a delta needs two snapshots of one volume`,
      );
    }
    if (base.row.id > target.row.id) {
      throw invalid(
        Key.BASE_SNAP_NAME,
        `snapshot ${base.row.name} was taken after ${target.row.name}; base_snap_name must be the earlier one`,
      );
    }
    const { offset, limit } = extentWindow(params, target.sizeBytes);
    const shared = ctx.pools.get(target.row.pool)!.linkedClone;
    try {
      const page = await deltaPage(
        { path: base.path, size: base.sizeBytes },
        { path: target.path, size: target.sizeBytes },
        offset,
        limit,
        shared,
      );
      return ok([...extentFields(target.sizeBytes, page), [Key.METHOD, page.method]]);
    } catch (err) {
      throw fromIoError(err, `delta of snapshots ${base.row.name} and ${target.row.name}`);
    }
  });

  return checkedAgainstCatalog(h, 'extended');
}
