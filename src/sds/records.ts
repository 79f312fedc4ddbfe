// Records of VBS replies (docs/socket-api.md §2.4) turned into the back-end interface's types.
// Strict: a field that is present must be well-formed, or the whole reply is refused as a 'Protocol' error
// naming the record and the field; never a NaN or an unknown state in a result. Fields of our extensions
// that a part-1 VBS does not send take neutral defaults, so the original operations keep working.
import { GiB, MiB } from './backend.js';
import type {
  ByteRange,
  CachePolicy,
  CloneType,
  ExtentPage,
  GroupSnapshotInfo,
  GroupSnapshotState,
  HostMapping,
  ImageJob,
  IoPriority,
  PoolInfo,
  QuiesceMode,
  SnapshotInfo,
  SnapshotState,
  SystemInfo,
  VolumeInfo,
  VolumeState,
} from './backend.js';
import { SdsError } from './errors.js';
import { RetCode, type Fields } from '../protocol/vbs.js';
import { Field, Key, RecordPrefix } from '../protocol/catalog.js';

const VOLUME_STATES: ReadonlyMap<number, VolumeState> = new Map([
  [1, 'available'],
  [2, 'in-use'],
  [10, 'busy'],
  [11, 'deleting'],
  [12, 'fault'],
]);
const SNAPSHOT_STATES: ReadonlyMap<number, SnapshotState> = new Map([
  [1, 'available'],
  [2, 'in-use'],
  [10, 'creating'],
  [11, 'deleting'],
  [12, 'fault'],
]);

function garbled(what: string, field: string, problem: string, value?: string): SdsError {
  const shown = value === undefined ? '' : `: ${JSON.stringify(value.length > 60 ? value.slice(0, 60) + '…' : value)}`;
  return new SdsError('Protocol', `garbled ${what} from the VBS: ${field}: ${problem}${shown}`);
}

/** Reads typed fields out of one parsed record (or reply), naming the field in every complaint. */
export class FieldReader {
  constructor(
    private readonly what: string,
    private readonly get: (field: string) => string | undefined,
  ) {}

  static ofRecord(what: string, record: Record<string, string>): FieldReader {
    return new FieldReader(what, (f) => (Object.prototype.hasOwnProperty.call(record, f) ? record[f] : undefined));
  }

  static ofReply(what: string, fields: Fields): FieldReader {
    return new FieldReader(what, (f) => fields.get(f));
  }

  /** A string; `fallback` when absent; required (absent → error) when no fallback is given. */
  str(field: string, fallback?: string): string {
    const v = this.get(field);
    if (v !== undefined) return v;
    if (fallback === undefined) throw garbled(this.what, field, 'missing');
    return fallback;
  }

  /** A non-empty string (a name). */
  name(field: string, fallback?: string): string {
    const v = this.str(field, fallback);
    if (v === '') throw garbled(this.what, field, 'empty');
    return v;
  }

  /** A whole number within [min, max]; written as plain decimal digits, nothing else. */
  int(field: string, options: { fallback?: number; min?: number; max?: number } = {}): number {
    const raw = this.get(field);
    if (raw === undefined) {
      if (options.fallback === undefined) throw garbled(this.what, field, 'missing');
      return options.fallback;
    }
    if (!/^-?\d{1,16}$/.test(raw)) throw garbled(this.what, field, 'not a whole number', raw);
    const n = Number(raw);
    if (!Number.isSafeInteger(n)) throw garbled(this.what, field, 'out of range', raw);
    if (options.min !== undefined && n < options.min) throw garbled(this.what, field, `below ${options.min}`, raw);
    if (options.max !== undefined && n > options.max) throw garbled(this.what, field, `above ${options.max}`, raw);
    return n;
  }

  /** A size in MiB on the wire, as bytes. */
  mib(field: string, fallback?: number): number {
    const n = this.int(field, { fallback, min: 0 });
    const bytes = n * MiB;
    if (!Number.isSafeInteger(bytes)) throw garbled(this.what, field, 'size out of range', String(n));
    return bytes;
  }

