// Request-field checks shared by the controller's handlers: volume capabilities, capacity ranges, topology.
import type { CapacityRange__Output } from '../generated/csi/v1/CapacityRange.js';
import type { Topology__Output } from '../generated/csi/v1/Topology.js';
import type { VolumeCapability__Output } from '../generated/csi/v1/VolumeCapability.js';
import { GiB, MiB } from '../sds/backend.js';
import { invalidArgument, outOfRange } from '../server/errors.js';
import { SUPPORTED_ACCESS_MODES, type AccessMode } from '../util/access-modes.js';

export const SUPPORTED_FS_TYPES: ReadonlySet<string> = new Set(['ext4', 'xfs']);

/** The largest volume the socket API can describe: 67,108,864 MiB. */
export const MAX_VOLUME_BYTES = 67_108_864 * MiB;
export const DEFAULT_VOLUME_BYTES = GiB;

/** Topology segment key naming the back-end host a volume is reachable from. */
export const TOPOLOGY_HOST_KEY = 'topology.sdshypervisor.io/host';

export function requireString(field: string, value: string): string {
  if (value === '') throw invalidArgument(`${field} is required`);
  return value;
}

/** What makes a capability malformed (a REQUIRED part missing), or undefined. */
export function malformedCapability(cap: VolumeCapability__Output): string | undefined {
  const mode = cap.access_mode?.mode;
  if (mode === undefined || mode === 'UNKNOWN') return 'access_mode is required';
  if (cap.access_type !== 'mount' && cap.access_type !== 'block') return 'access_type (mount or block) is required';
  return undefined;
}

/** Why a well-formed capability cannot be honoured, or undefined when it can. */
export function unsupportedCapability(cap: VolumeCapability__Output): string | undefined {
  const mode = cap.access_mode?.mode ?? 'UNKNOWN';
  if (!SUPPORTED_ACCESS_MODES.has(mode)) {
    return `access mode ${mode} is not supported (a volume is attached to one host at a time, read-only to several, or as raw block to several writers)`;
  }
  if (cap.access_type === 'mount') {
    // ext4 and xfs are not cluster file systems: two hosts writing one would corrupt it.
    if (mode === 'MULTI_NODE_MULTI_WRITER')
      return `access mode ${mode} is not supported for a mount volume (several writers need access_type block; a file system is shared read-only with MULTI_NODE_READER_ONLY)`;
    const fsType = cap.mount?.fs_type ?? '';
    if (fsType !== '' && !SUPPORTED_FS_TYPES.has(fsType))
      return `fs_type ${JSON.stringify(fsType)} is not supported (ext4 or xfs)`;
  }
  return undefined;
}

export interface CapabilitySummary {
  block: boolean;
  mount: boolean;
  fsTypes: Set<string>;
}

/** Checks a REQUIRED list of capabilities; any unsupported one is INVALID_ARGUMENT naming it. */
export function checkVolumeCapabilities(field: string, caps: VolumeCapability__Output[]): CapabilitySummary {
  if (caps.length === 0) throw invalidArgument(`${field} is required`);
  return summarise(field, caps);
}

/** Checks one capability (ControllerPublishVolume.volume_capability and the like). */
export function checkVolumeCapability(field: string, cap: VolumeCapability__Output | null): CapabilitySummary {
  if (!cap) throw invalidArgument(`${field} is required`);
  return summarise(field, [cap]);
}

function summarise(field: string, caps: VolumeCapability__Output[]): CapabilitySummary {
  const summary: CapabilitySummary = { block: false, mount: false, fsTypes: new Set() };
  caps.forEach((cap, i) => {
    const why = malformedCapability(cap) ?? unsupportedCapability(cap);
    if (why) throw invalidArgument(`${caps.length > 1 ? `${field}[${i}]` : field}: ${why}`);
    if (cap.access_type === 'block') summary.block = true;
    else {
      summary.mount = true;
      if (cap.mount?.fs_type) summary.fsTypes.add(cap.mount.fs_type);
    }
  });
  return summary;
}

export function isSingleNodeMode(mode: AccessMode): boolean {
  return (
    mode === 'SINGLE_NODE_WRITER' ||
    mode === 'SINGLE_NODE_READER_ONLY' ||
    mode === 'SINGLE_NODE_SINGLE_WRITER' ||
    mode === 'SINGLE_NODE_MULTI_WRITER'
  );
}

