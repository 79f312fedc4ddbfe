// The driver's client for the VBS socket API (docs/socket-api.md): thin per-request methods on the session
// (session.ts: addresses, fail-over, deadlines, retries, cancellation). It reports what exists (a taken name
// answers the object holding it); CSI's idempotency rules are the controller's. On the original level the
// nine requests go through original.ts; the extended creates through creates.ts. Bytes in the interface, MiB on
// the wire.
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
import {
  askedVolume,
  checkCloneType,
  checkName,
  pageFields,
  positive,
  qosFields,
  toMiB,
  volumeFields,
} from './fields.js';
import { CLIENT_DEFAULTS, type SdsClientOptions } from './client-options.js';
import { CreateRequests } from './creates.js';
import { DeleteWaiter } from './deletes.js';
import { GroupRequests } from './groups.js';
import { ImageRequests } from './images.js';
import { MappingRequests } from './mappings.js';
import { OriginalLevel } from './original.js';
import { queryOne, requestOk } from './queries.js';
import { poolFromRecord, snapshotFromRecord, systemInfoFromReply, volumeFromRecord } from './records.js';
import { VbsSession } from './session.js';
import type { VbsAddress } from './transport.js';
import { Key, Requests, type ProtocolLevel, RecordPrefix } from '../protocol/catalog.js';
import type { Field } from '../protocol/vbs.js';

export {
  CLIENT_DEFAULTS,
  isRetriedAfterSend,
  type RetryPolicy,
  type SdsClientOptions,
  type SdsLogger,
  type SdsObserver,
} from './client-options.js';

export class SdsClient implements SdsBackend {
  private readonly s: VbsSession;
  private readonly longRequestTimeoutMs: number;
  private readonly configuredPools: readonly string[];
  private readonly original: OriginalLevel;
  private readonly groups: GroupRequests;
  private readonly images: ImageRequests;
  private readonly deletes: DeleteWaiter;
  private readonly mappings: MappingRequests;
  private readonly creates: CreateRequests;

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
    this.configuredPools = (options.pools ?? []).map((id) => checkName(Key.POOL_ID, id));
    this.original = new OriginalLevel(this.s, this.configuredPools);
    this.groups = new GroupRequests(this.s);
    this.mappings = new MappingRequests(this.s);
    this.creates = new CreateRequests(this.s, this);
    this.deletes = new DeleteWaiter(
      this.s,
      positive('deleteTimeoutMs', options.deleteTimeoutMs ?? CLIENT_DEFAULTS.deleteTimeoutMs),
      { ...CLIENT_DEFAULTS.deletePoll, ...options.deletePoll },
      (reply, name) => this.groups.groupFromReplyNow(reply, name).state,
    );
    this.images = new ImageRequests(this.s, this.longRequestTimeoutMs, (name, after, opts) =>
      this.creates.mustGetVolume(name, after, opts),
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
    const reply = await requestOk(this.s, Requests.QUERY_CAPABILITY.type, [], opts);
    return this.s.parsing(() => systemInfoFromReply(reply.fields));
  }

  async queryPools(asked: string[] = [], opts?: CallOptions): Promise<PoolInfo[]> {
    for (const id of asked) checkName(Key.POOL_ID, id);
    if (this.s.level === 'original') return this.original.queryPools(asked, opts);
    // With pools configured the driver never asks for "all pools" (pool_num=0).
    const poolIds = asked.length > 0 ? asked : [...this.configuredPools];
    const reply = await requestOk(
      this.s,
      Requests.QUERY_POOLS_CAPABILITY.type,
      [[Key.POOL_NUM, String(poolIds.length)], ...poolIds.map((id): Field => [Key.POOL_ID, id])],
      opts,
    );
    return this.s.parsing(() => reply.fields.records(RecordPrefix.POOL).map(poolFromRecord));
  }

  async createVolume(spec: VolumeSpec, opts?: CallOptions): Promise<VolumeInfo> {
    const want = askedVolume(spec);
    if (this.s.level === 'original') return this.original.createVolume(spec, want.sizeMiB, opts);
    const fields: Field[] = [...volumeFields(spec, want.sizeMiB)];
    return this.creates.volume(Requests.CREATE_VOLUME.type, fields, want, opts, this.s.requestTimeoutMs);
  }

  async createVolumeFromSnapshot(
    spec: VolumeSpec & { snapshotName: string; cloneType: CloneType },
    opts?: CallOptions,
  ): Promise<VolumeInfo> {
    checkName(Key.SNAP_NAME_SRC, spec.snapshotName);
    const cloneType = checkCloneType(spec.cloneType);
    const want = askedVolume(spec);
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
    return this.creates.volume(Requests.CREATE_VOLUME_FROM_SNAPSHOT.type, fields, want, opts, timeout);
  }

  async cloneVolume(
    spec: VolumeSpec & { sourceVolumeName: string; cloneType: CloneType },
    opts?: CallOptions,
  ): Promise<VolumeInfo> {
    checkName(Key.SRC_VOL_NAME, spec.sourceVolumeName);
    this.s.extendedOnly(Requests.CLONE_VOLUME.type);
    const cloneType = checkCloneType(spec.cloneType);
    const want = askedVolume(spec);
    const fields: Field[] = [
      ...volumeFields(spec, want.sizeMiB),
      [Key.SRC_VOL_NAME, spec.sourceVolumeName],
      [Key.CLONE_TYPE, cloneType],
    ];
    const timeout = cloneType === 'full' ? this.longRequestTimeoutMs : this.s.requestTimeoutMs;
    return this.creates.volume(Requests.CLONE_VOLUME.type, fields, want, opts, timeout);
  }

