// The requests of the original level (docs/socket-api.md §1 and "The original level"): the nine requests of
// the 2014 product, in the form the Cinder driver sent them. Its replies carry `retcode` and records with
// `status` alone, and every failure is one generic code: after a failed request this module asks follow-up
// queries to say what went wrong (the name is taken, the source is missing, the pool is full) instead of
// answering "failed". It reports what exists; CSI's idempotency rules are the controller's.
import { MiB } from './backend.js';
import type { CallOptions, PoolInfo, SnapshotInfo, VolumeInfo, VolumeSpec } from './backend.js';
import { SdsError, type SdsErrorKind } from './errors.js';
import { snapshotFields } from './fields.js';
import { poolFromRecord, snapshotFromStatusRecord, volumeFromStatusRecord } from './records.js';
import { Key, ORIGINAL_CREATE_KEYS, ORIGINAL_CREATE_NEUTRAL, Requests, RecordPrefix } from '../protocol/catalog.js';
import { RetCode, type Field, type VbsReply } from '../protocol/vbs.js';

/** What this module needs of the client: one request with its deadline and retries, and its errors. */
export interface VbsRequester {
  request(type: string, fields: readonly Field[], opts?: CallOptions, timeoutMs?: number): Promise<VbsReply>;
  error(kind: SdsErrorKind, message: string, retcode?: number): SdsError;
  parsing<T>(fn: () => T): T;
}

export class OriginalLevel {
  constructor(
    private readonly vbs: VbsRequester,
    /** the configured pool ids (--vbs-pools): the only pools the original client ever asked about */
    private readonly configuredPools: readonly string[],
  ) {}

  /** The configured pools (or `ids`); each asked alone when a query of several fails, so one bad id costs only itself. */
  async queryPools(ids: readonly string[], opts?: CallOptions): Promise<PoolInfo[]> {
    const wanted = ids.length > 0 ? ids : this.configuredPools;
    // The original client never asked for "all pools"; without configured ids this asks pool_num=0 and takes
    // whatever the VBS lists (a product that answers only named pools lists none).
    const reply = await this.poolQuery(wanted, opts);
    if (reply.retcode === RetCode.OK) return this.pools(reply);
    if (wanted.length <= 1) return [];
    const found: PoolInfo[] = [];
    for (const id of wanted) {
      const one = await this.poolQuery([id], opts);
      if (one.retcode === RetCode.OK) found.push(...this.pools(one));
    }
    return found;
  }

  private poolQuery(ids: readonly string[], opts?: CallOptions): Promise<VbsReply> {
    return this.vbs.request(
      Requests.QUERY_POOLS_CAPABILITY.type,
      [[Key.POOL_NUM, String(ids.length)], ...ids.map((id): Field => [Key.POOL_ID, id])],
      opts,
    );
  }

  private pools(reply: VbsReply): PoolInfo[] {
    return this.vbs.parsing(() => reply.fields.records(RecordPrefix.POOL).map(poolFromRecord));
  }

  async getVolume(name: string, opts?: CallOptions, asked: Partial<VolumeInfo> = {}): Promise<VolumeInfo | undefined> {
    return this.queryStatus(Requests.QUERY_VOLUME.type, Key.VOL_NAME, RecordPrefix.VOLUME, name, opts, (record) =>
      volumeFromStatusRecord(record, { ...asked, name }),
    );
  }

  async getSnapshot(
    name: string,
    opts?: CallOptions,
    asked: Partial<SnapshotInfo> = {},
  ): Promise<SnapshotInfo | undefined> {
    return this.queryStatus(Requests.QUERY_SNAPSHOT.type, Key.SNAP_NAME, RecordPrefix.SNAPSHOT, name, opts, (record) =>
      snapshotFromStatusRecord(record, { ...asked, name }),
    );
  }

  /** QUERY_VOLUME_REQ / QUERY_SNAPSHOT_REQ: the status record, read by `read`; undefined: no such object. */
  private async queryStatus<T>(
    type: string,
    key: string,
    prefix: 'volume' | 'snapshot',
    name: string,
    opts: CallOptions | undefined,
    read: (record: Record<string, string>) => T,
  ): Promise<T | undefined> {
    const reply = await this.vbs.request(type, [[key, name]], opts);
    if (reply.retcode === RetCode.NOT_EXIST) return undefined;
    if (reply.retcode !== RetCode.OK) throw this.failed(type, reply, `cannot tell whether ${prefix} ${name} exists`);
    const record = reply.fields.records(prefix)[0];
    if (record === undefined) throw this.vbs.error('Protocol', `${type}: success reply without ${prefix}0`);
    return this.vbs.parsing(() => read(record));
  }

