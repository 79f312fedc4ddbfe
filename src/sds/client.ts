// The driver's client for the VBS socket API (docs/socket-api.md): thin per-request methods on the session
// (session.ts: addresses, fail-over, deadlines, retries, cancellation). It reports what exists (a taken name
// answers the object holding it); CSI's idempotency rules are the controller's. On the original level the
// nine requests go through original.ts. Bytes in the interface, MiB on the wire.
import type {
  CachePolicy,
  CallOptions,
  CloneType,
  ExtentPage,
  GroupSnapshotInfo,
  GroupSnapshotSpec,
  HostMapping,
  ImageExportSpec,
  ImageImportSpec,
  ImageJob,
  Page,
  PoolInfo,
  Qos,
  SdsBackend,
  SnapshotInfo,
  SystemInfo,
  VolumeInfo,
  VolumeSpec,
} from './backend.js';
import { checkCloneType, checkName, pageFields, positive, qosFields, toMiB, volumeFields } from './fields.js';
import { GroupRequests } from './groups.js';
import { ImageRequests } from './images.js';
import { OriginalLevel } from './original.js';
import {
  hostMappingFromRecord,
  poolFromRecord,
  snapshotFromRecord,
  systemInfoFromReply,
  volumeFromRecord,
} from './records.js';
import { VbsSession, type RetryPolicy, type SdsLogger, type SdsObserver } from './session.js';
import type { VbsAddress } from './transport.js';
import {
  isResendSafe,
  Key,
  Requests,
  type KeyName,
  type ProtocolLevel,
  RecordPrefix,
  type RecordPrefixName,
} from '../protocol/catalog.js';
import { RetCode, type Field, type VbsReply } from '../protocol/vbs.js';

export type { RetryPolicy, SdsLogger, SdsObserver } from './session.js';

export interface SdsClientOptions {
  /** `tcp://host:port`, `host:port`, `host`, `unix:///path`; a comma-separated string or a list */
  addresses: string | readonly string[];
  defaultPort?: number;
  /** the shared secret (`auth_token`); never logged, never in an error message */
  token?: string;
  connectTimeoutMs?: number;
  /** bound of one call (fail-over and retries included) */
  requestTimeoutMs?: number;
  /** bound of calls that copy data on the VBS: full clones, image import and export */
  longRequestTimeoutMs?: number;
  /** how long a delete may take to complete after the VBS accepted it */
  deleteTimeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  deletePoll?: { initialDelayMs?: number; maxDelayMs?: number };
  logger?: SdsLogger;
  observer?: SdsObserver;
  /** the protocol level the VBS speaks (default extended; settable once negotiated, see setLevel) */
  level?: ProtocolLevel;
  /** pool ids the pool queries name when the caller names none (--vbs-pools); empty: all pools (extended only) */
  pools?: readonly string[];
}

export const CLIENT_DEFAULTS = {
  connectTimeoutMs: 3_000,
  requestTimeoutMs: 30_000,
  longRequestTimeoutMs: 30 * 60_000,
  deleteTimeoutMs: 60_000,
  retry: { attempts: 5, baseDelayMs: 50, maxDelayMs: 2_000 } satisfies RetryPolicy,
  deletePoll: { initialDelayMs: 2, maxDelayMs: 200 },
} as const;

/**
 * Which requests are sent again after the request went out but no reply came back: the catalog's
 * `resendSafe` (src/protocol/catalog.ts says why for each type). A request that never left (refused,
 * unreachable, connect timeout) is tried on the next address whatever its type; one that never left because
 * the VBS's accept queue was full (EAGAIN) is tried again after a back-off until the deadline; and BUSY
 * (-900013) / UNAVAILABLE (-900031) replies are retried for every type: the VBS did nothing for them.
 */
export function isRetriedAfterSend(requestType: string): boolean {
  return isResendSafe(requestType);
}