  async deleteVolume(name: string, opts?: CallOptions): Promise<void> {
    checkName(Key.VOL_NAME, name);
    await this.deleteAndWait('volume', name, opts);
  }

  async extendVolume(name: string, sizeBytes: number, opts?: CallOptions): Promise<VolumeInfo> {
    checkName(Key.VOL_NAME, name);
    const sizeMiB = toMiB('sizeBytes', sizeBytes);
    if (this.s.level === 'original') return this.original.extendVolume(name, sizeMiB, opts);
    const reply = await requestOk(
      this.s,
      Requests.EXTEND_VOLUME.type,
      [
        [Key.VOL_NAME, name],
        [Key.VOL_SIZE, String(sizeMiB)],
      ],
      opts,
    );
    return this.creates.volumeFromReplyOrQuery(reply, name, opts);
  }

  async getVolume(name: string, opts?: CallOptions): Promise<VolumeInfo | undefined> {
    checkName(Key.VOL_NAME, name);
    if (this.s.level === 'original') return this.original.getVolume(name, opts);
    return queryOne(
      this.s,
      Requests.QUERY_VOLUME.type,
      Key.VOL_NAME,
      name,
      RecordPrefix.VOLUME,
      volumeFromRecord,
      opts,
    );
  }

  async listVolumes(
    query: { marker?: string; limit?: number; poolId?: string },
    opts?: CallOptions,
  ): Promise<Page<VolumeInfo>> {
    this.s.extendedOnly(Requests.LIST_VOLUMES.type);
    const fields = pageFields(query.marker, query.limit);
    if (query.poolId !== undefined) fields.push([Key.POOL_ID, checkName(Key.POOL_ID, query.poolId)]);
    const reply = await requestOk(this.s, Requests.LIST_VOLUMES.type, fields, opts);
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
    const reply = await requestOk(this.s, Requests.MODIFY_VOLUME.type, fields, opts);
    return this.creates.volumeFromReplyOrQuery(reply, name, opts);
  }

  async createSnapshot(name: string, volumeName: string, opts?: CallOptions): Promise<SnapshotInfo> {
    checkName(Key.SNAP_NAME, name);
    checkName(Key.VOL_NAME, volumeName);
    if (this.s.level === 'original') return this.original.createSnapshot(name, volumeName, opts);
    return this.creates.snapshot(name, volumeName, opts);
  }

  async deleteSnapshot(name: string, opts?: CallOptions): Promise<void> {
    checkName(Key.SNAP_NAME, name);
    await this.deleteAndWait('snapshot', name, opts);
  }

  async getSnapshot(name: string, opts?: CallOptions): Promise<SnapshotInfo | undefined> {
    checkName(Key.SNAP_NAME, name);
    if (this.s.level === 'original') return this.original.getSnapshot(name, opts);
    const type = Requests.QUERY_SNAPSHOT.type;
    return queryOne(this.s, type, Key.SNAP_NAME, name, RecordPrefix.SNAPSHOT, snapshotFromRecord, opts);
  }

  async listSnapshots(
    query: { marker?: string; limit?: number; volumeName?: string; snapshotName?: string },
    opts?: CallOptions,
  ): Promise<Page<SnapshotInfo>> {
    this.s.extendedOnly(Requests.LIST_SNAPSHOTS.type);
    const fields = pageFields(query.marker, query.limit);
    if (query.volumeName !== undefined) fields.push([Key.VOL_NAME, checkName(Key.VOL_NAME, query.volumeName)]);
    if (query.snapshotName !== undefined) fields.push([Key.SNAP_NAME, checkName(Key.SNAP_NAME, query.snapshotName)]);
    const reply = await requestOk(this.s, Requests.LIST_SNAPSHOTS.type, fields, opts);
    return this.s.page(reply, Key.SNAP_NUM, RecordPrefix.SNAPSHOT, (r) => snapshotFromRecord(r));
  }

  // ---- group snapshots and extent maps (groups.ts), images (images.ts) ----

  createGroupSnapshot(spec: GroupSnapshotSpec, opts?: CallOptions): Promise<GroupSnapshotInfo> {
    return this.groups.create(spec, opts);
  }

  async deleteGroupSnapshot(name: string, opts?: CallOptions): Promise<void> {
    checkName(Key.GROUP_NAME, name);
    await this.deletes.deleteAndWait('group', name, opts);
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

  mapVolume(
    name: string,
    hostId: string,
    options: { readOnly: boolean; exclusive: boolean },
    opts?: CallOptions,
  ): Promise<void> {
    return this.mappings.map(name, hostId, options, opts);
  }

  unmapVolume(name: string, hostId: string, options: { force?: boolean } = {}, opts?: CallOptions): Promise<void> {
    return this.mappings.unmap(name, hostId, options, opts);
  }

  volumeHosts(name: string, opts?: CallOptions): Promise<HostMapping[]> {
    return this.mappings.hosts(name, opts);
  }

  // ---- deletes (creates: creates.ts) ----

  /** The original level says only "accepted" or "gone" (original.ts asks why a refusal was one); both poll. */
  private async deleteAndWait(kind: 'volume' | 'snapshot', name: string, opts?: CallOptions): Promise<void> {
    if (this.s.level !== 'original') return this.deletes.deleteAndWait(kind, name, opts);
    if ((await this.original.startDelete(kind, name, opts)) === 'accepted')
      await this.deletes.pollUntilGone(kind, name, opts);
  }
}

export { toMiB } from './fields.js';
