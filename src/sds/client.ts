// The driver's client for the VBS socket API (docs/socket-api.md). The only code in the driver that speaks
// the VBS protocol: it owns addresses and fail-over, deadlines, safe retries, result codes → SdsError kinds,
// idempotent creates and the waits behind asynchronous deletes. Bytes in the interface, MiB on the wire.
import { MiB } from './backend.js';
import type {
  CachePolicy, CallOptions, CloneType, ExtentPage, GroupSnapshotInfo, GroupSnapshotSpec, HostMapping, ImageExportSpec, ImageImportSpec,
  ImageJob, Page, PoolInfo, Qos, SdsBackend, SnapshotInfo, SystemInfo, VolumeInfo, VolumeSpec,
} from './backend.js';
import { kindOfRetcode, SdsError, type SdsErrorKind } from './errors.js';
import {
  extentPageFromReply, groupFromRecord, hostMappingFromRecord, jobFromRecord, poolFromRecord, snapshotFromRecord, systemInfoFromReply,
  volumeFromRecord, FieldReader,
} from './records.js';
import { AddressError, exchange, parseAddressList, TransportError, type VbsAddress } from './transport.js';
import {
  encodeRequest, isValidName, MAX_LIST_LIMIT, parseReply, ProtocolError, RetCode, type Field, type VbsReply,
} from '../protocol/vbs.js';
import { isResendSafe, type ProtocolLevel } from '../protocol/catalog.js';
import { OriginalLevel, type VbsRequester } from './original.js';

/**
 * Told of every request when it ends, for metrics: its type (`CREATE_VOLUME_REQ`), its result (`ok`, or the
 * SdsErrorKind of its retcode or failure: `NotFound`, `Unavailable`, `Timeout`...) and how long it took,
 * retries included. Called on the request path: keep it cheap, and it must not throw.
 */
export type SdsObserver = (requestType: string, result: 'ok' | SdsErrorKind, seconds: number) => void;