/** The name and whole-MiB size a create asks for, checked. */
interface CreateAsked {
  name: string;
  sizeMiB: number;
}

export class SdsClient implements SdsBackend {
  private readonly s: VbsSession;
  private readonly longRequestTimeoutMs: number;
  private readonly deleteTimeoutMs: number;
  private readonly deletePoll: { initialDelayMs: number; maxDelayMs: number };
  private readonly configuredPools: readonly string[];
  private readonly original: OriginalLevel;
  private readonly groups: GroupRequests;
  private readonly images: ImageRequests;

  constructor(options: SdsClientOptions) {
    this.s = new VbsSession({
      addresses: options.addresses,
      defaultPort: options.defaultPort,
      token: options.token,
      connectTimeoutMs: positive('connectTimeoutMs', options.connectTimeoutMs ?? CLIENT_DEFAULTS.connectTimeoutMs),
      requestTimeoutMs: positive('requestTimeoutMs', options.requestTimeoutMs ?? CLIENT_DEFAULTS.requestTimeoutMs),
      retry: { ...CLIENT_DEFAULTS.retry, ...options.retry },
      logger: options.logger,
      observer: options.observer,
      level: options.level ?? 'extended',
    });
    this.longRequestTimeoutMs = positive(
      'longRequestTimeoutMs',
      options.longRequestTimeoutMs ?? CLIENT_DEFAULTS.longRequestTimeoutMs,
    );
    this.deleteTimeoutMs = positive('deleteTimeoutMs', options.deleteTimeoutMs ?? CLIENT_DEFAULTS.deleteTimeoutMs);
    this.deletePoll = { ...CLIENT_DEFAULTS.deletePoll, ...options.deletePoll };
    this.configuredPools = (options.pools ?? []).map((id) => checkName(Key.POOL_ID, id));
    this.original = new OriginalLevel(this.s, this.configuredPools);
    this.groups = new GroupRequests(this.s);
    this.images = new ImageRequests(this.s, this.longRequestTimeoutMs, (name, after, opts) =>
      this.mustGetVolume(name, after, opts),
    );
  }

  /** The protocol level requests are sent at. */
  get level(): ProtocolLevel {
    return this.s.level;
  }

  /** Sets the level, once it is negotiated (before any CSI call is served). */
  setLevel(level: ProtocolLevel): void {
    this.s.level = level;
  }

  /** The configured pool ids (--vbs-pools). */
  get pools(): readonly string[] {
    return this.configuredPools;
  }

  /** The configured addresses, in order (for diagnostics). */
  get addressList(): readonly VbsAddress[] {
    return this.s.addresses;
  }

  close(): void {
    this.s.close();
  }

  // ---- the interface ----

  async systemInfo(opts?: CallOptions): Promise<SystemInfo> {
    const reply = await this.requestOk(Requests.QUERY_CAPABILITY.type, [], opts);
    return this.s.parsing(() => systemInfoFromReply(reply.fields));
  }

  async queryPools(asked: string[] = [], opts?: CallOptions): Promise<PoolInfo[]> {
    for (const id of asked) checkName(Key.POOL_ID, id);
    if (this.s.level === 'original') return this.original.queryPools(asked, opts);
    // With pools configured the driver never asks for "all pools" (pool_num=0).
    const poolIds = asked.length > 0 ? asked : [...this.configuredPools];
    const reply = await this.requestOk(
      Requests.QUERY_POOLS_CAPABILITY.type,
      [[Key.POOL_NUM, String(poolIds.length)], ...poolIds.map((id): Field => [Key.POOL_ID, id])],
      opts,
    );
    return this.s.parsing(() => reply.fields.records(RecordPrefix.POOL).map(poolFromRecord));
  }

  async createVolume(spec: VolumeSpec, opts?: CallOptions): Promise<VolumeInfo> {
    const want = this.asked(spec);
    if (this.s.level === 'original') return this.original.createVolume(spec, want.sizeMiB, opts);
    const fields: Field[] = [...volumeFields(spec, want.sizeMiB)];
    return this.createVolumeLike(Requests.CREATE_VOLUME.type, fields, want, opts, this.s.requestTimeoutMs);
  }

