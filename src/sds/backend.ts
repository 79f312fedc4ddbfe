// The back-end interface the CSI controller calls (and the node service, for host identity).
// `SdsClient` (client.ts) implements it over the VBS socket API; unit tests of the controller may fake it.
// Sizes are bytes here and always whole MiB: the wire speaks MiB, the client converts.

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

export type VolumeState = 'available' | 'in-use' | 'busy' | 'deleting' | 'fault';
export type SnapshotState = 'available' | 'in-use' | 'creating' | 'deleting' | 'fault';
export type CloneType = 'linked' | 'full';
export type CachePolicy = 'none' | 'read' | 'readwrite';
/** IOPRIORITY on the wire: 3 high, 2 normal, 1 low. */
export type IoPriority = 1 | 2 | 3;

export interface Qos {
  /** 0 = unlimited */
  maxIops: number;
  /** MB/s (10^6 bytes/s), 0 = unlimited */
  maxMBps: number;
  priority: IoPriority;
}

export interface VolumeInfo {
  name: string;
  /**
   * true when the VBS told only that the volume exists and its status (the original level): every other
   * field is a neutral stand-in or, after a create, what the request asked for.
   */
  statusOnly?: boolean;
  sizeBytes: number;
  poolId: string;
  thin: boolean;
  state: VolumeState;
  /** the raw status code from the record */
  status: number;
  allocatedBytes: number;
  createdAt: Date;
  source: { type: 'none' } | { type: 'snapshot' | 'volume'; name: string } | { type: 'image' };
  cloneType?: CloneType;
  qos: Qos;
  cachePolicy: CachePolicy;
  mappedHosts: string[];
  healthy: boolean;
  faultReason?: string;
  snapshotCount: number;
  /** the image job that imported it (QUERY_IMAGE_JOB_REQ tells how the import went) */
  imageJobId?: string;
}

export interface SnapshotInfo {
  name: string;
  /** as VolumeInfo.statusOnly */
  statusOnly?: boolean;
  volumeName: string;
  sizeBytes: number;
  poolId: string;
  state: SnapshotState;
  status: number;
  allocatedBytes: number;
  createdAt: Date;
  dependents: number;
  groupName?: string;
}

export interface PoolInfo {
  id: string;
  /** true when the record carried no host list (the original level): reachable from no host we could name */
  hostsUnknown?: boolean;
  totalBytes: number;
  /** free space in the pool's LUN */
  freeBytes: number;
  provisionedBytes: number;
  allocatedBytes: number;
  maxOversubscription: number;
  /** what new thin volumes may still provision */
  thinCapacityBytes: number;
  /** what a new thick volume may take */
  thickCapacityBytes: number;
  linkedClone: boolean;
  type: 'xfs-reflink' | 'directory' | string;
  hosts: string[];
  healthy: boolean;
}

export interface SystemInfo {
  product: string;
  version: string;
  apiVersion: string;
  hostId: string;
  capabilities: string[];
  /** where the VBS reads imports from and writes exports to (absent when it does not say) */
  imageDirs?: string[];
}

export interface HostMapping {
  hostId: string;
  accessMode: 'rw' | 'ro';
  attached: boolean;
  devAddr?: string;
  /** false when the VBS reports the host down (`online=0`); a VBS that does not say is taken as online */
  online: boolean;
}

export interface VolumeSpec {
  name: string;
  sizeBytes: number;
  poolId?: string;
  thin?: boolean;
  qos?: Partial<Qos>;
  cachePolicy?: CachePolicy;
}

export interface ImageImportSpec extends Omit<VolumeSpec, 'sizeBytes'> {
  sizeBytes?: number;
  /** absolute path on the VBS host, file:// URL or http(s) URL */
  url: string;
  format?: 'auto' | 'raw' | 'qcow2';
  /** `sha256:<hex>` or `md5:<hex>` */
  checksum?: string;
}

export interface ImageExportSpec {
  volumeName?: string;
  snapshotName?: string;
  /** absolute path on the VBS host, inside its image directories */
  path: string;
  format?: 'raw' | 'qcow2';
  overwrite?: boolean;
}

export interface ImageJob {
  id: string;
  type: 'import' | 'export';
  state: 'running' | 'done' | 'failed';
  volumeName?: string;
  snapshotName?: string;
  bytesDone: number;
  bytesTotal: number;
  error?: string;
  /** a failed job ran out of space in its pool (the back end's NO_SPACE) */
  outOfSpace?: boolean;
}

export type GroupSnapshotState = 'available' | 'creating' | 'deleting' | 'fault';
/** How the members of a group are quiesced for the cut: frozen file systems, or only flushed devices. */
export type QuiesceMode = 'freeze' | 'flush';

export interface GroupSnapshotSpec {
  name: string;
  volumeNames: string[];
  /** default freeze */
  quiesce?: QuiesceMode;
  /** the longest a member's file system may stay frozen; the VBS's default when absent */
  freezeTimeoutMs?: number;
}

export interface GroupSnapshotInfo {
  name: string;
  state: GroupSnapshotState;
  status: number;
  poolId: string;
  createdAt: Date;
  /** the member volumes, sorted */
  volumeNames: string[];
  quiesce: QuiesceMode;
  /** file systems frozen for the cut */
  frozenCount: number;
  healthy: boolean;
  faultReason?: string;
  /** the member snapshots, by volume name */
  snapshots: SnapshotInfo[];
}