/** What the client logs; pino's logger fits. The token never reaches it. */
export interface SdsLogger {
  debug(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

export interface RetryPolicy {
  /** retries after a lost reply (safe request types only), and separately after BUSY/UNAVAILABLE replies */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

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

const REQUEST_ID_PATTERN = /^[\x20-\x7e]{1,128}$/;
const TOKEN_PATTERN = /^[\x21-\x7e]{1,4096}$/;
const CACHE_POLICIES: readonly CachePolicy[] = ['none', 'read', 'readwrite'];

export class SdsClient implements SdsBackend {
  private readonly addresses: VbsAddress[];
  private readonly token: string | undefined;
  private readonly connectTimeoutMs: number;
  private readonly requestTimeoutMs: number;
  private readonly longRequestTimeoutMs: number;
  private readonly deleteTimeoutMs: number;
  private readonly retry: RetryPolicy;
  private readonly deletePoll: { initialDelayMs: number; maxDelayMs: number };
  private readonly logger: SdsLogger | undefined;
  private readonly observer: SdsObserver | undefined;
  /** index of the address that last took a request: tried first next time */
  private preferred = 0;
  private readonly closing = new AbortController();
  /** links each call's own signal to the client's closing signal and the caller's signal */
  private readonly cancels = new CancelFanout();
  private currentLevel: ProtocolLevel;
  private readonly configuredPools: readonly string[];
  private readonly original: OriginalLevel;

  constructor(options: SdsClientOptions) {
    try {
      this.addresses = parseAddressList(options.addresses, options.defaultPort);
    } catch (err) {
      if (err instanceof AddressError) throw new SdsError('InvalidParameter', `vbs-url: ${err.message}`);
      throw err;
    }
    if (options.token !== undefined && options.token !== '') {
      // Checked here so a bad token fails at start, with a message that does not show it.
      if (!TOKEN_PATTERN.test(options.token)) {
        throw new SdsError('InvalidParameter', 'vbs token: must be 1-4096 printable ASCII characters without spaces');
      }
      this.token = options.token;
    }
    this.connectTimeoutMs = positive('connectTimeoutMs', options.connectTimeoutMs ?? CLIENT_DEFAULTS.connectTimeoutMs);
    this.requestTimeoutMs = positive('requestTimeoutMs', options.requestTimeoutMs ?? CLIENT_DEFAULTS.requestTimeoutMs);
    this.longRequestTimeoutMs = positive('longRequestTimeoutMs', options.longRequestTimeoutMs ?? CLIENT_DEFAULTS.longRequestTimeoutMs);
    this.deleteTimeoutMs = positive('deleteTimeoutMs', options.deleteTimeoutMs ?? CLIENT_DEFAULTS.deleteTimeoutMs);
    this.retry = { ...CLIENT_DEFAULTS.retry, ...options.retry };
    this.deletePoll = { ...CLIENT_DEFAULTS.deletePoll, ...options.deletePoll };
    this.logger = options.logger;
    this.observer = options.observer;
    this.currentLevel = options.level ?? 'extended';
    this.configuredPools = (options.pools ?? []).map((id) => this.checkName('pool_id', id));
    const requester: VbsRequester = {
      request: (type, fields, opts, timeoutMs) => this.request(type, fields, opts, timeoutMs),
      error: (kind, message, retcode) => this.error(kind, message, retcode),
      parsing: (fn) => this.parsing(fn),
    };
    this.original = new OriginalLevel(requester, this.configuredPools);
  }

  /** The protocol level requests are sent at. */
  get level(): ProtocolLevel {
    return this.currentLevel;
  }

  /** Sets the level, once it is negotiated (before any CSI call is served). */
  setLevel(level: ProtocolLevel): void {
    this.currentLevel = level;
  }

  /** The configured pool ids (--vbs-pools). */
  get pools(): readonly string[] {
    return this.configuredPools;
  }

  /** Refuses, without sending it, a request the VBS of the original level does not know. */
  private extendedOnly(type: string): void {
    if (this.currentLevel === 'original') throw this.error('NotSupported', `${type}: not offered by a VBS of the original protocol level`);
  }

  /** The configured addresses, in order (for diagnostics). */
  get addressList(): readonly VbsAddress[] {
    return this.addresses;
  }

  close(): void {
    this.closing.abort(new SdsError('Unavailable', 'the VBS client was closed'));
  }

  // ---- the interface ----

  async systemInfo(opts?: CallOptions): Promise<SystemInfo> {
    const reply = await this.request('QUERY_CAPABILITY_REQ', [], opts);
    if (reply.retcode !== RetCode.OK) throw this.replyError('QUERY_CAPABILITY_REQ', reply);
    return this.parsing(() => systemInfoFromReply(reply.fields));
  }

  async queryPools(asked: string[] = [], opts?: CallOptions): Promise<PoolInfo[]> {
    for (const id of asked) this.checkName('pool_id', id);
    if (this.currentLevel === 'original') return this.original.queryPools(asked, opts);
    // With pools configured the driver never asks for "all pools" (pool_num=0).
    const poolIds = asked.length > 0 ? asked : [...this.configuredPools];
    const reply = await this.request('QUERY_POOLS_CAPABILITY_REQ', [['pool_num', String(poolIds.length)], ...poolIds.map((id): Field => ['pool_id', id])], opts);
    if (reply.retcode !== RetCode.OK) throw this.replyError('QUERY_POOLS_CAPABILITY_REQ', reply);
    return this.parsing(() => reply.fields.records('pool').map(poolFromRecord));
  }

  async createVolume(spec: VolumeSpec, opts?: CallOptions): Promise<VolumeInfo> {
    const want = this.wanted(spec, { type: 'none' });
    if (this.currentLevel === 'original') return this.original.createVolume(spec, want.sizeMiB, opts);
    const fields: Field[] = [...this.volumeFields(spec, want.sizeMiB)];
    return this.createVolumeLike('CREATE_VOLUME_REQ', fields, want, opts, this.requestTimeoutMs);
  }

  async createVolumeFromSnapshot(spec: VolumeSpec & { snapshotName: string; cloneType: CloneType }, opts?: CallOptions): Promise<VolumeInfo> {
    this.checkName('snap_name_src', spec.snapshotName);
    const cloneType = this.checkCloneType(spec.cloneType);
    const want = this.wanted(spec, { type: 'snapshot', name: spec.snapshotName }, cloneType);
    if (this.currentLevel === 'original') {
      if (cloneType !== 'linked') throw this.error('NotSupported', 'CREATE_VOLUME_FROM_SNAPSHOT_REQ: the original level makes linked clones only');
      return this.original.createVolumeFromSnapshot(spec, want.sizeMiB, opts);
    }
    const fields: Field[] = [
      ...this.volumeFields(spec, want.sizeMiB),
      ['snap_name_src', spec.snapshotName], ['vol_num', '1'], ['clone_type', cloneType],
    ];
    const timeout = cloneType === 'full' ? this.longRequestTimeoutMs : this.requestTimeoutMs;
    return this.createVolumeLike('CREATE_VOLUME_FROM_SNAPSHOT_REQ', fields, want, opts, timeout);
  }

  async cloneVolume(spec: VolumeSpec & { sourceVolumeName: string; cloneType: CloneType }, opts?: CallOptions): Promise<VolumeInfo> {
    this.checkName('src_vol_name', spec.sourceVolumeName);
    this.extendedOnly('CLONE_VOLUME_REQ');
    const cloneType = this.checkCloneType(spec.cloneType);
    const want = this.wanted(spec, { type: 'volume', name: spec.sourceVolumeName }, cloneType);
    const fields: Field[] = [
      ...this.volumeFields(spec, want.sizeMiB), ['src_vol_name', spec.sourceVolumeName], ['clone_type', cloneType],
    ];
    const timeout = cloneType === 'full' ? this.longRequestTimeoutMs : this.requestTimeoutMs;
    return this.createVolumeLike('CLONE_VOLUME_REQ', fields, want, opts, timeout);
  }

  async deleteVolume(name: string, opts?: CallOptions): Promise<void> {
    this.checkName('vol_name', name);
    if (this.currentLevel === 'original') {
      if ((await this.original.startDelete('volume', name, opts)) === 'accepted') await this.pollUntilGone('DELETE_VOLUME_REQ', 'QUERY_VOLUME_REQ', 'vol_name', name, opts);
      return;
    }
    await this.deleteAndWait('DELETE_VOLUME_REQ', 'QUERY_VOLUME_REQ', 'vol_name', name, opts);
  }

  async extendVolume(name: string, sizeBytes: number, opts?: CallOptions): Promise<VolumeInfo> {
    this.checkName('vol_name', name);
    const sizeMiB = toMiB('sizeBytes', sizeBytes);
    if (this.currentLevel === 'original') return this.original.extendVolume(name, sizeMiB, opts);
    const reply = await this.request('EXTEND_VOLUME_REQ', [['vol_name', name], ['vol_size', String(sizeMiB)]], opts);
    if (reply.retcode !== RetCode.OK) throw this.replyError('EXTEND_VOLUME_REQ', reply);
    return this.volumeFromReplyOrQuery(reply, name, opts);
  }

  async getVolume(name: string, opts?: CallOptions): Promise<VolumeInfo | undefined> {
    this.checkName('vol_name', name);
    if (this.currentLevel === 'original') return this.original.getVolume(name, opts);
    const reply = await this.request('QUERY_VOLUME_REQ', [['vol_name', name]], opts);
    if (reply.retcode === RetCode.NOT_EXIST) return undefined;
    if (reply.retcode !== RetCode.OK) throw this.replyError('QUERY_VOLUME_REQ', reply);
    const volume = this.firstRecord(reply, 'volume', (r) => volumeFromRecord(r, name));
    if (volume === undefined) throw this.error('Protocol', 'QUERY_VOLUME_REQ: success reply without volume0');
    return volume;
  }

  async listVolumes(query: { marker?: string; limit?: number; poolId?: string }, opts?: CallOptions): Promise<Page<VolumeInfo>> {
    this.extendedOnly('LIST_VOLUMES_REQ');
    const fields = this.pageFields(query.marker, query.limit);
    if (query.poolId !== undefined) fields.push(['pool_id', this.checkName('pool_id', query.poolId)]);
    const reply = await this.request('LIST_VOLUMES_REQ', fields, opts);
    if (reply.retcode !== RetCode.OK) throw this.replyError('LIST_VOLUMES_REQ', reply);
    return this.page(reply, 'vol_num', 'volume', (r) => volumeFromRecord(r));
  }

  async modifyVolume(name: string, change: { qos?: Partial<Qos>; cachePolicy?: CachePolicy }, opts?: CallOptions): Promise<VolumeInfo> {
    this.checkName('vol_name', name);
    this.extendedOnly('MODIFY_VOLUME_REQ');
    const fields: Field[] = [['vol_name', name], ...this.qosFields(change.qos, change.cachePolicy)];
    const reply = await this.request('MODIFY_VOLUME_REQ', fields, opts);
    if (reply.retcode !== RetCode.OK) throw this.replyError('MODIFY_VOLUME_REQ', reply);
    return this.volumeFromReplyOrQuery(reply, name, opts);
  }

  async createSnapshot(name: string, volumeName: string, opts?: CallOptions): Promise<SnapshotInfo> {
    this.checkName('snap_name', name);
    this.checkName('vol_name', volumeName);
    const type = 'CREATE_SNAPSHOT_REQ';
    if (this.currentLevel === 'original') return this.original.createSnapshot(name, volumeName, opts);
    const reply = await this.request(type, [['snap_name', name], ['vol_name', volumeName], ['smartflag', '1']], opts);
    if (reply.retcode === RetCode.OK) {
      return this.firstRecord(reply, 'snapshot', (r) => snapshotFromRecord(r, name)) ?? (await this.mustGetSnapshot(name, type, opts));
    }
    if (reply.retcode !== RetCode.ALREADY_EXISTS) throw this.replyError(type, reply);
    const existing = this.firstRecord(reply, 'snapshot', (r) => snapshotFromRecord(r, name)) ?? (await this.getSnapshot(name, opts));
    if (existing === undefined) {
      throw this.error('AlreadyExists', `${type}: snapshot name ${name} is taken, but the VBS shows no such snapshot; retry`, reply.retcode);
    }
    if (existing.state === 'deleting') {
      throw this.error('Busy', `${type}: snapshot ${name} exists and is being deleted; retry later`, RetCode.BUSY);
    }
    // The client reports what holds the name; the controller judges whether it is the one asked for.
    return existing;
  }

  async deleteSnapshot(name: string, opts?: CallOptions): Promise<void> {
    this.checkName('snap_name', name);
    if (this.currentLevel === 'original') {
      if ((await this.original.startDelete('snapshot', name, opts)) === 'accepted') await this.pollUntilGone('DELETE_SNAPSHOT_REQ', 'QUERY_SNAPSHOT_REQ', 'snap_name', name, opts);
      return;
    }
    await this.deleteAndWait('DELETE_SNAPSHOT_REQ', 'QUERY_SNAPSHOT_REQ', 'snap_name', name, opts);
  }

  async getSnapshot(name: string, opts?: CallOptions): Promise<SnapshotInfo | undefined> {
    this.checkName('snap_name', name);
    if (this.currentLevel === 'original') return this.original.getSnapshot(name, opts);
    const reply = await this.request('QUERY_SNAPSHOT_REQ', [['snap_name', name]], opts);
    if (reply.retcode === RetCode.NOT_EXIST) return undefined;
    if (reply.retcode !== RetCode.OK) throw this.replyError('QUERY_SNAPSHOT_REQ', reply);
    const snapshot = this.firstRecord(reply, 'snapshot', (r) => snapshotFromRecord(r, name));
    if (snapshot === undefined) throw this.error('Protocol', 'QUERY_SNAPSHOT_REQ: success reply without snapshot0');
    return snapshot;
  }

  async listSnapshots(
    query: { marker?: string; limit?: number; volumeName?: string; snapshotName?: string },
    opts?: CallOptions,
  ): Promise<Page<SnapshotInfo>> {
    this.extendedOnly('LIST_SNAPSHOTS_REQ');
    const fields = this.pageFields(query.marker, query.limit);
    if (query.volumeName !== undefined) fields.push(['vol_name', this.checkName('vol_name', query.volumeName)]);
    if (query.snapshotName !== undefined) fields.push(['snap_name', this.checkName('snap_name', query.snapshotName)]);
    const reply = await this.request('LIST_SNAPSHOTS_REQ', fields, opts);
    if (reply.retcode !== RetCode.OK) throw this.replyError('LIST_SNAPSHOTS_REQ', reply);
    return this.page(reply, 'snap_num', 'snapshot', (r) => snapshotFromRecord(r));
  }

  async createGroupSnapshot(spec: GroupSnapshotSpec, opts?: CallOptions): Promise<GroupSnapshotInfo> {
    const type = 'CREATE_GROUP_SNAPSHOT_REQ';
    this.extendedOnly(type);
    this.checkName('group_name', spec.name);
    if (spec.volumeNames.length === 0) throw this.error('InvalidParameter', 'vol_name: at least one member volume is needed');
    const wanted = [...new Set(spec.volumeNames.map((v) => this.checkName('vol_name', v)))].sort();
    if (wanted.length !== spec.volumeNames.length) throw this.error('InvalidParameter', 'vol_name: a member volume is listed twice');
    const fields: Field[] = [['group_name', spec.name], ...wanted.map((v): Field => ['vol_name', v])];
    if (spec.quiesce !== undefined) fields.push(['quiesce', this.checkWord('quiesce', spec.quiesce, ['freeze', 'flush'])]);
    if (spec.freezeTimeoutMs !== undefined) fields.push(['freeze_timeout_ms', String(wholeNumber('freezeTimeoutMs', spec.freezeTimeoutMs))]);
    // The cut holds file systems frozen at most freeze_timeout_ms (60 s at most); the rest is quick.
    const timeout = this.requestTimeoutMs + (spec.freezeTimeoutMs ?? 10_000);
    const reply = await this.request(type, fields, opts, timeout);
    if (reply.retcode === RetCode.OK) return this.groupFromReply(reply, spec.name, type, opts);
    if (reply.retcode !== RetCode.ALREADY_EXISTS) throw this.replyError(type, reply);
    const existing = reply.fields.has('group0') ? this.groupFromReplyNow(reply, spec.name) : await this.getGroupSnapshot(spec.name, opts);
    if (existing === undefined) {
      // The name was free, but a member's derived snapshot name was not: ret_desc says which.
      throw this.replyError(type, reply);
    }
    if (existing.state === 'deleting') throw this.error('Busy', `${type}: group snapshot ${spec.name} exists and is being deleted; retry later`, RetCode.BUSY);
    const differences: string[] = [];
    if (existing.volumeNames.join(':') !== wanted.join(':')) {
      differences.push(`its member volumes are ${existing.volumeNames.join(', ')}, asked ${wanted.join(', ')}`);
    }
    if (spec.quiesce !== undefined && existing.quiesce !== spec.quiesce) differences.push(`it was quiesced by ${existing.quiesce}, asked ${spec.quiesce}`);
    if (differences.length > 0) throw this.error('AlreadyExists', `group snapshot ${spec.name} already exists: ${differences.join('; ')}`, reply.retcode);
    return existing;
  }

  async deleteGroupSnapshot(name: string, opts?: CallOptions): Promise<void> {
    this.checkName('group_name', name);
    await this.deleteAndWait('DELETE_GROUP_SNAPSHOT_REQ', 'QUERY_GROUP_SNAPSHOT_REQ', 'group_name', name, opts);
  }

  async getGroupSnapshot(name: string, opts?: CallOptions): Promise<GroupSnapshotInfo | undefined> {
    this.checkName('group_name', name);
    this.extendedOnly('QUERY_GROUP_SNAPSHOT_REQ');
    const reply = await this.request('QUERY_GROUP_SNAPSHOT_REQ', [['group_name', name]], opts);
    if (reply.retcode === RetCode.NOT_EXIST) return undefined;
    if (reply.retcode !== RetCode.OK) throw this.replyError('QUERY_GROUP_SNAPSHOT_REQ', reply);
    return this.groupFromReplyNow(reply, name);
  }

  async snapshotExtents(name: string, page: { offset?: number; limit?: number } = {}, opts?: CallOptions): Promise<ExtentPage> {
    this.checkName('snap_name', name);
    return this.extentPage('QUERY_SNAPSHOT_EXTENTS_REQ', [['snap_name', name]], page, opts);
  }

  async snapshotDelta(baseName: string, targetName: string, page: { offset?: number; limit?: number } = {}, opts?: CallOptions): Promise<ExtentPage> {
    this.checkName('base_snap_name', baseName);
    this.checkName('snap_name', targetName);
    return this.extentPage('QUERY_SNAPSHOT_DELTA_REQ', [['base_snap_name', baseName], ['snap_name', targetName]], page, opts);
  }

  private async extentPage(type: string, fields: Field[], page: { offset?: number; limit?: number }, opts?: CallOptions): Promise<ExtentPage> {
    const offset = wholeNumber('offset', page.offset ?? 0);
    const all: Field[] = [...fields, ['offset', String(offset)]];
    if (page.limit !== undefined) {
      if (!Number.isInteger(page.limit) || page.limit < 1 || page.limit > MAX_LIST_LIMIT) throw this.error('InvalidParameter', `limit: must be 1-${MAX_LIST_LIMIT}`);
      all.push(['limit', String(page.limit)]);
    }
    this.extendedOnly(type);
    const reply = await this.request(type, all, opts);
    if (reply.retcode !== RetCode.OK) throw this.replyError(type, reply);
    return this.parsing(() => extentPageFromReply(reply.fields, offset));
  }

  private groupFromReplyNow(reply: VbsReply, name: string): GroupSnapshotInfo {
    const snapshots = this.counted(reply, 'snap_num', 'snapshot', (r) => snapshotFromRecord(r));
    const group = this.firstRecord(reply, 'group', (r) => groupFromRecord(r, snapshots, name));
    if (group === undefined) throw this.error('Protocol', 'group snapshot reply without group0');
    return group;
  }

  private async groupFromReply(reply: VbsReply, name: string, after: string, opts?: CallOptions): Promise<GroupSnapshotInfo> {
    if (reply.fields.has('group0')) return this.groupFromReplyNow(reply, name);
    const group = await this.getGroupSnapshot(name, opts);
    if (group === undefined) throw this.error('NotFound', `group snapshot ${name} does not exist after ${after} succeeded`, RetCode.NOT_EXIST);
    return group;
  }

  async mapVolume(name: string, hostId: string, options: { readOnly: boolean; exclusive: boolean }, opts?: CallOptions): Promise<void> {
    this.checkName('vol_name', name);
    this.checkName('host_id', hostId);
    this.extendedOnly('MAP_VOLUME_REQ');
    const reply = await this.request('MAP_VOLUME_REQ', [
      ['vol_name', name], ['host_id', hostId], ['access_mode', options.readOnly ? 'ro' : 'rw'], ['exclusive', options.exclusive ? '1' : '0'],
    ], opts);
    if (reply.retcode !== RetCode.OK) throw this.replyError('MAP_VOLUME_REQ', reply);
  }

  async unmapVolume(name: string, hostId: string, options: { force?: boolean } = {}, opts?: CallOptions): Promise<void> {
    this.checkName('vol_name', name);
    this.checkName('host_id', hostId);
    this.extendedOnly('UNMAP_VOLUME_REQ');
    const reply = await this.request('UNMAP_VOLUME_REQ', [['vol_name', name], ['host_id', hostId], ['force', options.force ? '1' : '0']], opts);
    if (reply.retcode !== RetCode.OK) throw this.replyError('UNMAP_VOLUME_REQ', reply);
  }

  async volumeHosts(name: string, opts?: CallOptions): Promise<HostMapping[]> {
    this.checkName('vol_name', name);
    this.extendedOnly('QUERY_VOLUME_HOSTS_REQ');
    const reply = await this.request('QUERY_VOLUME_HOSTS_REQ', [['vol_name', name]], opts);
    if (reply.retcode !== RetCode.OK) throw this.replyError('QUERY_VOLUME_HOSTS_REQ', reply);
    return this.counted(reply, 'host_num', 'host', hostMappingFromRecord);
  }

  async importImage(spec: ImageImportSpec, opts?: CallOptions): Promise<{ job: ImageJob; volume: VolumeInfo }> {
    const type = 'IMPORT_IMAGE_REQ';
    this.extendedOnly(type);
    this.checkName('vol_name', spec.name);
    const fields: Field[] = [['vol_name', spec.name], ['image_url', spec.url]];
    if (spec.format !== undefined) fields.push(['image_format', this.checkWord('image_format', spec.format, ['auto', 'raw', 'qcow2'])]);
    if (spec.checksum !== undefined) {
      if (!/^(sha256|md5):[0-9a-fA-F]+$/.test(spec.checksum)) throw this.error('InvalidParameter', 'checksum: must be sha256:<hex> or md5:<hex>');
      fields.push(['checksum', spec.checksum]);
    }
    if (spec.sizeBytes !== undefined) fields.push(['vol_size', String(toMiB('sizeBytes', spec.sizeBytes))]);
    fields.push(...this.placementFields(spec), ...this.qosFields(spec.qos, spec.cachePolicy));
    const reply = await this.request(type, fields, opts, this.longRequestTimeoutMs);
    if (reply.retcode !== RetCode.OK) throw this.replyError(type, reply);
    const jobId = this.parsing(() => FieldReader.ofReply('import reply', reply.fields).name('job_id'));
    const volume = this.firstRecord(reply, 'volume', (r) => volumeFromRecord(r, spec.name)) ?? (await this.mustGetVolume(spec.name, type, opts));
    return { job: { id: jobId, type: 'import', state: 'running', volumeName: spec.name, bytesDone: 0, bytesTotal: 0 }, volume };
  }

  async exportImage(spec: ImageExportSpec, opts?: CallOptions): Promise<ImageJob> {
    const type = 'EXPORT_IMAGE_REQ';
    this.extendedOnly(type);
    if ((spec.volumeName === undefined) === (spec.snapshotName === undefined)) {
      throw this.error('InvalidParameter', 'export: exactly one of volumeName and snapshotName is needed');
    }
    const fields: Field[] = [];
    if (spec.volumeName !== undefined) fields.push(['vol_name', this.checkName('vol_name', spec.volumeName)]);
    if (spec.snapshotName !== undefined) fields.push(['snap_name', this.checkName('snap_name', spec.snapshotName)]);
    if (!spec.path.startsWith('/')) throw this.error('InvalidParameter', 'image_path: must be an absolute path');
    fields.push(['image_path', spec.path]);
    if (spec.format !== undefined) fields.push(['image_format', this.checkWord('image_format', spec.format, ['raw', 'qcow2'])]);
    if (spec.overwrite) fields.push(['overwrite', '1']);
    const reply = await this.request(type, fields, opts, this.longRequestTimeoutMs);
    if (reply.retcode !== RetCode.OK) throw this.replyError(type, reply);
    const jobId = this.parsing(() => FieldReader.ofReply('export reply', reply.fields).name('job_id'));
    const job: ImageJob = { id: jobId, type: 'export', state: 'running', bytesDone: 0, bytesTotal: 0 };
    if (spec.volumeName !== undefined) job.volumeName = spec.volumeName;
    if (spec.snapshotName !== undefined) job.snapshotName = spec.snapshotName;
    return job;
  }

  async getImageJob(id: string, opts?: CallOptions): Promise<ImageJob | undefined> {
    if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(id)) throw this.error('InvalidParameter', 'job_id: must be 1-128 characters of [A-Za-z0-9_.:-]');
    this.extendedOnly('QUERY_IMAGE_JOB_REQ');
    const reply = await this.request('QUERY_IMAGE_JOB_REQ', [['job_id', id]], opts);
    if (reply.retcode === RetCode.NOT_EXIST) return undefined;
    if (reply.retcode !== RetCode.OK) throw this.replyError('QUERY_IMAGE_JOB_REQ', reply);
    const job = this.firstRecord(reply, 'job', jobFromRecord);
    if (job === undefined) throw this.error('Protocol', 'QUERY_IMAGE_JOB_REQ: success reply without job0');
    return job;
  }

  async waitImageJob(id: string, timeoutMs: number, opts?: CallOptions, onProgress?: (job: ImageJob) => void): Promise<ImageJob> {
    const deadline = Date.now() + positive('timeoutMs', timeoutMs);
    return this.withCall(opts, async (signal) => {
      // The polls are linked to this wait's own signal (cancelled with it), not again to the caller's.
      const pollOpts: CallOptions = { ...opts, signal };
      let delay = 20;
      for (;;) {
        const job = await this.getImageJob(id, pollOpts);
        if (job === undefined) throw this.error('NotFound', `image job ${id} does not exist`, RetCode.NOT_EXIST);
        if (job.state !== 'running') return job;
        onProgress?.(job);
        if (Date.now() + delay > deadline) {
          throw this.error('Timeout', `image job ${id} still running after ${timeoutMs} ms (${job.bytesDone}/${job.bytesTotal} bytes)`);
        }
        await this.sleep(delay, signal, 'waiting for an image job');
        delay = Math.min(delay * 2, 1_000);
      }
    });
  }

  // ---- creates and deletes ----

  private async createVolumeLike(type: string, fields: Field[], want: CreateAsked, opts: CallOptions | undefined, timeoutMs: number): Promise<VolumeInfo> {
    const reply = await this.request(type, fields, opts, timeoutMs);
    if (reply.retcode === RetCode.OK) return this.volumeFromReplyOrQuery(reply, want.name, opts);
    if (reply.retcode !== RetCode.ALREADY_EXISTS) throw this.replyError(type, reply);
    // The name is taken: the same volume asked again (a retry, a repeated CSI call) is success.
    const existing = this.firstRecord(reply, 'volume', (r) => volumeFromRecord(r, want.name)) ?? (await this.getVolume(want.name, opts));
    if (existing === undefined) {
      throw this.error('AlreadyExists', `${type}: volume name ${want.name} is taken, but the VBS shows no such volume; retry`, reply.retcode);
    }
    if (existing.state === 'deleting') {
      throw this.error('Busy', `${type}: volume ${want.name} exists and is being deleted; retry later`, RetCode.BUSY);
    }
    // The client reports what holds the name; the controller judges, by CSI's rules, whether it is the one asked for.
    this.logger?.debug({ request: type, volume: want.name }, 'volume name already taken; reporting the existing volume');
    return existing;
  }

  /** DELETE_*, then poll QUERY_* until the VBS says the object is gone (its deletes are asynchronous). */
  private async deleteAndWait(deleteType: string, queryType: string, key: 'vol_name' | 'snap_name' | 'group_name', name: string, opts?: CallOptions): Promise<void> {
    const reply = await this.request(deleteType, [[key, name]], opts);
    if (reply.retcode === RetCode.NOT_EXIST) return;
    if (reply.retcode !== RetCode.OK) throw this.replyError(deleteType, reply);
    // Our VBS says when the delete already completed; any other VBS is polled until NOT_EXIST.
    if (reply.fields.get('deleted') === '1') return;
    await this.pollUntilGone(deleteType, queryType, key, name, opts);
  }

  /** Polls QUERY_* after an accepted DELETE_* until the VBS says the object is gone, bounded. */
  private async pollUntilGone(deleteType: string, queryType: string, key: 'vol_name' | 'snap_name' | 'group_name', name: string, opts?: CallOptions): Promise<void> {
    await this.withCall(opts, async (signal) => {
      const pollOpts: CallOptions = { ...opts, signal };
      const deadline = Date.now() + this.deleteTimeoutMs;
      let delay = this.deletePoll.initialDelayMs;
      for (;;) {
        const left = deadline - Date.now();
        const poll = await this.request(queryType, [[key, name]], pollOpts, Math.max(1, Math.min(this.requestTimeoutMs, left)));
        if (poll.retcode === RetCode.NOT_EXIST) return;
        if (poll.retcode !== RetCode.OK) throw this.replyError(queryType, poll);
        if (Date.now() + delay > deadline) {
          const state = this.currentLevel === 'original'
            ? poll.fields.records(key === 'vol_name' ? 'volume' : 'snapshot')[0]?.status
            : key === 'vol_name'
            ? this.firstRecord(poll, 'volume', (r) => volumeFromRecord(r, name))?.state
            : key === 'group_name'
              ? this.groupFromReplyNow(poll, name).state
              : this.firstRecord(poll, 'snapshot', (r) => snapshotFromRecord(r, name))?.state;
          throw this.error('Timeout', `${deleteType} ${name}: accepted, but still there after ${this.deleteTimeoutMs} ms (state ${state ?? 'unknown'})`);
        }
        await this.sleep(delay, signal, `waiting for ${deleteType} to complete`);
        delay = Math.min(delay * 2, this.deletePoll.maxDelayMs);
      }
    });
  }

  private async volumeFromReplyOrQuery(reply: VbsReply, name: string, opts?: CallOptions): Promise<VolumeInfo> {
    // A part-1 VBS answers a bare retcode=0: ask for the record.
    return this.firstRecord(reply, 'volume', (r) => volumeFromRecord(r, name)) ?? (await this.mustGetVolume(name, 'reply', opts));
  }

  private async mustGetVolume(name: string, after: string, opts?: CallOptions): Promise<VolumeInfo> {
    const volume = await this.getVolume(name, opts);
    if (volume === undefined) throw this.error('NotFound', `volume ${name} does not exist after ${after} succeeded`, RetCode.NOT_EXIST);
    return volume;
  }

  private async mustGetSnapshot(name: string, after: string, opts?: CallOptions): Promise<SnapshotInfo> {
    const snapshot = await this.getSnapshot(name, opts);
    if (snapshot === undefined) throw this.error('NotFound', `snapshot ${name} does not exist after ${after} succeeded`, RetCode.NOT_EXIST);
    return snapshot;
  }

  // ---- the request loop ----

  /**
   * Sends one request and returns its reply, whatever its retcode except BUSY/UNAVAILABLE (retried, then
   * thrown). Fail-over, deadline, cancellation and safe retries happen here; callers interpret retcodes.
   */
  private async request(type: string, fields: readonly Field[], opts: CallOptions = {}, timeoutMs: number = this.requestTimeoutMs): Promise<VbsReply> {
    if (this.closing.signal.aborted) throw this.error('Unavailable', `${type}: the VBS client is closed`);
    const bytes = this.encode(type, fields, opts.requestId);
    if (this.observer === undefined) return this.withCall(opts, (signal) => this.requestLoop(type, bytes, opts, timeoutMs, signal));
    const started = performance.now();
    try {
      const reply = await this.withCall(opts, (signal) => this.requestLoop(type, bytes, opts, timeoutMs, signal));
      this.observer(type, reply.retcode === RetCode.OK ? 'ok' : kindOfRetcode(reply.retcode), (performance.now() - started) / 1e3);
      return reply;
    } catch (err) {
      this.observer(type, err instanceof SdsError ? err.kind : 'Internal', (performance.now() - started) / 1e3);
      throw err;
    }
  }

  private async requestLoop(type: string, bytes: Buffer, opts: CallOptions, timeoutMs: number, signal: AbortSignal): Promise<VbsReply> {
    const deadline = Date.now() + timeoutMs;
    const retryAfterSend = isResendSafe(type);
    let lostReplies = 0;
    let busyReplies = 0;
    let overloads = 0;
    let lastBusyReply: VbsReply | undefined;
    for (;;) {
      let raw: Buffer;
      try {
        raw = await this.sendToFirstReachable(bytes, deadline, signal);
      } catch (err) {
        if (!(err instanceof TransportError)) throw err;
        if (err.failure === 'overloaded') {
          // Its accept queue is full (a burst of calls): it is alive and nothing was sent, so any request type
          // may be tried again, backing off, until the deadline — rather than answer "unreachable".
          this.logger?.debug({ request: type, requestId: opts.requestId, attempt: overloads + 1 }, 'VBS accept queue full; retrying');
          await this.backoff(Math.min(overloads++, 6), deadline, signal, type, () => this.error('Unavailable', `${type}: the VBS was too busy to accept a connection until the deadline (${err.message})`, undefined, err));
          continue;
        }
        // A VBS that just said BUSY and now cannot be reached before the deadline is still best described as busy.
        if (!err.sent && err.failure !== 'aborted' && lastBusyReply !== undefined) throw this.replyError(type, lastBusyReply);
        if (err.failure === 'aborted') {
          throw this.error('Timeout', `${type}: cancelled ${err.sent ? 'after the request was sent (outcome unknown)' : 'before the request was sent'}`, undefined, err);
        }
        if (err.failure === 'timeout') throw this.error('Timeout', `${type}: ${err.message} within ${timeoutMs} ms; the outcome is unknown`, undefined, err);
        if (err.failure === 'oversize') throw this.error('Protocol', `${type}: ${err.message}`, undefined, err);
        if (err.failure === 'no-reply') {
          if (retryAfterSend && lostReplies < this.retry.attempts) {
            this.logger?.warn({ request: type, requestId: opts.requestId, attempt: lostReplies + 1, error: this.redact(err.message) }, 'VBS reply lost; sending the request again');
            await this.backoff(lostReplies++, deadline, signal, type, () => this.error('Unavailable', `${type}: ${err.message}; no time left to retry`, undefined, err));
            continue;
          }
          throw this.error('Unavailable', `${type}: ${err.message}; the outcome is unknown`, undefined, err);
        }
        throw this.error('Unavailable', `${type}: no VBS could be reached (${err.message})`, undefined, err);
      }
      let reply: VbsReply;
      try {
        reply = parseReply(raw);
      } catch (err) {
        if (err instanceof ProtocolError) throw this.error('Protocol', `${type}: unreadable reply: ${err.message}`, undefined, err);
        throw err;
      }
      this.logger?.debug({ request: type, requestId: opts.requestId, retcode: reply.retcode }, 'VBS reply');
      if (reply.retcode === RetCode.BUSY || reply.retcode === RetCode.UNAVAILABLE) {
        lastBusyReply = reply;
        if (busyReplies < this.retry.attempts) {
          this.logger?.debug({ request: type, requestId: opts.requestId, retcode: reply.retcode, attempt: busyReplies + 1 }, 'VBS busy; retrying');
          await this.backoff(busyReplies++, deadline, signal, type, () => this.replyError(type, reply));
          continue;
        }
        throw this.replyError(type, reply);
      }
      return reply;
    }
  }

  /** Tries the addresses, the last good one first, until one takes the request. */
  private async sendToFirstReachable(bytes: Buffer, deadline: number, signal: AbortSignal): Promise<Buffer> {
    const order = [this.preferred, ...this.addresses.keys()].filter((v, i, all) => all.indexOf(v) === i);
    const failures: string[] = [];
    let overloaded = false;
    for (const index of order) {
      if (Date.now() >= deadline) {
        failures.push('deadline passed');
        break;
      }
      try {
        return await exchange(this.addresses[index]!, bytes, {
          connectTimeoutMs: this.connectTimeoutMs,
          deadline,
          signal,
          onSent: () => {
            this.preferred = index;
          },
        });
      } catch (err) {
        if (err instanceof TransportError && !err.sent && err.failure !== 'aborted') {
          this.logger?.debug({ address: this.addresses[index]!.text, error: err.message }, 'VBS address failed; trying the next');
          failures.push(err.message);
          if (err.failure === 'overloaded') overloaded = true;
          continue;
        }
        throw err;
      }
    }
    // One VBS alive but too busy to accept is worth another try; all of them down is not.
    throw new TransportError(overloaded ? 'overloaded' : 'connect-failed', false, failures.join('; '));
  }

  private async backoff(attempt: number, deadline: number, signal: AbortSignal, type: string, giveUp: () => SdsError): Promise<void> {
    const exp = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** attempt);
    const delay = Math.round(exp / 2 + (Math.random() * exp) / 2); // jitter: callers retrying together spread out
    if (Date.now() + delay >= deadline) throw giveUp();
    await this.sleep(delay, signal, `${type} retry`);
  }

  private sleep(ms: number, signal: AbortSignal, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(this.error('Timeout', `cancelled while ${what}`));
        return;
      }
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(this.error('Timeout', `cancelled while ${what}`));
      };
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Runs `fn` with a signal of its own that fires when the caller's signal does or the client closes.
   * What listens to it (the exchange, a backoff sleep) listens to this call only; its links to the shared
   * signals are dropped when the call ends, however it ends.
   */
  private async withCall<T>(opts: CallOptions | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const call = new AbortController();
    const unlinks = [this.cancels.link(this.closing.signal, call)];
    if (opts?.signal) unlinks.push(this.cancels.link(opts.signal, call));
    try {
      return await fn(call.signal);
    } finally {
      for (const unlink of unlinks) unlink();
    }
  }