  /** CREATE_VOLUME_REQ with every key the Cinder driver sent: the request's values, the others neutral. */
  async createVolume(spec: VolumeSpec, sizeMiB: number, opts?: CallOptions): Promise<VolumeInfo> {
    const type = Requests.CREATE_VOLUME.type;
    if (spec.poolId === undefined)
      throw this.vbs.error(
        'PoolNotFound',
        `${type}: the original level needs a pool id (--vbs-pools or the StorageClass parameter pool)`,
      );
    const values: Record<string, string> = {
      ...ORIGINAL_CREATE_NEUTRAL,
      [Key.POOL_ID]: spec.poolId,
      [Key.THIN_FLAG]: spec.thin === false ? '0' : '1',
      [Key.MAX_IOPS]: String(spec.qos?.maxIops ?? 0),
    };
    const fields: Field[] = [
      [Key.VOL_NAME, spec.name],
      [Key.VOL_SIZE, String(sizeMiB)],
      ...ORIGINAL_CREATE_KEYS.map((k): Field => [k, values[k]!]),
    ];
    if (spec.qos?.priority !== undefined) fields.push([Key.IO_PRIORITY, String(spec.qos.priority)]);
    const asked = this.askedVolume(spec, sizeMiB, { type: 'none' });
    const reply = await this.vbs.request(type, fields, opts);
    if (reply.retcode === RetCode.OK) return this.afterCreate(type, spec.name, asked, opts);
    throw await this.whyCreateFailed(type, reply, spec.name, sizeMiB, spec.poolId, undefined, opts);
  }

  /** CREATE_VOLUME_FROM_SNAPSHOT_REQ: always a linked clone, in the snapshot's pool (it names no pool). */
  async createVolumeFromSnapshot(
    spec: VolumeSpec & { snapshotName: string },
    sizeMiB: number,
    opts?: CallOptions,
  ): Promise<VolumeInfo> {
    const type = Requests.CREATE_VOLUME_FROM_SNAPSHOT.type;
    const fields: Field[] = [
      [Key.VOL_NAME, spec.name],
      [Key.VOL_SIZE, String(sizeMiB)],
      [Key.SNAP_NAME_SRC, spec.snapshotName],
      [Key.VOL_NUM, '1'],
    ];
    const asked = {
      ...this.askedVolume(spec, sizeMiB, { type: 'snapshot', name: spec.snapshotName }),
      cloneType: 'linked' as const,
    };
    const reply = await this.vbs.request(type, fields, opts);
    if (reply.retcode === RetCode.OK) return this.afterCreate(type, spec.name, asked, opts);
    throw await this.whyCreateFailed(type, reply, spec.name, sizeMiB, spec.poolId, spec.snapshotName, opts);
  }

  async createSnapshot(name: string, volumeName: string, opts?: CallOptions): Promise<SnapshotInfo> {
    const type = Requests.CREATE_SNAPSHOT.type;
    const asked: Partial<SnapshotInfo> = { volumeName, createdAt: new Date() };
    const reply = await this.vbs.request(type, snapshotFields(name, volumeName), opts);
    if (reply.retcode === RetCode.OK) {
      const made = await this.getSnapshot(name, opts, asked);
      if (made === undefined)
        throw this.vbs.error('NotFound', `snapshot ${name} does not exist after ${type} succeeded`, RetCode.NOT_EXIST);
      return made;
    }
    // Follow-up queries: a taken name first (a repeat), then a missing source.
    if (await this.getSnapshot(name, opts))
      throw this.vbs.error('AlreadyExists', `${type}: snapshot name ${name} is taken`, reply.retcode);
    if (!(await this.getVolume(volumeName, opts)))
      throw this.vbs.error('NotFound', `${type}: source volume ${volumeName} does not exist`, reply.retcode);
    throw this.failed(type, reply, `snapshot ${name} of volume ${volumeName} was not made`);
  }

  async extendVolume(name: string, sizeMiB: number, opts?: CallOptions): Promise<VolumeInfo> {
    const type = Requests.EXTEND_VOLUME.type;
    const reply = await this.vbs.request(
      type,
      [
        [Key.VOL_NAME, name],
        [Key.VOL_SIZE, String(sizeMiB)],
      ],
      opts,
    );
    if (reply.retcode !== RetCode.OK) {
      if (!(await this.getVolume(name, opts)))
        throw this.vbs.error('NotFound', `${type}: volume ${name} does not exist`, reply.retcode);
      throw this.failed(
        type,
        reply,
        `volume ${name} was not grown to ${sizeMiB} MiB (too small a pool, or a smaller size than it has)`,
      );
    }
    const volume = await this.getVolume(name, opts, { sizeBytes: sizeMiB * MiB });
    if (volume === undefined)
      throw this.vbs.error('NotFound', `volume ${name} does not exist after ${type} succeeded`, RetCode.NOT_EXIST);
    return volume;
  }