  async createVolumeFromSnapshot(
    spec: VolumeSpec & { snapshotName: string; cloneType: CloneType },
    opts?: CallOptions,
  ): Promise<VolumeInfo> {
    checkName(Key.SNAP_NAME_SRC, spec.snapshotName);
    const cloneType = checkCloneType(spec.cloneType);
    const want = this.asked(spec);
    if (this.s.level === 'original') {
      if (cloneType !== 'linked')
        throw this.s.error(
          'NotSupported',
          'CREATE_VOLUME_FROM_SNAPSHOT_REQ: the original level makes linked clones only',
        );
      return this.original.createVolumeFromSnapshot(spec, want.sizeMiB, opts);
    }
    const fields: Field[] = [
      ...volumeFields(spec, want.sizeMiB),
      [Key.SNAP_NAME_SRC, spec.snapshotName],
      [Key.VOL_NUM, '1'],
      [Key.CLONE_TYPE, cloneType],
    ];
    const timeout = cloneType === 'full' ? this.longRequestTimeoutMs : this.s.requestTimeoutMs;
    return this.createVolumeLike(Requests.CREATE_VOLUME_FROM_SNAPSHOT.type, fields, want, opts, timeout);
  }

  async cloneVolume(
    spec: VolumeSpec & { sourceVolumeName: string; cloneType: CloneType },
    opts?: CallOptions,
  ): Promise<VolumeInfo> {
    checkName(Key.SRC_VOL_NAME, spec.sourceVolumeName);
    this.s.extendedOnly(Requests.CLONE_VOLUME.type);
    const cloneType = checkCloneType(spec.cloneType);
    const want = this.asked(spec);
    const fields: Field[] = [
      ...volumeFields(spec, want.sizeMiB),
      [Key.SRC_VOL_NAME, spec.sourceVolumeName],
      [Key.CLONE_TYPE, cloneType],
    ];
    const timeout = cloneType === 'full' ? this.longRequestTimeoutMs : this.s.requestTimeoutMs;
    return this.createVolumeLike(Requests.CLONE_VOLUME.type, fields, want, opts, timeout);
  }

  async deleteVolume(name: string, opts?: CallOptions): Promise<void> {
    checkName(Key.VOL_NAME, name);
    if (this.s.level === 'original') {
      if ((await this.original.startDelete('volume', name, opts)) === 'accepted')
        await this.pollUntilGone(Requests.DELETE_VOLUME.type, Requests.QUERY_VOLUME.type, Key.VOL_NAME, name, opts);
      return;
    }
    await this.deleteAndWait(Requests.DELETE_VOLUME.type, Requests.QUERY_VOLUME.type, Key.VOL_NAME, name, opts);
  }

  async extendVolume(name: string, sizeBytes: number, opts?: CallOptions): Promise<VolumeInfo> {
    checkName(Key.VOL_NAME, name);
    const sizeMiB = toMiB('sizeBytes', sizeBytes);
    if (this.s.level === 'original') return this.original.extendVolume(name, sizeMiB, opts);
    const reply = await this.requestOk(
      Requests.EXTEND_VOLUME.type,
      [
        [Key.VOL_NAME, name],
        [Key.VOL_SIZE, String(sizeMiB)],
      ],
      opts,
    );
    return this.volumeFromReplyOrQuery(reply, name, opts);
  }

  async getVolume(name: string, opts?: CallOptions): Promise<VolumeInfo | undefined> {
    checkName(Key.VOL_NAME, name);
    if (this.s.level === 'original') return this.original.getVolume(name, opts);
    return this.queryOne(Requests.QUERY_VOLUME.type, Key.VOL_NAME, name, RecordPrefix.VOLUME, volumeFromRecord, opts);
  }