  private encode(type: string, fields: readonly Field[], requestId: string | undefined): Buffer {
    const head: Field[] = [];
    // A VBS of the original level knows neither key.
    if (this.currentLevel === 'original') return this.encodeFields(type, fields);
    // The token goes first: the VBS checks it before reading anything else.
    if (this.token !== undefined) head.push(['auth_token', this.token]);
    if (requestId !== undefined) {
      if (!REQUEST_ID_PATTERN.test(requestId)) throw this.error('InvalidParameter', 'request_id: must be 1-128 printable ASCII characters');
      head.push(['request_id', requestId]);
    }
    return this.encodeFields(type, [...head, ...fields]);
  }

  private encodeFields(type: string, fields: readonly Field[]): Buffer {
    try {
      return encodeRequest(type, fields);
    } catch (err) {
      if (err instanceof ProtocolError) throw this.error('InvalidParameter', `${type}: ${err.message}`);
      throw err;
    }
  }

  // ---- replies and errors ----

  private replyError(type: string, reply: VbsReply): SdsError {
    const e = SdsError.fromRetcode(type, reply.retcode, reply.fields.get('ret_desc'));
    return new SdsError(e.kind, this.redact(e.message), e.retcode);
  }

  private error(kind: SdsErrorKind, message: string, retcode?: number, cause?: unknown): SdsError {
    return new SdsError(kind, this.redact(message), retcode, cause === undefined ? undefined : { cause });
  }