  /** A size in GiB on the wire (the original pool fields), as bytes. */
  gib(field: string, fallback?: number): number {
    const n = this.int(field, { fallback, min: 0 });
    const bytes = n * GiB;
    if (!Number.isSafeInteger(bytes)) throw garbled(this.what, field, 'size out of range', String(n));
    return bytes;
  }

  /** A non-negative decimal such as `4.0`. */
  decimal(field: string, fallback?: number): number {
    const raw = this.get(field);
    if (raw === undefined) {
      if (fallback === undefined) throw garbled(this.what, field, 'missing');
      return fallback;
    }
    if (!/^\d{1,12}(\.\d{1,12})?$/.test(raw)) throw garbled(this.what, field, 'not a decimal number', raw);
    return Number(raw);
  }

  /** `0`/`1`. */
  flag(field: string, fallback?: boolean): boolean {
    const raw = this.get(field);
    if (raw === undefined) {
      if (fallback === undefined) throw garbled(this.what, field, 'missing');
      return fallback;
    }
    if (raw !== '0' && raw !== '1') throw garbled(this.what, field, 'must be 0 or 1', raw);
    return raw === '1';
  }

  /** One of a fixed set of words. */
  oneOf<T extends string>(field: string, allowed: readonly T[], fallback?: T): T {
    const raw = this.get(field);
    if (raw === undefined) {
      if (fallback === undefined) throw garbled(this.what, field, 'missing');
      return fallback;
    }
    if (!(allowed as readonly string[]).includes(raw))
      throw garbled(this.what, field, `must be one of ${allowed.join('/')}`, raw);
    return raw as T;
  }

  /** A `:`-joined list (host ids). */
  list(field: string): string[] {
    const raw = this.get(field);
    return raw === undefined || raw === '' ? [] : raw.split(':').filter((s) => s !== '');
  }

  has(field: string): boolean {
    return this.get(field) !== undefined;
  }

  optional(field: string): string | undefined {
    const v = this.get(field);
    return v === undefined || v === '' ? undefined : v;
  }
}

/** A record's `status` and the state it stands for; garbled when the number is unknown. */
function statusOf<S>(
  r: FieldReader,
  what: 'volume' | 'snapshot',
  states: ReadonlyMap<number, S>,
): { status: number; state: S } {
  const status = r.int(Field.STATUS);
  const state = states.get(status);
  if (state === undefined) throw garbled(`${what} record`, Field.STATUS, `unknown ${what} status`, String(status));
  return { status, state };
}

/** `fallbackName`: the name we asked about, for a part-1 VBS whose record may not repeat it. */
export function volumeFromRecord(record: Record<string, string>, fallbackName?: string): VolumeInfo {
  const r = FieldReader.ofRecord('volume record', record);
  const { status, state } = statusOf(r, 'volume', VOLUME_STATES);
  const srcType = r.oneOf(Field.SRC_TYPE, ['none', 'snapshot', 'volume', 'image'] as const, 'none');
  const source: VolumeInfo['source'] =
    srcType === 'snapshot' || srcType === 'volume'
      ? { type: srcType, name: r.name(Field.SRC_NAME) }
      : { type: srcType };
  const cloneType = r.oneOf(Key.CLONE_TYPE, ['', 'linked', 'full'] as const, '');
  const volume: VolumeInfo = {
    name: r.name(Key.VOL_NAME, fallbackName),
    sizeBytes: r.mib(Key.VOL_SIZE),
    poolId: r.str(Key.POOL_ID, ''),
    thin: r.flag(Key.THIN_FLAG, true),
    state,
    status,
    allocatedBytes: r.mib(Field.ALLOC_SIZE, 0),
    createdAt: new Date(r.int(Field.CREATE_TIME, { fallback: 0, min: 0 }) * 1000),
    source,
    qos: {
      maxIops: r.int(Key.MAX_IOPS, { fallback: 0, min: 0 }),
      maxMBps: r.int(Key.MAX_MBPS, { fallback: 0, min: 0 }),
      priority: r.int(Key.IO_PRIORITY, { fallback: 2, min: 1, max: 3 }) as IoPriority,
    },
    cachePolicy: r.oneOf<CachePolicy>(Key.CACHE_POLICY, ['none', 'read', 'readwrite'], 'none'),
    mappedHosts: r.list(Field.MAPPED_HOSTS),
    healthy: r.oneOf(Field.HEALTH, ['ok', 'fault'] as const, 'ok') === 'ok',
    snapshotCount: r.int(Key.SNAP_NUM, { fallback: 0, min: 0 }),
  };
  if (cloneType !== '') volume.cloneType = cloneType as CloneType;
  const faultReason = r.optional(Field.FAULT_REASON);
  if (faultReason !== undefined) volume.faultReason = faultReason;
  const jobId = r.optional(Key.JOB_ID);
  if (jobId !== undefined) volume.imageJobId = jobId;
  return volume;
}