  async listVolumes(
    query: { marker?: string; limit?: number; poolId?: string },
    opts?: CallOptions,
  ): Promise<Page<VolumeInfo>> {
    this.s.extendedOnly(Requests.LIST_VOLUMES.type);
    const fields = pageFields(query.marker, query.limit);
    if (query.poolId !== undefined) fields.push([Key.POOL_ID, checkName(Key.POOL_ID, query.poolId)]);
    const reply = await this.requestOk(Requests.LIST_VOLUMES.type, fields, opts);
    return this.s.page(reply, Key.VOL_NUM, RecordPrefix.VOLUME, (r) => volumeFromRecord(r));
  }

  async modifyVolume(
    name: string,
    change: { qos?: Partial<Qos>; cachePolicy?: CachePolicy },
    opts?: CallOptions,
  ): Promise<VolumeInfo> {
    checkName(Key.VOL_NAME, name);
    this.s.extendedOnly(Requests.MODIFY_VOLUME.type);
    const fields: Field[] = [[Key.VOL_NAME, name], ...qosFields(change.qos, change.cachePolicy)];
    const reply = await this.requestOk(Requests.MODIFY_VOLUME.type, fields, opts);
    return this.volumeFromReplyOrQuery(reply, name, opts);
  }

  async createSnapshot(name: string, volumeName: string, opts?: CallOptions): Promise<SnapshotInfo> {
    checkName(Key.SNAP_NAME, name);
    checkName(Key.VOL_NAME, volumeName);
    const type = Requests.CREATE_SNAPSHOT.type;
    if (this.s.level === 'original') return this.original.createSnapshot(name, volumeName, opts);
    const reply = await this.s.request(
      type,
      [
        [Key.SNAP_NAME, name],
        [Key.VOL_NAME, volumeName],
        [Key.SMARTFLAG, '1'],
      ],
      opts,
    );
    if (reply.retcode === RetCode.OK) {
      return (
        this.s.firstRecord(reply, RecordPrefix.SNAPSHOT, (r) => snapshotFromRecord(r, name)) ??
        (await this.mustGetSnapshot(name, type, opts))
      );
    }
    if (reply.retcode !== RetCode.ALREADY_EXISTS) throw this.s.replyError(type, reply);
    const existing =
      this.s.firstRecord(reply, RecordPrefix.SNAPSHOT, (r) => snapshotFromRecord(r, name)) ??
      (await this.getSnapshot(name, opts));
    if (existing === undefined) {
      throw this.s.error(
        'AlreadyExists',
        `${type}: snapshot name ${name} is taken, but the VBS shows no such snapshot; retry`,
        reply.retcode,
      );
    }
    if (existing.state === 'deleting') {
      throw this.s.error('Busy', `${type}: snapshot ${name} exists and is being deleted; retry later`, RetCode.BUSY);
    }
    // The client reports what holds the name; the controller judges whether it is the one asked for.
    return existing;
  }

  async deleteSnapshot(name: string, opts?: CallOptions): Promise<void> {
    checkName(Key.SNAP_NAME, name);
    if (this.s.level === 'original') {
      if ((await this.original.startDelete('snapshot', name, opts)) === 'accepted')
        await this.pollUntilGone(
          Requests.DELETE_SNAPSHOT.type,
          Requests.QUERY_SNAPSHOT.type,
          Key.SNAP_NAME,
          name,
          opts,
        );
      return;
    }
    await this.deleteAndWait(Requests.DELETE_SNAPSHOT.type, Requests.QUERY_SNAPSHOT.type, Key.SNAP_NAME, name, opts);
  }

  async getSnapshot(name: string, opts?: CallOptions): Promise<SnapshotInfo | undefined> {
    checkName(Key.SNAP_NAME, name);
    if (this.s.level === 'original') return this.original.getSnapshot(name, opts);
    const type = Requests.QUERY_SNAPSHOT.type;
    return this.queryOne(type, Key.SNAP_NAME, name, RecordPrefix.SNAPSHOT, snapshotFromRecord, opts);
  }

