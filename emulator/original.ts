// The original level of the socket API (docs/socket-api.md §1.4): the 2014 product as the Cinder driver's
// sources show it and nothing more. Nine requests, each with only the keys that driver sent; replies
// `retcode=N` alone, the queries' records carrying `status` alone (pools: the five fields, whole GiB); every
// failure the generic `retcode=1`, but a query of what does not exist `retcode=-900079`. No token, no
// request id, no ret_desc. The operations are the extended level's (volumes.ts, snapshots.ts); only the
// request and reply forms differ.
import {
  encodeReply,
  Fields,
  parseRequest,
  ProtocolError,
  RetCode,
  SnapshotStatus,
  VolumeStatus,
  type Field,
} from '../src/protocol/vbs.js';
import {
  Field as RecordField,
  isMutating,
  Key,
  keysAt,
  ORIGINAL_GENERIC_FAILURE,
  RecordPrefix,
  recordFields,
  requestTypesOf,
  Requests,
  type RecordPrefixName,
} from '../src/protocol/catalog.js';
import { KvCode, type KvMethod } from '../src/protocol/kv.js';
import type { KvReply } from './attach.js';
import type { Ctx } from './context.js';
import { VbsError } from './errors.js';
import { checkedAgainstCatalog, type Handler, type Reply } from './handlers.js';
import type { Logger } from './log.js';
import { Params } from './params.js';
import { field, poolRecord, snapshotRecord, volumeRecord } from './records.js';
import { createSnapshot, deleteSnapshot } from './snapshots.js';
import type { SnapshotRow, VolumeRow } from './store.js';
import { cloneVolume, createVolume, deleteVolume, extendVolume, parseCreateSpec } from './volumes.js';

/** The two queries whose "does not exist" is told apart from a failure. */
const QUERIES: ReadonlySet<string> = new Set([Requests.QUERY_VOLUME.type, Requests.QUERY_SNAPSHOT.type]);

/** The keys each original request takes, per the catalog; the rest are dropped unread. */
const ORIGINAL_KEYS = new Map(
  requestTypesOf('original').map((type) => [type, new Set<string>(keysAt(type, 'original'))]),
);

/** A record cut down to the fields the original level's records carry (catalog: `level: 'original'`). */
function originalRecord(
  prefix: RecordPrefixName,
  record: Record<string, string | number>,
): Record<string, string | number> {
  return Object.fromEntries(recordFields(prefix, 'original').map((k) => [k, record[k]!]));
}

const ok = (fields: Field[] = []): Reply => ({ retcode: RetCode.OK, fields });

/**
 * A volume's status as the product reported it: 1 available, 2 attached (in use), 10 busy; a delete that is
 * accepted but not finished still reads 1 (the product had no "deleting" status the driver knew); 12 faulty.
 */
function volumeOnly(ctx: Ctx, row: VolumeRow): Field {
  const record = volumeRecord(ctx, row);
  let status = Number(record[RecordField.STATUS]);
  if (status === VolumeStatus.DELETING) status = VolumeStatus.AVAILABLE;
  else if (status === VolumeStatus.AVAILABLE && ctx.store.attachment(row.id)?.state === 'attached')
    status = VolumeStatus.IN_USE;
  return field(
    `${RecordPrefix.VOLUME}0`,
    originalRecord(RecordPrefix.VOLUME, { ...record, [RecordField.STATUS]: status }),
  );
}

function snapshotOnly(ctx: Ctx, row: SnapshotRow): Field {
  const record = snapshotRecord(ctx, row);
  const status = Number(record[RecordField.STATUS]);
  return field(
    `${RecordPrefix.SNAPSHOT}0`,
    originalRecord(RecordPrefix.SNAPSHOT, {
      ...record,
      [RecordField.STATUS]: status === SnapshotStatus.DELETING ? SnapshotStatus.AVAILABLE : status,
    }),
  );
}

const notExist = (): VbsError => new VbsError(RetCode.NOT_EXIST, 'does not exist');