export interface ByteRange {
  offset: number;
  length: number;
}

/** One page of an extent map: block-aligned ranges in offset order. */
export interface ExtentPage {
  /** the snapshot's size (the target's, for a delta) */
  sizeBytes: number;
  blockSize: number;
  extents: ByteRange[];
  /** where the next page starts; undefined at the end. Ranges of consecutive pages may touch. */
  nextOffset?: number;
  /** how a delta was found: `shared_extents` (physical mappings) or `compare` (bytes) */
  method?: string;
}

export interface Page<T> {
  items: T[];
  /** empty string at the end */
  nextMarker: string;
}

/** Per-call options: a request id for the VBS's logs, and a deadline the call must not outlive. */
export interface CallOptions {
  requestId?: string;
  signal?: AbortSignal;
}

export interface SdsBackend {
  systemInfo(opts?: CallOptions): Promise<SystemInfo>;
  queryPools(poolIds?: string[], opts?: CallOptions): Promise<PoolInfo[]>;

  /** Idempotent: an existing identical volume is returned; a different one throws kind 'AlreadyExists'. */
  createVolume(spec: VolumeSpec, opts?: CallOptions): Promise<VolumeInfo>;
  createVolumeFromSnapshot(
    spec: VolumeSpec & { snapshotName: string; cloneType: CloneType },
    opts?: CallOptions,
  ): Promise<VolumeInfo>;
  cloneVolume(
    spec: VolumeSpec & { sourceVolumeName: string; cloneType: CloneType },
    opts?: CallOptions,
  ): Promise<VolumeInfo>;
  /** Waits (bounded) until the asynchronous delete completes. A missing volume is success. */
  deleteVolume(name: string, opts?: CallOptions): Promise<void>;
  extendVolume(name: string, sizeBytes: number, opts?: CallOptions): Promise<VolumeInfo>;
  /** undefined when the volume does not exist */
  getVolume(name: string, opts?: CallOptions): Promise<VolumeInfo | undefined>;
  listVolumes(
    query: { marker?: string; limit?: number; poolId?: string },
    opts?: CallOptions,
  ): Promise<Page<VolumeInfo>>;
  modifyVolume(
    name: string,
    change: { qos?: Partial<Qos>; cachePolicy?: CachePolicy },
    opts?: CallOptions,
  ): Promise<VolumeInfo>;

  /** Idempotent: same name and same source returns it; another source throws kind 'AlreadyExists'. */
  createSnapshot(name: string, volumeName: string, opts?: CallOptions): Promise<SnapshotInfo>;
  /** Waits (bounded) until the asynchronous delete completes. A missing snapshot is success. */
  deleteSnapshot(name: string, opts?: CallOptions): Promise<void>;
  getSnapshot(name: string, opts?: CallOptions): Promise<SnapshotInfo | undefined>;
  listSnapshots(
    query: { marker?: string; limit?: number; volumeName?: string; snapshotName?: string },
    opts?: CallOptions,
  ): Promise<Page<SnapshotInfo>>;

  /** Idempotent: the same name with the same member volumes returns the group; other members throw 'AlreadyExists'. */
  createGroupSnapshot(spec: GroupSnapshotSpec, opts?: CallOptions): Promise<GroupSnapshotInfo>;
  /** Deletes the group and its members; waits (bounded) until they are gone. A missing group is success. */
  deleteGroupSnapshot(name: string, opts?: CallOptions): Promise<void>;
  getGroupSnapshot(name: string, opts?: CallOptions): Promise<GroupSnapshotInfo | undefined>;
  /** One page of the ranges of a snapshot that hold data. */
  snapshotExtents(name: string, page?: { offset?: number; limit?: number }, opts?: CallOptions): Promise<ExtentPage>;
  /** One page of the ranges that differ between two snapshots of one volume (`baseName` the earlier). */
  snapshotDelta(
    baseName: string,
    targetName: string,
    page?: { offset?: number; limit?: number },
    opts?: CallOptions,
  ): Promise<ExtentPage>;

  mapVolume(
    name: string,
    hostId: string,
    options: { readOnly: boolean; exclusive: boolean },
    opts?: CallOptions,
  ): Promise<void>;
  unmapVolume(name: string, hostId: string, options?: { force?: boolean }, opts?: CallOptions): Promise<void>;
  volumeHosts(name: string, opts?: CallOptions): Promise<HostMapping[]>;

  /** Starts an import that creates the volume; resolves with the job. */
  importImage(spec: ImageImportSpec, opts?: CallOptions): Promise<{ job: ImageJob; volume: VolumeInfo }>;
  exportImage(spec: ImageExportSpec, opts?: CallOptions): Promise<ImageJob>;
  getImageJob(id: string, opts?: CallOptions): Promise<ImageJob | undefined>;
  /** Polls a job until it is done or failed, bounded by `timeoutMs`; `onProgress` sees every poll of a running job. */
  waitImageJob(
    id: string,
    timeoutMs: number,
    opts?: CallOptions,
    onProgress?: (job: ImageJob) => void,
  ): Promise<ImageJob>;

  close(): void;
}