  /** DELETE_*: -900079 or a generic failure for what is already gone is success; the caller then polls. */
  async startDelete(kind: 'volume' | 'snapshot', name: string, opts?: CallOptions): Promise<'gone' | 'accepted'> {
    const type = kind === 'volume' ? Requests.DELETE_VOLUME.type : Requests.DELETE_SNAPSHOT.type;
    const reply = await this.vbs.request(type, [[kind === 'volume' ? Key.VOL_NAME : Key.SNAP_NAME, name]], opts);
    if (reply.retcode === RetCode.NOT_EXIST) return 'gone';
    if (reply.retcode === RetCode.OK) return 'accepted';
    const exists = kind === 'volume' ? await this.getVolume(name, opts) : await this.getSnapshot(name, opts);
    if (!exists) return 'gone';
    // The product names no reason. For a volume the likeliest is a host that still has it attached.
    throw this.vbs.error(
      kind === 'volume' ? 'Attached' : 'HasDependents',
      `${type}: ${kind} ${name} exists and the VBS refused to delete it (it says no more; ${kind === 'volume' ? 'is it still attached on a host?' : 'do volumes still depend on it?'})`,
      reply.retcode,
    );
  }

  private askedVolume(spec: VolumeSpec, sizeMiB: number, source: VolumeInfo['source']): Partial<VolumeInfo> {
    return {
      sizeBytes: sizeMiB * MiB,
      poolId: spec.poolId ?? '',
      thin: spec.thin ?? true,
      source,
      createdAt: new Date(),
      qos: { maxIops: spec.qos?.maxIops ?? 0, maxMBps: 0, priority: spec.qos?.priority ?? 2 },
    };
  }

  private async afterCreate(
    type: string,
    name: string,
    asked: Partial<VolumeInfo>,
    opts?: CallOptions,
  ): Promise<VolumeInfo> {
    const volume = await this.getVolume(name, opts, asked);
    if (volume === undefined)
      throw this.vbs.error('NotFound', `volume ${name} does not exist after ${type} succeeded`, RetCode.NOT_EXIST);
    return volume;
  }

  /**
   * A create failed with the product's generic code: ask what is true now. The name taken → AlreadyExists
   * (the controller judges it by CSI's rule); a missing source snapshot → NotFound; a missing pool →
   * PoolNotFound; a pool without room for the size → NoSpace; otherwise the failure as it came.
   */
  private async whyCreateFailed(
    type: string,
    reply: VbsReply,
    name: string,
    sizeMiB: number,
    poolId: string | undefined,
    snapshotName: string | undefined,
    opts?: CallOptions,
  ): Promise<SdsError> {
    if (reply.retcode !== 1 && reply.retcode !== RetCode.NOT_EXIST)
      return this.failed(type, reply, `volume ${name} was not made`);
    if (await this.getVolume(name, opts))
      return this.vbs.error('AlreadyExists', `${type}: volume name ${name} is taken`, reply.retcode);
    if (snapshotName !== undefined && !(await this.getSnapshot(snapshotName, opts))) {
      return this.vbs.error('NotFound', `${type}: source snapshot ${snapshotName} does not exist`, reply.retcode);
    }
    if (poolId !== undefined) {
      const pools = await this.queryPools([poolId], opts);
      const pool = pools.find((p) => p.id === poolId);
      if (pool === undefined)
        return this.vbs.error('PoolNotFound', `${type}: pool ${poolId} does not exist`, reply.retcode);
      if (pool.freeBytes < sizeMiB * MiB) {
        return this.vbs.error(
          'NoSpace',
          `${type}: pool ${poolId} has ${Math.floor(pool.freeBytes / MiB)} MiB free, ${sizeMiB} MiB asked`,
          reply.retcode,
        );
      }
    }
    return this.failed(type, reply, `volume ${name} was not made`);
  }

  private failed(type: string, reply: VbsReply, what: string): SdsError {
    return this.vbs.error(
      'Internal',
      `${type} failed with retcode=${reply.retcode} and no reason (original level): ${what}`,
      reply.retcode,
    );
  }
}