  async listSnapshots(
    query: { marker?: string; limit?: number; volumeName?: string; snapshotName?: string },
    opts?: CallOptions,
  ): Promise<Page<SnapshotInfo>> {
    this.s.extendedOnly(Requests.LIST_SNAPSHOTS.type);
    const fields = pageFields(query.marker, query.limit);
    if (query.volumeName !== undefined) fields.push([Key.VOL_NAME, checkName(Key.VOL_NAME, query.volumeName)]);
    if (query.snapshotName !== undefined) fields.push([Key.SNAP_NAME, checkName(Key.SNAP_NAME, query.snapshotName)]);
    const reply = await this.requestOk(Requests.LIST_SNAPSHOTS.type, fields, opts);
    return this.s.page(reply, Key.SNAP_NUM, RecordPrefix.SNAPSHOT, (r) => snapshotFromRecord(r));
  }

  // ---- group snapshots and extent maps (groups.ts), images (images.ts) ----

  createGroupSnapshot(spec: GroupSnapshotSpec, opts?: CallOptions): Promise<GroupSnapshotInfo> {
    return this.groups.create(spec, opts);
  }

  async deleteGroupSnapshot(name: string, opts?: CallOptions): Promise<void> {
    checkName(Key.GROUP_NAME, name);
    await this.deleteAndWait(
      Requests.DELETE_GROUP_SNAPSHOT.type,
      Requests.QUERY_GROUP_SNAPSHOT.type,
      Key.GROUP_NAME,
      name,
      opts,
    );
  }

  getGroupSnapshot(name: string, opts?: CallOptions): Promise<GroupSnapshotInfo | undefined> {
    return this.groups.get(name, opts);
  }

  snapshotExtents(
    name: string,
    page: { offset?: number; limit?: number } = {},
    opts?: CallOptions,
  ): Promise<ExtentPage> {
    return this.groups.extents(name, page, opts);
  }

  snapshotDelta(
    baseName: string,
    targetName: string,
    page: { offset?: number; limit?: number } = {},
    opts?: CallOptions,
  ): Promise<ExtentPage> {
    return this.groups.delta(baseName, targetName, page, opts);
  }

  importImage(spec: ImageImportSpec, opts?: CallOptions): Promise<{ job: ImageJob; volume: VolumeInfo }> {
    return this.images.importImage(spec, opts);
  }

  exportImage(spec: ImageExportSpec, opts?: CallOptions): Promise<ImageJob> {
    return this.images.exportImage(spec, opts);
  }

  getImageJob(id: string, opts?: CallOptions): Promise<ImageJob | undefined> {
    return this.images.getJob(id, opts);
  }

  waitImageJob(
    id: string,
    timeoutMs: number,
    opts?: CallOptions,
    onProgress?: (job: ImageJob) => void,
  ): Promise<ImageJob> {
    return this.images.waitJob(id, timeoutMs, opts, onProgress);
  }

  async mapVolume(
    name: string,
    hostId: string,
    options: { readOnly: boolean; exclusive: boolean },
    opts?: CallOptions,
  ): Promise<void> {
    const access: Field[] = [
      [Key.ACCESS_MODE, options.readOnly ? 'ro' : 'rw'],
      [Key.EXCLUSIVE, options.exclusive ? '1' : '0'],
    ];
    await this.hostRequest(Requests.MAP_VOLUME.type, name, hostId, access, opts);
  }

  async unmapVolume(
    name: string,
    hostId: string,
    options: { force?: boolean } = {},
    opts?: CallOptions,
  ): Promise<void> {
    const force: Field[] = [[Key.FORCE, options.force ? '1' : '0']];
    await this.hostRequest(Requests.UNMAP_VOLUME.type, name, hostId, force, opts);
  }