export function snapshotFromRecord(record: Record<string, string>, fallbackName?: string): SnapshotInfo {
  const r = FieldReader.ofRecord('snapshot record', record);
  const { status, state } = statusOf(r, 'snapshot', SNAPSHOT_STATES);
  const snapshot: SnapshotInfo = {
    name: r.name(Key.SNAP_NAME, fallbackName),
    volumeName: r.str(Key.VOL_NAME, ''),
    sizeBytes: r.mib(Key.VOL_SIZE, 0),
    poolId: r.str(Key.POOL_ID, ''),
    state,
    status,
    allocatedBytes: r.mib(Field.ALLOC_SIZE, 0),
    createdAt: new Date(r.int(Field.CREATE_TIME, { fallback: 0, min: 0 }) * 1000),
    dependents: r.int(Field.DEPENDENTS, { fallback: 0, min: 0 }),
  };
  const group = r.optional(Key.GROUP_NAME);
  if (group !== undefined) snapshot.groupName = group;
  return snapshot;
}

const GROUP_STATES: ReadonlyMap<number, GroupSnapshotState> = new Map([
  [1, 'available'],
  [10, 'creating'],
  [11, 'deleting'],
  [12, 'fault'],
]);

/** A group record with its member snapshot records (already parsed). */
export function groupFromRecord(
  record: Record<string, string>,
  snapshots: SnapshotInfo[],
  fallbackName?: string,
): GroupSnapshotInfo {
  const r = FieldReader.ofRecord('group record', record);
  const status = r.int(Field.STATUS);
  const state = GROUP_STATES.get(status);
  if (state === undefined) throw garbled('group record', Field.STATUS, 'unknown group status', String(status));
  const group: GroupSnapshotInfo = {
    name: r.name(Key.GROUP_NAME, fallbackName),
    state,
    status,
    poolId: r.str(Key.POOL_ID, ''),
    createdAt: new Date(r.int(Field.CREATE_TIME, { fallback: 0, min: 0 }) * 1000),
    volumeNames: r.list(Field.VOL_NAMES).sort(),
    quiesce: r.oneOf<QuiesceMode>(Key.QUIESCE, ['freeze', 'flush'], 'freeze'),
    frozenCount: r.int(Field.FROZEN_NUM, { fallback: 0, min: 0 }),
    healthy: r.oneOf(Field.HEALTH, ['ok', 'fault'] as const, 'ok') === 'ok',
    snapshots,
  };
  const faultReason = r.optional(Field.FAULT_REASON);
  if (faultReason !== undefined) group.faultReason = faultReason;
  return group;
}