  /** Whatever a message quotes (a ret_desc, a garbled line), the token never appears in it. */
  private redact(message: string): string {
    return this.token === undefined ? message : message.split(this.token).join('<token>');
  }

  /** Runs a record parser, turning codec errors into 'Protocol' errors. */
  private parsing<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof ProtocolError) throw this.error('Protocol', `garbled reply from the VBS: ${err.message}`);
      if (err instanceof SdsError) throw new SdsError(err.kind, this.redact(err.message), err.retcode);
      throw err;
    }
  }

  private firstRecord<T>(reply: VbsReply, prefix: string, parse: (record: Record<string, string>) => T): T | undefined {
    return this.parsing(() => {
      const records = reply.fields.records(prefix);
      return records.length === 0 ? undefined : parse(records[0]!);
    });
  }

  /** Records announced by a count key (`vol_num`): a reply cut short shows as a mismatch. */
  private counted<T>(reply: VbsReply, countKey: string, prefix: string, parse: (record: Record<string, string>) => T): T[] {
    return this.parsing(() => {
      const records = reply.fields.records(prefix);
      const count = FieldReader.ofReply('reply', reply.fields).int(countKey, { fallback: records.length, min: 0 });
      if (count !== records.length) {
        throw new SdsError('Protocol', `garbled reply from the VBS: ${countKey}=${count} but ${records.length} ${prefix} records`);
      }
      return records.map(parse);
    });
  }

  private page<T>(reply: VbsReply, countKey: string, prefix: string, parse: (record: Record<string, string>) => T): Page<T> {
    const items = this.counted(reply, countKey, prefix, parse);
    const nextMarker = reply.fields.get('next_marker') ?? '';
    if (nextMarker !== '' && !isValidName(nextMarker)) throw this.error('Protocol', `garbled reply from the VBS: next_marker: not a name`);
    return { items, nextMarker };
  }

  // ---- request fields and argument checks ----

  private wanted(spec: VolumeSpec, _source: VolumeInfo['source'], _cloneType?: CloneType): CreateAsked {
    this.checkName('vol_name', spec.name);
    if (spec.poolId !== undefined) this.checkName('pool_id', spec.poolId);
    return { name: spec.name, sizeMiB: toMiB('sizeBytes', spec.sizeBytes) };
  }

  private volumeFields(spec: VolumeSpec, sizeMiB: number): Field[] {
    return [['vol_name', spec.name], ['vol_size', String(sizeMiB)], ...this.placementFields(spec), ...this.qosFields(spec.qos, spec.cachePolicy)];
  }

  private placementFields(spec: { poolId?: string; thin?: boolean }): Field[] {
    const fields: Field[] = [];
    if (spec.poolId !== undefined) fields.push(['pool_id', this.checkName('pool_id', spec.poolId)]);
    fields.push(['thin_flag', spec.thin === false ? '0' : '1']);
    return fields;
  }

  private qosFields(qos: Partial<Qos> | undefined, cachePolicy: CachePolicy | undefined): Field[] {
    const fields: Field[] = [];
    if (qos?.maxIops !== undefined) fields.push(['max_iops', String(wholeNumber('maxIops', qos.maxIops))]);
    if (qos?.maxMBps !== undefined) fields.push(['max_mbps', String(wholeNumber('maxMBps', qos.maxMBps))]);
    if (qos?.priority !== undefined) {
      if (![1, 2, 3].includes(qos.priority)) throw this.error('InvalidParameter', 'priority: must be 1 (low), 2 (normal) or 3 (high)');
      fields.push(['IOPRIORITY', String(qos.priority)]);
    }
    if (cachePolicy !== undefined) fields.push(['cache_policy', this.checkWord('cache_policy', cachePolicy, CACHE_POLICIES)]);
    return fields;
  }

  private pageFields(marker: string | undefined, limit: number | undefined): Field[] {
    const fields: Field[] = [];
    if (marker !== undefined && marker !== '') fields.push(['marker', this.checkName('marker', marker)]);
    if (limit !== undefined) {
      if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) throw this.error('InvalidParameter', `limit: must be 1-${MAX_LIST_LIMIT}`);
      fields.push(['limit', String(limit)]);
    }
    return fields;
  }

  private checkName(field: string, value: string): string {
    if (typeof value !== 'string' || !isValidName(value)) {
      throw this.error('InvalidParameter', `${field}: must be 1-96 characters of [A-Za-z0-9_.-] starting with a letter or digit`);
    }
    return value;
  }

  private checkCloneType(value: string): CloneType {
    return this.checkWord('clone_type', value as CloneType, ['linked', 'full']);
  }

  private checkWord<T extends string>(field: string, value: T, allowed: readonly T[]): T {
    if (!allowed.includes(value)) throw this.error('InvalidParameter', `${field}: must be one of ${allowed.join(', ')}`);
    return value;
  }
}