  async volumeHosts(name: string, opts?: CallOptions): Promise<HostMapping[]> {
    checkName(Key.VOL_NAME, name);
    this.s.extendedOnly(Requests.QUERY_VOLUME_HOSTS.type);
    const reply = await this.requestOk(Requests.QUERY_VOLUME_HOSTS.type, [[Key.VOL_NAME, name]], opts);
    return this.s.counted(reply, Key.HOST_NUM, RecordPrefix.HOST, hostMappingFromRecord);
  }

  // ---- creates and deletes ----

  private async createVolumeLike(
    type: string,
    fields: Field[],
    want: CreateAsked,
    opts: CallOptions | undefined,
    timeoutMs: number,
  ): Promise<VolumeInfo> {
    const reply = await this.s.request(type, fields, opts, timeoutMs);
    if (reply.retcode === RetCode.OK) return this.volumeFromReplyOrQuery(reply, want.name, opts);
    if (reply.retcode !== RetCode.ALREADY_EXISTS) throw this.s.replyError(type, reply);
    // The name is taken: the same volume asked again (a retry, a repeated CSI call) is success.
    const existing =
      this.s.firstRecord(reply, RecordPrefix.VOLUME, (r) => volumeFromRecord(r, want.name)) ??
      (await this.getVolume(want.name, opts));
    if (existing === undefined) {
      throw this.s.error(
        'AlreadyExists',
        `${type}: volume name ${want.name} is taken, but the VBS shows no such volume; retry`,
        reply.retcode,
      );
    }
    if (existing.state === 'deleting') {
      throw this.s.error('Busy', `${type}: volume ${want.name} exists and is being deleted; retry later`, RetCode.BUSY);
    }
    // The client reports what holds the name; the controller judges, by CSI's rules, whether it is the one asked for.
    this.s.logger?.debug(
      { request: type, volume: want.name },
      'volume name already taken; reporting the existing volume',
    );
    return existing;
  }

  /** DELETE_*, then poll QUERY_* until the VBS says the object is gone (its deletes are asynchronous). */
  private async deleteAndWait(
    deleteType: string,
    queryType: string,
    key: typeof Key.VOL_NAME | typeof Key.SNAP_NAME | typeof Key.GROUP_NAME,
    name: string,
    opts?: CallOptions,
  ): Promise<void> {
    const reply = await this.s.request(deleteType, [[key, name]], opts);
    if (reply.retcode === RetCode.NOT_EXIST) return;
    if (reply.retcode !== RetCode.OK) throw this.s.replyError(deleteType, reply);
    // Our VBS says when the delete already completed; any other VBS is polled until NOT_EXIST.
    if (reply.fields.get(Key.DELETED) === '1') return;
    await this.pollUntilGone(deleteType, queryType, key, name, opts);
  }

  /** Polls QUERY_* after an accepted DELETE_* until the VBS says the object is gone, bounded. */
  private async pollUntilGone(
    deleteType: string,
    queryType: string,
    key: typeof Key.VOL_NAME | typeof Key.SNAP_NAME | typeof Key.GROUP_NAME,
    name: string,
    opts?: CallOptions,
  ): Promise<void> {
    await this.s.withCall(opts, async (signal) => {
      const pollOpts: CallOptions = { ...opts, signal };
      const deadline = Date.now() + this.deleteTimeoutMs;
      let delay = this.deletePoll.initialDelayMs;
      for (;;) {
        const left = deadline - Date.now();
        const poll = await this.s.request(
          queryType,
          [[key, name]],
          pollOpts,
          Math.max(1, Math.min(this.s.requestTimeoutMs, left)),
        );
        if (poll.retcode === RetCode.NOT_EXIST) return;
        if (poll.retcode !== RetCode.OK) throw this.s.replyError(queryType, poll);
        if (Date.now() + delay > deadline) {
          const state =
            this.s.level === 'original'
              ? poll.fields.records(key === Key.VOL_NAME ? RecordPrefix.VOLUME : RecordPrefix.SNAPSHOT)[0]?.status
              : key === Key.VOL_NAME
                ? this.s.firstRecord(poll, RecordPrefix.VOLUME, (r) => volumeFromRecord(r, name))?.state
                : key === Key.GROUP_NAME
                  ? this.groups.groupFromReplyNow(poll, name).state
                  : this.s.firstRecord(poll, RecordPrefix.SNAPSHOT, (r) => snapshotFromRecord(r, name))?.state;
          throw this.s.error(
            'Timeout',
            `${deleteType} ${name}: accepted, but still there after ${this.deleteTimeoutMs} ms (state ${state ?? 'unknown'})`,
          );
        }
        await this.s.sleep(delay, signal, `waiting for ${deleteType} to complete`);
        delay = Math.min(delay * 2, this.deletePoll.maxDelayMs);
      }
    });
  }

