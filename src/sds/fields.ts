// Request fields and argument checks shared by the per-request methods: names, words, sizes, placement, QoS
// and paging keys, each refused with InvalidParameter naming the key before anything is sent.
import { MiB } from './backend.js';
import type { CachePolicy, CloneType, Qos, VolumeSpec } from './backend.js';
import { SdsError } from './errors.js';
import { Key } from '../protocol/catalog.js';
import { isValidName, MAX_LIST_LIMIT, type Field } from '../protocol/vbs.js';

const CACHE_POLICIES: readonly CachePolicy[] = ['none', 'read', 'readwrite'];

export function volumeFields(spec: VolumeSpec, sizeMiB: number): Field[] {
  return [
    [Key.VOL_NAME, spec.name],
    [Key.VOL_SIZE, String(sizeMiB)],
    ...placementFields(spec),
    ...qosFields(spec.qos, spec.cachePolicy),
  ];
}

/** The keys of CREATE_SNAPSHOT (both levels): the snapshot, its volume, and a consistent (smart) snapshot. */
export function snapshotFields(name: string, volumeName: string): Field[] {
  return [
    [Key.SNAP_NAME, name],
    [Key.VOL_NAME, volumeName],
    [Key.SMARTFLAG, '1'],
  ];
}

/** The name and whole-MiB size a create asks for, checked. */
export interface CreateAsked {
  name: string;
  sizeMiB: number;
}

export function askedVolume(spec: VolumeSpec): CreateAsked {
  checkName(Key.VOL_NAME, spec.name);
  if (spec.poolId !== undefined) checkName(Key.POOL_ID, spec.poolId);
  return { name: spec.name, sizeMiB: toMiB('sizeBytes', spec.sizeBytes) };
}

export function placementFields(spec: { poolId?: string; thin?: boolean }): Field[] {
  const fields: Field[] = [];
  if (spec.poolId !== undefined) fields.push([Key.POOL_ID, checkName(Key.POOL_ID, spec.poolId)]);
  fields.push([Key.THIN_FLAG, spec.thin === false ? '0' : '1']);
  return fields;
}

export function qosFields(qos: Partial<Qos> | undefined, cachePolicy: CachePolicy | undefined): Field[] {
  const fields: Field[] = [];
  if (qos?.maxIops !== undefined) fields.push([Key.MAX_IOPS, String(wholeNumber('maxIops', qos.maxIops))]);
  if (qos?.maxMBps !== undefined) fields.push([Key.MAX_MBPS, String(wholeNumber('maxMBps', qos.maxMBps))]);
  if (qos?.priority !== undefined) {
    if (![1, 2, 3].includes(qos.priority))
      throw new SdsError('InvalidParameter', 'priority: must be 1 (low), 2 (normal) or 3 (high)');
    fields.push([Key.IO_PRIORITY, String(qos.priority)]);
  }
  if (cachePolicy !== undefined)
    fields.push([Key.CACHE_POLICY, checkWord(Key.CACHE_POLICY, cachePolicy, CACHE_POLICIES)]);
  return fields;
}

export function pageFields(marker: string | undefined, limit: number | undefined): Field[] {
  const fields: Field[] = [];
  if (marker !== undefined && marker !== '') fields.push([Key.MARKER, checkName(Key.MARKER, marker)]);
  if (limit !== undefined) {
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT)
      throw new SdsError('InvalidParameter', `limit: must be 1-${MAX_LIST_LIMIT}`);
    fields.push([Key.LIMIT, String(limit)]);
  }
  return fields;
}

export function checkName(field: string, value: string): string {
  if (typeof value !== 'string' || !isValidName(value)) {
    throw new SdsError(
      'InvalidParameter',
      `${field}: must be 1-96 characters of [A-Za-z0-9_.-] starting with a letter or digit`,
    );
  }
  return value;
}

export function checkCloneType(value: string): CloneType {
  return checkWord(Key.CLONE_TYPE, value as CloneType, ['linked', 'full']);
}

export function checkWord<T extends string>(field: string, value: T, allowed: readonly T[]): T {
  if (!allowed.includes(value))
    throw new SdsError('InvalidParameter', `${field}: must be one of ${allowed.join(', ')}`);
  return value;
}

/** Bytes → whole MiB, rounded up (the wire speaks MiB; limits are the caller's business). */
export function toMiB(field: string, bytes: number): number {
  if (!Number.isSafeInteger(bytes) || bytes < 0)
    throw new SdsError('InvalidParameter', `${field}: must be a whole, non-negative number of bytes`);
  return Math.ceil(bytes / MiB);
}

export function wholeNumber(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0)
    throw new SdsError('InvalidParameter', `${field}: must be a whole, non-negative number`);
  return value;
}

export function positive(field: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0)
    throw new SdsError('InvalidParameter', `${field}: must be a positive number of milliseconds`);
  return value;
}