function parseBytes(field: string, value: string): number {
  if (!/^-?\d+$/.test(value)) throw invalidArgument(`${field} is not a whole number`);
  const big = BigInt(value);
  if (big < 0n) throw invalidArgument(`${field} must not be negative`);
  // Anything beyond what the back end can address can never be satisfied.
  if (big > BigInt(MAX_VOLUME_BYTES)) return Number.POSITIVE_INFINITY;
  return Number(big);
}

export interface ByteRange {
  /** 0 = unset */
  requiredBytes: number;
  /** 0 = unset */
  limitBytes: number;
}

export function parseCapacityRange(field: string, range: CapacityRange__Output | null): ByteRange {
  if (!range) return { requiredBytes: 0, limitBytes: 0 };
  const requiredBytes = parseBytes(`${field}.required_bytes`, range.required_bytes || '0');
  const limitBytes = parseBytes(`${field}.limit_bytes`, range.limit_bytes || '0');
  if (limitBytes !== 0 && requiredBytes > limitBytes) {
    throw outOfRange(`${field}: required_bytes ${requiredBytes} exceeds limit_bytes ${limitBytes}`);
  }
  return { requiredBytes, limitBytes };
}

export const roundUpToMiB = (bytes: number) => Math.ceil(bytes / MiB) * MiB;
const roundDownToMiB = (bytes: number) => Math.floor(bytes / MiB) * MiB;

/**
 * The size to provision for a range: required_bytes rounded up to whole MiB; with no required size the
 * source's size, else 1 GiB, shrunk to fit limit_bytes. OUT_OF_RANGE when no whole-MiB size fits.
 */
export function chooseSize(field: string, range: ByteRange, sourceBytes?: number): number {
  const { requiredBytes, limitBytes } = range;
  if (requiredBytes === Number.POSITIVE_INFINITY) {
    throw outOfRange(
      `${field}.required_bytes exceeds the largest volume the back end can hold (${MAX_VOLUME_BYTES} bytes)`,
    );
  }
  let size: number;
  if (requiredBytes > 0) size = roundUpToMiB(requiredBytes);
  else if (sourceBytes !== undefined) size = sourceBytes;
  else size = limitBytes > 0 ? Math.min(DEFAULT_VOLUME_BYTES, roundDownToMiB(limitBytes)) : DEFAULT_VOLUME_BYTES;
  if (sourceBytes !== undefined && size < sourceBytes) {
    throw outOfRange(`${field}.required_bytes ${requiredBytes} is smaller than the source's ${sourceBytes} bytes`);
  }
  if (size === 0) throw outOfRange(`${field}.limit_bytes ${limitBytes} is below the smallest volume (1 MiB)`);
  if (limitBytes > 0 && size > limitBytes) {
    const why =
      sourceBytes !== undefined && sourceBytes > limitBytes
        ? `the source's ${sourceBytes} bytes`
        : `${size} bytes (sizes are whole MiB)`;
    throw outOfRange(`${field}.limit_bytes ${limitBytes} is below ${why}`);
  }
  if (size > MAX_VOLUME_BYTES)
    throw outOfRange(
      `${field}: ${size} bytes exceeds the largest volume the back end can hold (${MAX_VOLUME_BYTES} bytes)`,
    );
  return size;
}

/** Whether an existing volume of `sizeBytes` satisfies a requested range. */
export function sizeFits(sizeBytes: number, range: ByteRange): boolean {
  return sizeBytes >= range.requiredBytes && (range.limitBytes === 0 || sizeBytes <= range.limitBytes);
}

/** Host ids named by our topology key in a list of segments, in order, without repeats. */
export function hostsInTopologies(topologies: Topology__Output[]): string[] {
  const hosts: string[] = [];
  for (const t of topologies) {
    const host = t.segments[TOPOLOGY_HOST_KEY];
    if (host !== undefined && !hosts.includes(host)) hosts.push(host);
  }
  return hosts;
}

/** `accessible_topology` of a volume in a pool seen by `hosts`. */
export function topologyOfHosts(hosts: readonly string[]): Topology__Output[] {
  return hosts.map((host) => ({ segments: { [TOPOLOGY_HOST_KEY]: host } }));
}
