// One handler per request type of the socket API (docs/socket-api.md §1.3, §2.6): parse and validate the
// keys, call the operation, build the reply. The operations live in volumes.ts, snapshots.ts, ...
import { encodeRecord, MAX_LIST_LIMIT, MAX_REPLY_BYTES, MAX_REQUEST_BYTES, RetCode, type Field } from '../src/protocol/vbs.js';
import type { AttachService } from './attach.js';
import type { Ctx } from './context.js';
import { fromIoError, invalid, notExist, VbsError } from './errors.js';
import type { ImageService } from './images.js';
import type { Logger } from './log.js';
import { hostsList, mapVolume, setHostState, unmapVolume, volumeHosts } from './mappings.js';
import type { Params } from './params.js';
import { field, jobRecord, poolRecord, snapshotRecord, volumeRecord } from './records.js';
import { createSnapshot, deleteSnapshot, readableSnapshot, snapshotField } from './snapshots.js';
import { allocatedPage, BLOCK_SIZE, deltaPage, type ExtentPage } from './extents.js';
import { createGroupSnapshot, deleteGroupSnapshot, groupFields, parseGroupSpec, queryGroup } from './groups.js';
import {
  CACHE_POLICIES, cloneVolume, createVolume, deleteVolume, extendVolume, modifyVolume, parseCreateSpec, volumeField,
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

/** Request types that change state: logged at info, the rest at debug. */
export const MUTATING = new Set([
  'CREATE_VOLUME_REQ', 'DELETE_VOLUME_REQ', 'EXTEND_VOLUME_REQ', 'CREATE_SNAPSHOT_REQ', 'DELETE_SNAPSHOT_REQ',
  'CREATE_VOLUME_FROM_SNAPSHOT_REQ', 'CLONE_VOLUME_REQ', 'MODIFY_VOLUME_REQ', 'MAP_VOLUME_REQ', 'UNMAP_VOLUME_REQ', 'SET_HOST_STATE_REQ',
  'IMPORT_IMAGE_REQ', 'EXPORT_IMAGE_REQ', 'CREATE_GROUP_SNAPSHOT_REQ', 'DELETE_GROUP_SNAPSHOT_REQ',
]);

export const EMULATOR_VERSION = '0.1.0';

const ok = (fields: Field[] = []): Reply => ({ retcode: RetCode.OK, fields });

/**
 * How long a delete's reply waits for the delete itself (§2.5). Most finish in well under a millisecond; a
 * big allocated file may take longer, and waiting here costs the client no more than polling would.
 */
const DELETE_REPLY_WINDOW_MS = 200;

/** `deleted=1` when the accepted delete completed within the window, so the client need not poll. */
async function deletedWithinReplyWindow(done: Promise<boolean>): Promise<Field[]> {
  let timer: NodeJS.Timeout | undefined;
  const window = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), DELETE_REPLY_WINDOW_MS)));
  const deleted = await Promise.race([done, window]);
  clearTimeout(timer);
  return deleted ? [['deleted', '1']] : [];
}

function extentFields(sizeBytes: number, page: ExtentPage): Field[] {
  return [
    ['size_bytes', String(sizeBytes)],
    ['block_size', String(BLOCK_SIZE)],
    ['extent_num', String(page.extents.length)],
    ...page.extents.map((e, i) => field(`extent${i}`, { offset: e.offset, length: e.length })),
    ['next_offset', page.nextOffset === undefined ? '' : String(page.nextOffset)],
  ];
}

/** `offset` and `limit` of an extent request; an offset past the end is refused. */
function extentWindow(p: Params, sizeBytes: number): { offset: number; limit: number } {
  const offset = p.int('offset', 0, Number.MAX_SAFE_INTEGER, 0);
  if (offset > sizeBytes) throw invalid('offset', `${offset} is beyond the snapshot's size of ${sizeBytes} bytes`);
  return { offset, limit: p.int('limit', 1, MAX_LIST_LIMIT, MAX_LIST_LIMIT) };
}

function cloneTypeOf(p: Params): 'linked' | 'full' {
  return p.oneOf('clone_type', ['linked', 'full'] as const, 'linked');
}