/**
 * Fans a shared signal (the client's closing signal, a caller's signal passed to many calls) out to the
 * calls in flight with ONE abort listener per shared signal, removed as soon as the last linked call ends.
 * A listener per call would pile up on a shared signal with concurrency (Node warns past 10) and stay
 * there as long as the signal lives if a call forgot to remove it.
 */
class CancelFanout {
  private readonly linked = new Map<AbortSignal, { calls: Set<AbortController>; onAbort: () => void }>();

  /** Aborts `call` when `shared` fires, until the returned unlink is called. */
  link(shared: AbortSignal, call: AbortController): () => void {
    if (shared.aborted) {
      call.abort(shared.reason);
      return () => {};
    }
    let entry = this.linked.get(shared);
    if (entry === undefined) {
      const calls = new Set<AbortController>();
      const onAbort = (): void => {
        this.linked.delete(shared);
        for (const c of calls) c.abort(shared.reason);
      };
      entry = { calls, onAbort };
      this.linked.set(shared, entry);
      shared.addEventListener('abort', onAbort, { once: true });
    }
    const mine = entry;
    mine.calls.add(call);
    return () => {
      mine.calls.delete(call);
      if (mine.calls.size === 0 && this.linked.get(shared) === mine) {
        this.linked.delete(shared);
        shared.removeEventListener('abort', mine.onAbort);
      }
    };
  }
}

/** Bytes → whole MiB, rounded up (the wire speaks MiB; limits are the caller's business). */
export function toMiB(field: string, bytes: number): number {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new SdsError('InvalidParameter', `${field}: must be a whole, non-negative number of bytes`);
  return Math.ceil(bytes / MiB);
}

function wholeNumber(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new SdsError('InvalidParameter', `${field}: must be a whole, non-negative number`);
  return value;
}

function positive(field: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new SdsError('InvalidParameter', `${field}: must be a positive number of milliseconds`);
  return value;
}