  /** Sends `type` with `fields`; its reply, or the reply's error unless it is OK. */
  private async requestOk(type: string, fields: Field[], opts?: CallOptions): Promise<VbsReply> {
    const reply = await this.s.request(type, fields, opts);
    if (reply.retcode !== RetCode.OK) throw this.s.replyError(type, reply);
    return reply;
  }

  /** A request (extended) about volume `name` on host `hostId`, with its own keys after those two. */
  private async hostRequest(type: string, name: string, hostId: string, more: Field[], opts?: CallOptions) {
    checkName(Key.VOL_NAME, name);
    checkName(Key.HOST_ID, hostId);
    this.s.extendedOnly(type);
    await this.requestOk(type, [[Key.VOL_NAME, name], [Key.HOST_ID, hostId], ...more], opts);
  }

  /** A query of one object by name: its record, or undefined when the VBS says it does not exist. */
  private async queryOne<T>(
    type: string,
    key: KeyName,
    name: string,
    prefix: RecordPrefixName,
    parse: (record: Record<string, string>, name: string) => T,
    opts?: CallOptions,
  ): Promise<T | undefined> {
    const reply = await this.s.request(type, [[key, name]], opts);
    if (reply.retcode === RetCode.NOT_EXIST) return undefined;
    if (reply.retcode !== RetCode.OK) throw this.s.replyError(type, reply);
    const found = this.s.firstRecord(reply, prefix, (r) => parse(r, name));
    if (found === undefined) throw this.s.error('Protocol', `${type}: success reply without ${prefix}0`);
    return found;
  }

  private async volumeFromReplyOrQuery(reply: VbsReply, name: string, opts?: CallOptions): Promise<VolumeInfo> {
    // A part-1 VBS answers a bare retcode=0: ask for the record.
    return (
      this.s.firstRecord(reply, RecordPrefix.VOLUME, (r) => volumeFromRecord(r, name)) ??
      (await this.mustGetVolume(name, 'reply', opts))
    );
  }

  private async mustGetVolume(name: string, after: string, opts?: CallOptions): Promise<VolumeInfo> {
    const volume = await this.getVolume(name, opts);
    if (volume === undefined)
      throw this.s.error('NotFound', `volume ${name} does not exist after ${after} succeeded`, RetCode.NOT_EXIST);
    return volume;
  }

  private async mustGetSnapshot(name: string, after: string, opts?: CallOptions): Promise<SnapshotInfo> {
    const snapshot = await this.getSnapshot(name, opts);
    if (snapshot === undefined)
      throw this.s.error('NotFound', `snapshot ${name} does not exist after ${after} succeeded`, RetCode.NOT_EXIST);
    return snapshot;
  }

  private asked(spec: VolumeSpec): CreateAsked {
    checkName(Key.VOL_NAME, spec.name);
    if (spec.poolId !== undefined) checkName(Key.POOL_ID, spec.poolId);
    return { name: spec.name, sizeMiB: toMiB('sizeBytes', spec.sizeBytes) };
  }
}

export { toMiB } from './fields.js';