/** An extent page: size_bytes, block_size, extent_num + extentN records, next_offset (empty at the end). */
export function extentPageFromReply(fields: Fields, requestedOffset: number): ExtentPage {
  const r = FieldReader.ofReply('extent reply', fields);
  const sizeBytes = r.int(Key.SIZE_BYTES, { min: 0 });
  const blockSize = r.int(Key.BLOCK_SIZE, { fallback: 4096, min: 1 });
  const records = fields.records(RecordPrefix.EXTENT);
  const count = r.int(Key.EXTENT_NUM, { fallback: records.length, min: 0 });
  if (count !== records.length)
    throw new SdsError(
      'Protocol',
      `garbled extent reply from the VBS: extent_num=${count} but ${records.length} extent records`,
    );
  const extents: ByteRange[] = [];
  let end = 0;
  records.forEach((record, i) => {
    const e = FieldReader.ofRecord(`extent record ${i}`, record);
    const offset = e.int(Key.OFFSET, { min: 0 });
    const length = e.int(Field.LENGTH, { min: 1 });
    if (offset < end || offset + length > sizeBytes)
      throw garbled(`extent record ${i}`, Key.OFFSET, 'out of order or beyond the size', String(offset));
    end = offset + length;
    extents.push({ offset, length });
  });
  const page: ExtentPage = { sizeBytes, blockSize, extents };
  const next = r.optional(Key.NEXT_OFFSET);
  if (next !== undefined) {
    const n = r.int(Key.NEXT_OFFSET, { min: 0 });
    if (n <= requestedOffset || n < end || n > sizeBytes)
      throw garbled('extent reply', Key.NEXT_OFFSET, 'does not move forward', next);
    page.nextOffset = n;
  }
  const method = r.optional(Key.METHOD);
  if (method !== undefined) page.method = method;
  return page;
}

export function poolFromRecord(record: Record<string, string>): PoolInfo {
  const r = FieldReader.ofRecord('pool record', record);
  // The original fields are GiB; ours add exact MiB. Prefer the exact ones when present.
  const totalBytes = r.has(Field.TOTAL_CAPACITY_MB) ? r.mib(Field.TOTAL_CAPACITY_MB) : r.gib(Field.TOTAL_CAPACITY);
  const freeBytes = r.has(Field.USABLE_CAPACITY_MB) ? r.mib(Field.USABLE_CAPACITY_MB) : r.gib(Field.USABLE_CAPACITY);
  return {
    id: r.name(Field.STOR_ID),
    totalBytes,
    freeBytes,
    provisionedBytes: r.mib(Field.PROVISIONED_MB, 0),
    allocatedBytes: r.mib(Field.ALLOCATED_MB, 0),
    maxOversubscription: r.decimal(Field.MAX_OVERSUBSCRIPTION, 1),
    thinCapacityBytes: r.has(Field.THIN_CAPACITY_MB) ? r.mib(Field.THIN_CAPACITY_MB) : freeBytes,
    thickCapacityBytes: r.has(Field.THICK_CAPACITY_MB) ? r.mib(Field.THICK_CAPACITY_MB) : freeBytes,
    // The original VBS made every volume-from-snapshot a linked clone.
    linkedClone: r.flag(Field.LINKED_CLONE, true),
    type: r.str(Field.POOL_TYPE, 'unknown'),
    hosts: r.list(Field.HOSTS),
    ...(r.has(Field.HOSTS) ? {} : { hostsUnknown: true as const }),
    healthy: r.oneOf(Field.HEALTH, ['ok', 'fault'] as const, 'ok') === 'ok',
  };
}

/** An original record's `status`, its state, and the mark that the record said nothing more. */
function statusOnly<S>(
  record: Record<string, string>,
  what: 'volume' | 'snapshot',
  states: ReadonlyMap<number, S>,
): { status: number; state: S; statusOnly: true } {
  return { ...statusOf(FieldReader.ofRecord(`${what} record`, record), what, states), statusOnly: true };
}

/** What the caller knows of an object an original record speaks of: its name, and what it asked for. */
type Asked<T extends { name: string }> = Partial<T> & Pick<T, 'name'>;