export function buildHandlers(ctx: Ctx, attach: AttachService, images: ImageService): Map<string, Handler> {
  const h = new Map<string, Handler>();

  h.set('QUERY_CAPABILITY_REQ', () => {
    const caps = ['full_clone', 'clone_volume', 'list', 'qos', 'cache', 'image_import', 'image_export', 'map', 'auth_token', 'extent_map'];
    if ([...ctx.pools.values()].some((pool) => pool.linkedClone)) caps.unshift('linked_clone', 'group_snapshot');
    if (ctx.qos.enabled) caps.push('qos_enforced');
    if (images.qcow2) caps.push('image_qcow2');
    return ok([
      ['product', 'SDSHypervisor'],
      ['version', EMULATOR_VERSION],
      ['api_version', '1'],
      ['host_id', ctx.hostId],
      ...caps.map((c): Field => ['capability', c]),
      // Where EXPORT_IMAGE_REQ may write and IMPORT_IMAGE_REQ may read on this host.
      ...ctx.config.imageDirs.map((d): Field => ['image_dir', d]),
      ['max_request_bytes', String(MAX_REQUEST_BYTES)],
      ['max_reply_bytes', String(MAX_REPLY_BYTES)],
      ['max_list_limit', String(MAX_LIST_LIMIT)],
    ]);
  });

  h.set('CREATE_VOLUME_REQ', async ({ params }) => {
    const spec = parseCreateSpec(ctx, params, true);
    const row = await createVolume(ctx, spec);
    // A new thin volume holds no blocks; a thick one holds all of them.
    return ok([volumeField(ctx, row, row.thin ? 0 : row.size_mb * 1024 * 1024)]);
  });

  h.set('DELETE_VOLUME_REQ', async ({ params }) => ok(await deletedWithinReplyWindow(deleteVolume(ctx, params.name('vol_name')))));

  h.set('EXTEND_VOLUME_REQ', async ({ params }) => {
    const name = params.name('vol_name');
    const row = await extendVolume(ctx, name, params.sizeMb());
    return ok([volumeField(ctx, row)]);
  });

  h.set('QUERY_VOLUME_REQ', ({ params }) => {
    const name = params.name('vol_name');
    const row = ctx.store.volume(name);
    if (!row) throw notExist(`volume ${name}`);
    return ok([volumeField(ctx, row)]);
  });

  h.set('CREATE_SNAPSHOT_REQ', async ({ params }) => {
    const name = params.name('snap_name');
    const volName = params.name('vol_name');
    return ok([snapshotField(ctx, await createSnapshot(ctx, name, volName))]);
  });

  h.set('DELETE_SNAPSHOT_REQ', async ({ params }) => ok(await deletedWithinReplyWindow(deleteSnapshot(ctx, params.name('snap_name')))));

  h.set('QUERY_SNAPSHOT_REQ', ({ params }) => {
    const name = params.name('snap_name');
    const row = ctx.store.snapshot(name);
    if (!row) throw notExist(`snapshot ${name}`);
    return ok([snapshotField(ctx, row)]);
  });

  h.set('CREATE_VOLUME_FROM_SNAPSHOT_REQ', async ({ params }) => {
    params.name('vol_name');
    const snap = params.name('snap_name_src');
    const count = params.optInt('vol_num', 1, 1);
    if (count !== undefined && count !== 1) throw invalid('vol_num', 'must be 1');
    const row = await cloneVolume(ctx, params, { type: 'snapshot', name: snap }, cloneTypeOf(params), RetCode.INVALID_PARAMETER);
    return ok([volumeField(ctx, row)]);
  });

  h.set('CLONE_VOLUME_REQ', async ({ params }) => {
    params.name('vol_name');
    const src = params.name('src_vol_name');
    const row = await cloneVolume(ctx, params, { type: 'volume', name: src }, cloneTypeOf(params), RetCode.CANNOT_SHRINK);
    return ok([volumeField(ctx, row)]);
  });

  h.set('MODIFY_VOLUME_REQ', async ({ params }) => {
    const name = params.name('vol_name');
    const row = await modifyVolume(ctx, name, {
      maxIops: params.optInt('max_iops', 0, 10_000_000),
      maxMbps: params.optInt('max_mbps', 0, 1_000_000, 'MB/s'),
      ioPriority: params.optInt('IOPRIORITY', 1, 3),
      cachePolicy: params.optOneOf('cache_policy', CACHE_POLICIES),
    });
    return ok([volumeField(ctx, row)]);
  });

  h.set('QUERY_POOLS_CAPABILITY_REQ', ({ params }) => {
    const count = params.int('pool_num', 0, 1000, 0);
    const ids = params.fields.getAll('pool_id').map((v) => v.trim()).filter((v) => v !== '');
    ids.forEach((id) => {
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$/.test(id)) throw invalid('pool_id', `${JSON.stringify(id)} is not a pool name`);
    });
    const pools = count === 0 || ids.length === 0
      ? [...ctx.pools.values()]
      : ids.map((id) => {
        const pool = ctx.pools.get(id);
        if (!pool) throw new VbsError(RetCode.POOL_NOT_EXIST, `pool_id: pool ${id} does not exist`);
        return pool;
      });
    return ok(pools.map((pool, i) => field(`pool${i}`, poolRecord(ctx, pool))));
  });

  h.set('LIST_VOLUMES_REQ', ({ params }) => {
    const { marker, limit } = params.page();
    const pool = params.optName('pool_id');
    if (pool !== undefined && !ctx.pools.has(pool) && !ctx.store.poolRow(pool)) {
      throw new VbsError(RetCode.POOL_NOT_EXIST, `pool_id: pool ${pool} does not exist`);
    }
    const rows = ctx.store.listVolumes(marker, limit + 1, pool);
    const page = rows.slice(0, limit);
    return ok([
      ['vol_num', String(page.length)],
      ...page.map((row, i) => field(`volume${i}`, volumeRecord(ctx, row))),
      ['next_marker', rows.length > limit ? page[page.length - 1]!.name : ''],
    ]);
  });

  h.set('LIST_SNAPSHOTS_REQ', ({ params }) => {
    const { marker, limit } = params.page();
    const volName = params.optName('vol_name');
    const snapName = params.optName('snap_name');
    let rows;
    if (snapName !== undefined) {
      const row = ctx.store.snapshot(snapName);
      rows = row && row.name > marker && (volName === undefined || row.vol_name === volName) ? [row] : [];
    } else {
      rows = ctx.store.listSnapshots(marker, limit + 1, volName);
    }
    const page = rows.slice(0, limit);
    return ok([
      ['snap_num', String(page.length)],
      ...page.map((row, i) => field(`snapshot${i}`, snapshotRecord(ctx, row))),
      ['next_marker', rows.length > limit ? page[page.length - 1]!.name : ''],
    ]);
  });

  h.set('MAP_VOLUME_REQ', ({ params }) => {
    const name = params.name('vol_name');
    const host = params.name('host_id');
    const mode = params.oneOf('access_mode', ['rw', 'ro'] as const, 'rw');
    mapVolume(ctx, name, host, mode, params.flag('exclusive', false));
    return ok();
  });

  h.set('UNMAP_VOLUME_REQ', async ({ params }) => {
    const name = params.name('vol_name');
    const host = params.name('host_id');
    await unmapVolume(ctx, attach, name, host, params.flag('force', false));
    return ok();
  });

  h.set('QUERY_VOLUME_HOSTS_REQ', ({ params }) => ok(volumeHosts(ctx, attach, params.name('vol_name'))));

  h.set('QUERY_HOSTS_REQ', () => ok(hostsList(ctx)));

  // Emulator only: marks a host down (online=0) or up, standing in for the cluster's heartbeats.
  h.set('SET_HOST_STATE_REQ', ({ params }) => {
    setHostState(ctx, params.name('host_id'), params.flag('online', true));
    return ok();
  });

  h.set('IMPORT_IMAGE_REQ', async ({ params, log }) => {
    const { jobId, volume } = await images.startImport(params, log);
    return ok([['job_id', jobId], volumeField(ctx, volume)]);
  });

  h.set('EXPORT_IMAGE_REQ', ({ params, log }) => ok([['job_id', images.startExport(params, log)]]));

  h.set('QUERY_IMAGE_JOB_REQ', ({ params }) => {
    const id = params.req('job_id');
    if (!/^[A-Za-z0-9_.-]{1,96}$/.test(id)) throw invalid('job_id', 'is not a job id');
    const { row, live } = images.job(id);
    return ok([['job0', encodeRecord(jobRecord(row, live))]]);
  });

  h.set('CREATE_GROUP_SNAPSHOT_REQ', async ({ params }) => ok(groupFields(ctx, await createGroupSnapshot(ctx, parseGroupSpec(params)))));

  h.set('DELETE_GROUP_SNAPSHOT_REQ', ({ params }) => {
    deleteGroupSnapshot(ctx, params.name('group_name'));
    return ok();
  });

  h.set('QUERY_GROUP_SNAPSHOT_REQ', ({ params }) => ok(groupFields(ctx, queryGroup(ctx, params.name('group_name')))));

  h.set('QUERY_SNAPSHOT_EXTENTS_REQ', async ({ params }) => {
    const snap = readableSnapshot(ctx, params.name('snap_name'), 'snap_name');
    const { offset, limit } = extentWindow(params, snap.sizeBytes);
    try {
      return ok(extentFields(snap.sizeBytes, await allocatedPage(snap.path, snap.sizeBytes, offset, limit)));
    } catch (err) {
      throw fromIoError(err, `extent map of snapshot ${snap.row.name}`);
    }
  });

  h.set('QUERY_SNAPSHOT_DELTA_REQ', async ({ params }) => {
    const base = readableSnapshot(ctx, params.name('base_snap_name'), 'base_snap_name');
    const target = readableSnapshot(ctx, params.name('snap_name'), 'snap_name');
    if (base.row.vol_id !== target.row.vol_id || base.row.vol_name !== target.row.vol_name) {
      throw invalid('base_snap_name', `snapshot ${base.row.name} is of volume ${base.row.vol_name} and ${target.row.name} of volume ${target.row.vol_name}; a delta needs two snapshots of one volume`);
    }
    if (base.row.id > target.row.id) {
      throw invalid('base_snap_name', `snapshot ${base.row.name} was taken after ${target.row.name}; base_snap_name must be the earlier one`);
    }
    const { offset, limit } = extentWindow(params, target.sizeBytes);
    const shared = ctx.pools.get(target.row.pool)!.linkedClone;
    try {
      const page = await deltaPage({ path: base.path, size: base.sizeBytes }, { path: target.path, size: target.sizeBytes }, offset, limit, shared);
      return ok([...extentFields(target.sizeBytes, page), ['method', page.method]]);
    } catch (err) {
      throw fromIoError(err, `delta of snapshots ${base.row.name} and ${target.row.name}`);
    }
  });

  return h;
}