/** The handlers of the original level. Their params hold only the request's original keys. */
export function buildOriginalHandlers(ctx: Ctx): Map<string, Handler> {
  const h = new Map<string, Handler>();

  h.set(Requests.CREATE_VOLUME.type, async ({ params }) => {
    // The product knew no default pool: the Cinder driver always named one.
    params.name(Key.POOL_ID);
    await createVolume(ctx, parseCreateSpec(ctx, params, true));
    // The product answered a create with its retcode alone (docs/socket-api.md §1.3); the caller queries.
    return ok();
  });

  h.set(Requests.DELETE_VOLUME.type, ({ params }) => {
    // Asynchronous: the caller polls QUERY_VOLUME_REQ until -900079. A failure in the background shows as
    // the volume staying (reconcile retries it at the next start).
    void deleteVolume(ctx, params.name(Key.VOL_NAME));
    return ok();
  });

  h.set(Requests.EXTEND_VOLUME.type, async ({ params }) => {
    await extendVolume(ctx, params.name(Key.VOL_NAME), params.sizeMb());
    return ok();
  });

  /** A query: the one record of the object `key` names, or the original's bare NOT_EXIST. */
  const query =
    <R>(key: string, find: (name: string) => R | undefined, render: (ctx: Ctx, row: R) => Field): Handler =>
    ({ params }) => {
      const row = find(params.name(key));
      if (!row) throw notExist();
      return ok([render(ctx, row)]);
    };

  h.set(
    Requests.QUERY_VOLUME.type,
    query(Key.VOL_NAME, (name) => ctx.store.volume(name), volumeOnly),
  );

  h.set(Requests.CREATE_SNAPSHOT.type, async ({ params }) => {
    await createSnapshot(ctx, params.name(Key.SNAP_NAME), params.name(Key.VOL_NAME));
    return ok();
  });

  h.set(Requests.DELETE_SNAPSHOT.type, ({ params }) => {
    void deleteSnapshot(ctx, params.name(Key.SNAP_NAME));
    return ok();
  });

  h.set(
    Requests.QUERY_SNAPSHOT.type,
    query(Key.SNAP_NAME, (name) => ctx.store.snapshot(name), snapshotOnly),
  );

  h.set(Requests.CREATE_VOLUME_FROM_SNAPSHOT.type, async ({ params }) => {
    params.name(Key.VOL_NAME);
    const snap = params.name(Key.SNAP_NAME_SRC);
    params.int(Key.VOL_NUM, 1, 1, 1);
    // Always a linked clone, in the snapshot's pool (the request names no pool).
    await cloneVolume(ctx, params, { type: 'snapshot', name: snap }, 'linked', ORIGINAL_GENERIC_FAILURE);
    return ok();
  });

  h.set(Requests.QUERY_POOLS_CAPABILITY.type, ({ params }) => {
    const count = params.int(Key.POOL_NUM, 0, 1000, 0);
    const ids = params.poolIds();
    // Only the pools asked for by id, the first pool_num of them: the product had no "all pools".
    const pools = ids.slice(0, count).map((id) => {
      const pool = ctx.pools.get(id);
      if (!pool) throw new VbsError(RetCode.POOL_NOT_EXIST, `pool ${id} does not exist`);
      return pool;
    });
    return ok(
      pools.map((pool, i) =>
        field(`${RecordPrefix.POOL}${i}`, originalRecord(RecordPrefix.POOL, poolRecord(ctx, pool))),
      ),
    );
  });

  return checkedAgainstCatalog(h, 'original');
}

export interface OriginalServerOptions {
  handlers: Map<string, Handler>;
  log: Logger;
  stopping: () => boolean;
}

/**
 * One request of the original level, from its bytes to its reply. Keys the product did not know are dropped
 * before the handler sees them, so an extension key (auth_token, request_id, clone_type, ...) changes nothing.
 */
export async function handleOriginalRequest(
  bytes: Buffer,
  options: OriginalServerOptions,
  counter: number,
): Promise<Buffer> {
  const started = process.hrtime.bigint();
  let type = '';
  let reply: Reply;
  let why = '';
  try {
    const req = parseRequest(bytes);
    type = req.type;
    const handler = options.handlers.get(type);
    const known = ORIGINAL_KEYS.get(type);
    if (!handler || !known) throw new VbsError(ORIGINAL_GENERIC_FAILURE, `unknown request type ${type}`);
    if (options.stopping()) throw new VbsError(ORIGINAL_GENERIC_FAILURE, 'the VBS is shutting down');
    const params = new Params(new Fields(req.fields.list.filter(([k]) => known.has(k))));
    let child: Logger | undefined;
    const log = (): Logger => (child ??= options.log.child({ request_id: `emu-${counter}`, req: type }));
    reply = await handler({
      params,
      get log() {
        return log();
      },
    });
  } catch (err) {
    if (err instanceof VbsError && err.retcode === RetCode.NOT_EXIST && QUERIES.has(type)) {
      reply = { retcode: RetCode.NOT_EXIST, fields: [] };
    } else {
      if (!(err instanceof VbsError) && !(err instanceof ProtocolError)) {
        options.log.error({ err, req: type }, 'internal error');
      }
      reply = { retcode: ORIGINAL_GENERIC_FAILURE, fields: [] };
    }
    why = (err as Error).message;
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  // The log keeps what the wire does not say: why a request failed.
  const entry = {
    request_id: `emu-${counter}`,
    req: type,
    retcode: reply.retcode,
    ms: Math.round(ms * 1000) / 1000,
    ...(why ? { why } : {}),
  };
  if (isMutating(type)) options.log.info(entry, 'request');
  else if (options.log.isLevelEnabled('debug')) options.log.debug(entry, 'request');
  return encodeReply(reply.retcode, reply.fields);
}

/**
 * What the original level's sds_cli prints for a KV reply: `ret_code` alone, no ret_desc, and `dev_addr`
 * only from querydev (os-brick ran querydev after attach for it). The product's own codes where os-brick
 * names one (50151401 already attached, 50155007 not attached on detach); any other failure is 1, and so is
 * querydev of a volume that is not attached.
 */
export function encodeOriginalKvReply(method: KvMethod | undefined, r: KvReply): Buffer {
  let code: number = r.ret_code === KvCode.OK ? KvCode.OK : ORIGINAL_GENERIC_FAILURE;
  if (method === 'attach' && r.ret_code === KvCode.ALREADY_ATTACHED) code = KvCode.ALREADY_ATTACHED;
  if (method === 'detach' && r.nothingToDetach === 'not-attached') code = KvCode.NOT_MOUNT_NODE;
  if (method === 'detach' && r.nothingToDetach === 'no-volume') code = ORIGINAL_GENERIC_FAILURE;
  let text = `ret_code=${code}\n`;
  if (method === 'querydev' && code === KvCode.OK && r.dev_addr) text += `dev_addr=${r.dev_addr}\n`;
  return Buffer.from(text, 'utf8');
}