/** What an original record leaves unsaid, as neutral values: a fresh object each time (callers may change it). */
const unsaidVolume = (): Omit<VolumeInfo, 'name' | 'state' | 'status'> => ({
  sizeBytes: 0,
  poolId: '',
  thin: true,
  allocatedBytes: 0,
  createdAt: new Date(0),
  source: { type: 'none' },
  qos: { maxIops: 0, maxMBps: 0, priority: 2 },
  cachePolicy: 'none',
  mappedHosts: [],
  healthy: true,
  snapshotCount: 0,
});
const unsaidSnapshot = (): Omit<SnapshotInfo, 'name' | 'state' | 'status'> => ({
  volumeName: '',
  sizeBytes: 0,
  poolId: '',
  allocatedBytes: 0,
  createdAt: new Date(0),
  dependents: 0,
});

/**
 * A volume record of the original level: `status` alone. The other fields take neutral values, or those of
 * `asked` (the name asked about, and what a create or extend requested); the result is marked statusOnly.
 */
export function volumeFromStatusRecord(record: Record<string, string>, asked: Asked<VolumeInfo>): VolumeInfo {
  return { ...unsaidVolume(), ...asked, ...statusOnly(record, 'volume', VOLUME_STATES) };
}

/** A snapshot record of the original level (`status` alone), completed as volumeFromStatusRecord does. */
export function snapshotFromStatusRecord(record: Record<string, string>, asked: Asked<SnapshotInfo>): SnapshotInfo {
  return { ...unsaidSnapshot(), ...asked, ...statusOnly(record, 'snapshot', SNAPSHOT_STATES) };
}

export function hostMappingFromRecord(record: Record<string, string>): HostMapping {
  const r = FieldReader.ofRecord('host record', record);
  const mapping: HostMapping = {
    hostId: r.name(Key.HOST_ID),
    accessMode: r.oneOf(Key.ACCESS_MODE, ['rw', 'ro'] as const, 'rw'),
    attached: r.flag(Field.ATTACHED, false),
    online: r.flag(Field.ONLINE, true),
  };
  const dev = r.optional(Field.DEV_ADDR);
  if (dev !== undefined) mapping.devAddr = dev;
  return mapping;
}

export function jobFromRecord(record: Record<string, string>): ImageJob {
  const r = FieldReader.ofRecord('job record', record);
  const job: ImageJob = {
    id: r.name(Key.JOB_ID),
    type: r.oneOf(Field.JOB_TYPE, ['import', 'export'] as const),
    state: r.oneOf(Field.STATUS, ['running', 'done', 'failed'] as const),
    bytesDone: r.int(Field.BYTES_DONE, { fallback: 0, min: 0 }),
    bytesTotal: r.int(Field.BYTES_TOTAL, { fallback: 0, min: 0 }),
  };
  const volumeName = r.optional(Key.VOL_NAME);
  if (volumeName !== undefined) job.volumeName = volumeName;
  const snapshotName = r.optional(Key.SNAP_NAME);
  if (snapshotName !== undefined) job.snapshotName = snapshotName;
  const error = r.optional(Field.ERROR);
  if (error !== undefined) job.error = error;
  if (r.optional(Field.ERROR_CODE) === String(RetCode.NO_SPACE)) job.outOfSpace = true;
  return job;
}

export function systemInfoFromReply(fields: Fields): SystemInfo {
  const r = FieldReader.ofReply('capability reply', fields);
  return {
    product: r.str(Key.PRODUCT, 'SDSHypervisor'),
    version: r.str(Key.VERSION, ''),
    apiVersion: r.str(Key.API_VERSION, ''),
    hostId: r.str(Key.HOST_ID, ''),
    capabilities: fields.getAll(Key.CAPABILITY),
    ...(fields.getAll(Key.IMAGE_DIR).length > 0 ? { imageDirs: fields.getAll(Key.IMAGE_DIR) } : {}),
  };
}
