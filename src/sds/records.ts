// Records of VBS replies (docs/socket-api.md §2.4) turned into the back-end interface's types.
// Strict: a field that is present must be well-formed, or the whole reply is refused as a 'Protocol' error
// naming the record and the field; never a NaN or an unknown state in a result. Fields of our extensions
// that a part-1 VBS does not send take neutral defaults, so the original operations keep working.
import { GiB, MiB } from './backend.js';
import type {
  ByteRange, CachePolicy, CloneType, ExtentPage, GroupSnapshotInfo, GroupSnapshotState, HostMapping, ImageJob, IoPriority, PoolInfo,
  QuiesceMode, SnapshotInfo, SnapshotState, SystemInfo, VolumeInfo, VolumeState,
} from './backend.js';
import { SdsError } from './errors.js';
import type { Fields } from '../protocol/vbs.js';

const VOLUME_STATES: ReadonlyMap<number, VolumeState> = new Map([
  [1, 'available'], [2, 'in-use'], [10, 'busy'], [11, 'deleting'], [12, 'fault'],
]);
const SNAPSHOT_STATES: ReadonlyMap<number, SnapshotState> = new Map([
  [1, 'available'], [2, 'in-use'], [10, 'creating'], [11, 'deleting'], [12, 'fault'],
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
    if (!(allowed as readonly string[]).includes(raw)) throw garbled(this.what, field, `must be one of ${allowed.join('/')}`, raw);
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

/** `fallbackName`: the name we asked about, for a part-1 VBS whose record may not repeat it. */
export function volumeFromRecord(record: Record<string, string>, fallbackName?: string): VolumeInfo {
  const r = FieldReader.ofRecord('volume record', record);
  const status = r.int('status');
  const state = VOLUME_STATES.get(status);
  if (state === undefined) throw garbled('volume record', 'status', 'unknown volume status', String(status));
  const srcType = r.oneOf('src_type', ['none', 'snapshot', 'volume', 'image'] as const, 'none');
  const source: VolumeInfo['source'] =
    srcType === 'snapshot' || srcType === 'volume' ? { type: srcType, name: r.name('src_name') } : { type: srcType };
  const cloneType = r.oneOf('clone_type', ['', 'linked', 'full'] as const, '');
  const volume: VolumeInfo = {
    name: r.name('vol_name', fallbackName),
    sizeBytes: r.mib('vol_size'),
    poolId: r.str('pool_id', ''),
    thin: r.flag('thin_flag', true),
    state,
    status,
    allocatedBytes: r.mib('alloc_size', 0),
    createdAt: new Date(r.int('create_time', { fallback: 0, min: 0 }) * 1000),
    source,
    qos: {
      maxIops: r.int('max_iops', { fallback: 0, min: 0 }),
      maxMBps: r.int('max_mbps', { fallback: 0, min: 0 }),
      priority: r.int('IOPRIORITY', { fallback: 2, min: 1, max: 3 }) as IoPriority,
    },
    cachePolicy: r.oneOf<CachePolicy>('cache_policy', ['none', 'read', 'readwrite'], 'none'),
    mappedHosts: r.list('mapped_hosts'),
    healthy: r.oneOf('health', ['ok', 'fault'] as const, 'ok') === 'ok',
    snapshotCount: r.int('snap_num', { fallback: 0, min: 0 }),
  };
  if (cloneType !== '') volume.cloneType = cloneType as CloneType;
  const faultReason = r.optional('fault_reason');
  if (faultReason !== undefined) volume.faultReason = faultReason;
  const jobId = r.optional('job_id');
  if (jobId !== undefined) volume.imageJobId = jobId;
  return volume;
}

export function snapshotFromRecord(record: Record<string, string>, fallbackName?: string): SnapshotInfo {
  const r = FieldReader.ofRecord('snapshot record', record);
  const status = r.int('status');
  const state = SNAPSHOT_STATES.get(status);
  if (state === undefined) throw garbled('snapshot record', 'status', 'unknown snapshot status', String(status));
  const snapshot: SnapshotInfo = {
    name: r.name('snap_name', fallbackName),
    volumeName: r.str('vol_name', ''),
    sizeBytes: r.mib('vol_size', 0),
    poolId: r.str('pool_id', ''),
    state,
    status,
    allocatedBytes: r.mib('alloc_size', 0),
    createdAt: new Date(r.int('create_time', { fallback: 0, min: 0 }) * 1000),
    dependents: r.int('dependents', { fallback: 0, min: 0 }),
  };
  const group = r.optional('group_name');
  if (group !== undefined) snapshot.groupName = group;
  return snapshot;
}

const GROUP_STATES: ReadonlyMap<number, GroupSnapshotState> = new Map([
  [1, 'available'], [10, 'creating'], [11, 'deleting'], [12, 'fault'],
]);

/** A group record with its member snapshot records (already parsed). */
export function groupFromRecord(record: Record<string, string>, snapshots: SnapshotInfo[], fallbackName?: string): GroupSnapshotInfo {
  const r = FieldReader.ofRecord('group record', record);
  const status = r.int('status');
  const state = GROUP_STATES.get(status);
  if (state === undefined) throw garbled('group record', 'status', 'unknown group status', String(status));
  const group: GroupSnapshotInfo = {
    name: r.name('group_name', fallbackName),
    state,
    status,
    poolId: r.str('pool_id', ''),
    createdAt: new Date(r.int('create_time', { fallback: 0, min: 0 }) * 1000),
    volumeNames: r.list('vol_names').sort(),
    quiesce: r.oneOf<QuiesceMode>('quiesce', ['freeze', 'flush'], 'freeze'),
    frozenCount: r.int('frozen_num', { fallback: 0, min: 0 }),
    healthy: r.oneOf('health', ['ok', 'fault'] as const, 'ok') === 'ok',
    snapshots,
  };
  const faultReason = r.optional('fault_reason');
  if (faultReason !== undefined) group.faultReason = faultReason;
  return group;
}

/** An extent page: size_bytes, block_size, extent_num + extentN records, next_offset (empty at the end). */
export function extentPageFromReply(fields: Fields, requestedOffset: number): ExtentPage {
  const r = FieldReader.ofReply('extent reply', fields);
  const sizeBytes = r.int('size_bytes', { min: 0 });
  const blockSize = r.int('block_size', { fallback: 4096, min: 1 });
  const records = fields.records('extent');
  const count = r.int('extent_num', { fallback: records.length, min: 0 });
  if (count !== records.length) throw new SdsError('Protocol', `garbled extent reply from the VBS: extent_num=${count} but ${records.length} extent records`);
  const extents: ByteRange[] = [];
  let end = 0;
  records.forEach((record, i) => {
    const e = FieldReader.ofRecord(`extent record ${i}`, record);
    const offset = e.int('offset', { min: 0 });
    const length = e.int('length', { min: 1 });
    if (offset < end || offset + length > sizeBytes) throw garbled(`extent record ${i}`, 'offset', 'out of order or beyond the size', String(offset));
    end = offset + length;
    extents.push({ offset, length });
  });
  const page: ExtentPage = { sizeBytes, blockSize, extents };
  const next = r.optional('next_offset');
  if (next !== undefined) {
    const n = r.int('next_offset', { min: 0 });
    if (n <= requestedOffset || n < end || n > sizeBytes) throw garbled('extent reply', 'next_offset', 'does not move forward', next);
    page.nextOffset = n;
  }
  const method = r.optional('method');
  if (method !== undefined) page.method = method;
  return page;
}

export function poolFromRecord(record: Record<string, string>): PoolInfo {
  const r = FieldReader.ofRecord('pool record', record);
  // The original fields are GiB; ours add exact MiB. Prefer the exact ones when present.
  const totalBytes = r.has('total_capacity_mb') ? r.mib('total_capacity_mb') : r.gib('total_capacity');
  const freeBytes = r.has('usable_capacity_mb') ? r.mib('usable_capacity_mb') : r.gib('usable_capacity');
  return {
    id: r.name('stor_id'),
    totalBytes,
    freeBytes,
    provisionedBytes: r.mib('provisioned_mb', 0),
    allocatedBytes: r.mib('allocated_mb', 0),
    maxOversubscription: r.decimal('max_oversubscription', 1),
    thinCapacityBytes: r.has('thin_capacity_mb') ? r.mib('thin_capacity_mb') : freeBytes,
    thickCapacityBytes: r.has('thick_capacity_mb') ? r.mib('thick_capacity_mb') : freeBytes,
    // The original VBS made every volume-from-snapshot a linked clone.
    linkedClone: r.flag('linked_clone', true),
    type: r.str('pool_type', 'unknown'),
    hosts: r.list('hosts'),
    healthy: r.oneOf('health', ['ok', 'fault'] as const, 'ok') === 'ok',
  };
}

export function hostMappingFromRecord(record: Record<string, string>): HostMapping {
  const r = FieldReader.ofRecord('host record', record);
  const mapping: HostMapping = {
    hostId: r.name('host_id'),
    accessMode: r.oneOf('access_mode', ['rw', 'ro'] as const, 'rw'),
    attached: r.flag('attached', false),
    online: r.flag('online', true),
  };
  const dev = r.optional('dev_addr');
  if (dev !== undefined) mapping.devAddr = dev;
  return mapping;
}

export function jobFromRecord(record: Record<string, string>): ImageJob {
  const r = FieldReader.ofRecord('job record', record);
  const job: ImageJob = {
    id: r.name('job_id'),
    type: r.oneOf('job_type', ['import', 'export'] as const),
    state: r.oneOf('status', ['running', 'done', 'failed'] as const),
    bytesDone: r.int('bytes_done', { fallback: 0, min: 0 }),
    bytesTotal: r.int('bytes_total', { fallback: 0, min: 0 }),
  };
  const volumeName = r.optional('vol_name');
  if (volumeName !== undefined) job.volumeName = volumeName;
  const snapshotName = r.optional('snap_name');
  if (snapshotName !== undefined) job.snapshotName = snapshotName;
  const error = r.optional('error');
  if (error !== undefined) job.error = error;
  return job;
}

export function systemInfoFromReply(fields: Fields): SystemInfo {
  const r = FieldReader.ofReply('capability reply', fields);
  return {
    product: r.str('product', 'SDSHypervisor'),
    version: r.str('version', ''),
    apiVersion: r.str('api_version', ''),
    hostId: r.str('host_id', ''),
    capabilities: fields.getAll('capability'),
    ...(fields.getAll('image_dir').length > 0 ? { imageDirs: fields.getAll('image_dir') } : {}),
  };
}
