// An in-memory SdsBackend for unit tests of the controller room only. It follows docs/socket-api.md closely
// enough for the handlers' logic (names, sizes, pools, mappings, errors); the conformance suite runs against
// the real emulator instead.
import { GiB, MiB } from '../../src/sds/backend.js';
// The backend's own types, qualified: this fake implements the same SdsBackend as src/sds/client.ts.
import type * as sds from '../../src/sds/backend.js';
import { SdsError, type SdsErrorKind } from '../../src/sds/errors.js';

interface FakePool {
  id: string;
  totalBytes: number;
  maxOversubscription: number;
  linkedClone: boolean;
  hosts: string[];
  healthy: boolean;
}

export class FakeBackend implements sds.SdsBackend {
  pools: FakePool[] = [
    {
      id: 'pool0',
      totalBytes: 64 * GiB,
      maxOversubscription: 4,
      linkedClone: true,
      hosts: ['host-a', 'host-b'],
      healthy: true,
    },
    { id: 'pool1', totalBytes: 8 * GiB, maxOversubscription: 1, linkedClone: false, hosts: ['host-c'], healthy: true },
  ];
  hosts = new Set(['host-a', 'host-b', 'host-c']);
  readonly volumes = new Map<string, sds.VolumeInfo>();
  readonly snapshots = new Map<string, sds.SnapshotInfo>();
  readonly mappings = new Map<string, sds.HostMapping[]>();
  readonly jobs = new Map<string, sds.ImageJob>();
  /** every call is refused as if the VBS were down */
  unavailable = false;
  /** delay before each mutating call answers, to hold locks in concurrency tests */
  delayMs = 0;
  readonly calls: string[] = [];

  private async enter(name: string, mutating = false): Promise<void> {
    this.calls.push(name);
    if (this.unavailable) throw new SdsError('Unavailable', 'cannot reach the VBS at any address');
    if (mutating && this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));
  }

  private poolInfo(p: FakePool): sds.PoolInfo {
    const vols = [...this.volumes.values()].filter((v) => v.poolId === p.id);
    const provisioned = vols.reduce((n, v) => n + v.sizeBytes, 0);
    const allocated = vols.reduce((n, v) => n + (v.thin ? 0 : v.sizeBytes), 0);
    const thinCapacity = Math.max(0, p.totalBytes * p.maxOversubscription - provisioned);
    return {
      id: p.id,
      totalBytes: p.totalBytes,
      freeBytes: p.totalBytes - allocated,
      provisionedBytes: provisioned,
      allocatedBytes: allocated,
      maxOversubscription: p.maxOversubscription,
      thinCapacityBytes: thinCapacity,
      thickCapacityBytes: Math.min(p.totalBytes - allocated, thinCapacity),
      linkedClone: p.linkedClone,
      type: p.linkedClone ? 'xfs-reflink' : 'directory',
      hosts: [...p.hosts],
      healthy: p.healthy,
    };
  }

  private pool(id: string | undefined): FakePool {
    const pool = id === undefined ? this.pools[0] : this.pools.find((p) => p.id === id);
    if (!pool) throw new SdsError('PoolNotFound', `unknown pool ${id}`);
    return pool;
  }

  private newVolume(spec: sds.VolumeSpec, extra: Partial<sds.VolumeInfo> = {}): sds.VolumeInfo {
    if (this.volumes.has(spec.name)) {
      throw new SdsError('AlreadyExists', `volume ${spec.name} exists`);
    }
    const pool = this.pool(spec.poolId);
    const info = this.poolInfo(pool);
    const thin = spec.thin ?? true;
    if (spec.sizeBytes > (thin ? info.thinCapacityBytes : info.thickCapacityBytes))
      throw new SdsError('NoSpace', `pool ${pool.id} is full`);
    const qos: sds.Qos = {
      maxIops: spec.qos?.maxIops ?? 0,
      maxMBps: spec.qos?.maxMBps ?? 0,
      priority: spec.qos?.priority ?? 2,
    };
    const volume: sds.VolumeInfo = {
      name: spec.name,
      sizeBytes: spec.sizeBytes,
      poolId: pool.id,
      thin,
      state: 'available',
      status: 1,
      allocatedBytes: 0,
      createdAt: new Date(),
      source: { type: 'none' },
      qos,
      cachePolicy: spec.cachePolicy ?? 'none',
      mappedHosts: [],
      healthy: true,
      snapshotCount: 0,
      ...extra,
    };
    this.volumes.set(spec.name, volume);
    return { ...volume };
  }

  async systemInfo(): Promise<sds.SystemInfo> {
    await this.enter('systemInfo');
    return {
      product: 'SDSHypervisor',
      version: 'fake',
      apiVersion: '1',
      hostId: 'host-a',
      capabilities: ['list', 'map'],
    };
  }
  async queryPools(poolIds?: string[]): Promise<sds.PoolInfo[]> {
    await this.enter('queryPools');
    return (poolIds?.length ? poolIds.map((id) => this.pool(id)) : this.pools).map((p) => this.poolInfo(p));
  }
  async createVolume(spec: sds.VolumeSpec): Promise<sds.VolumeInfo> {
    await this.enter('createVolume', true);
    return this.newVolume(spec);
  }
  async createVolumeFromSnapshot(
    spec: sds.VolumeSpec & { snapshotName: string; cloneType: sds.CloneType },
  ): Promise<sds.VolumeInfo> {
    await this.enter('createVolumeFromSnapshot', true);
    const snap = this.snapshots.get(spec.snapshotName);
    this.checkCopy(spec, snap, `snapshot ${spec.snapshotName}`, [
      'InvalidParameter',
      'vol_size: smaller than the snapshot',
    ]);
    if (spec.cloneType === 'linked' && !this.pool(snap.poolId).linkedClone)
      throw new SdsError('NotSupported', 'no linked clones here');
    return this.newCopy(spec, snap, 'snapshot');
  }
  async cloneVolume(
    spec: sds.VolumeSpec & { sourceVolumeName: string; cloneType: sds.CloneType },
  ): Promise<sds.VolumeInfo> {
    await this.enter('cloneVolume', true);
    const src = this.volumes.get(spec.sourceVolumeName);
    this.checkCopy(spec, src, `volume ${spec.sourceVolumeName}`, ['CannotShrink', 'vol_size: smaller than the source']);
    return this.newCopy(spec, src, 'volume');
  }
  /** Refuses a copy of `source` (named `what`) that is missing, or that `spec` would shrink (`smaller`). */
  private checkCopy<T extends { sizeBytes: number }>(
    spec: sds.VolumeSpec,
    source: T | undefined,
    what: string,
    smaller: [SdsErrorKind, string],
  ): asserts source is T {
    if (!source) throw new SdsError('NotFound', `${what} does not exist`);
    if (spec.sizeBytes < source.sizeBytes) throw new SdsError(...smaller);
  }
  /** A new volume copying `source`, in its pool. */
  private newCopy(
    spec: sds.VolumeSpec & { cloneType: sds.CloneType },
    source: { name: string; poolId: string },
    type: 'snapshot' | 'volume',
  ): sds.VolumeInfo {
    return this.newVolume(
      { ...spec, poolId: source.poolId },
      { source: { type, name: source.name }, cloneType: spec.cloneType },
    );
  }
  async deleteVolume(name: string): Promise<void> {
    await this.enter('deleteVolume', true);
    if ((this.mappings.get(name) ?? []).some((m) => m.attached))
      throw new SdsError('Attached', `volume ${name} is attached`);
    this.volumes.delete(name);
    this.mappings.delete(name);
  }
  async extendVolume(name: string, sizeBytes: number): Promise<sds.VolumeInfo> {
    await this.enter('extendVolume', true);
    const v = this.volumes.get(name);
    if (!v) throw new SdsError('NotFound', `volume ${name} does not exist`);
    if (sizeBytes < v.sizeBytes) throw new SdsError('CannotShrink', 'smaller');
    v.sizeBytes = sizeBytes;
    return { ...v };
  }
  async getVolume(name: string): Promise<sds.VolumeInfo | undefined> {
    await this.enter('getVolume');
    const v = this.volumes.get(name);
    return v && { ...v, mappedHosts: (this.mappings.get(name) ?? []).map((m) => m.hostId) };
  }
  async listVolumes(query: { marker?: string; limit?: number; poolId?: string }): Promise<sds.Page<sds.VolumeInfo>> {
    await this.enter('listVolumes');
    const names = [...this.volumes.keys()].sort().filter((n) => !query.marker || n > query.marker);
    const limit = query.limit ?? 100;
    const page = names.slice(0, limit);
    return {
      items: await Promise.all(page.map(async (n) => (await this.getVolume(n))!)),
      nextMarker: names.length > limit ? page[page.length - 1]! : '',
    };
  }
  async modifyVolume(
    name: string,
    change: { qos?: Partial<sds.Qos>; cachePolicy?: sds.CachePolicy },
  ): Promise<sds.VolumeInfo> {
    await this.enter('modifyVolume', true);
    const v = this.volumes.get(name);
    if (!v) throw new SdsError('NotFound', `volume ${name} does not exist`);
    Object.assign(v.qos, change.qos ?? {});
    if (change.cachePolicy) v.cachePolicy = change.cachePolicy;
    return { ...v };
  }
  async createSnapshot(name: string, volumeName: string): Promise<sds.SnapshotInfo> {
    await this.enter('createSnapshot', true);
    const existing = this.snapshots.get(name);
    if (existing) {
      if (existing.volumeName === volumeName) return { ...existing };
      throw new SdsError('AlreadyExists', `snapshot ${name} exists`);
    }
    const v = this.volumes.get(volumeName);
    if (!v) throw new SdsError('NotFound', `volume ${volumeName} does not exist`);
    const snap: sds.SnapshotInfo = {
      name,
      volumeName,
      sizeBytes: v.sizeBytes,
      poolId: v.poolId,
      state: 'available',
      status: 1,
      allocatedBytes: 0,
      createdAt: new Date(),
      dependents: 0,
    };
    this.snapshots.set(name, snap);
    return { ...snap };
  }
  async deleteSnapshot(name: string): Promise<void> {
    await this.enter('deleteSnapshot', true);
    const s = this.snapshots.get(name);
    if (s?.groupName && this.groups.has(s.groupName))
      throw new SdsError('GroupMember', `snapshot ${name} belongs to group ${s.groupName}`);
    this.snapshots.delete(name);
  }
  readonly groups = new Map<string, { volumeNames: string[]; createdAt: Date; quiesce: 'freeze' | 'flush' }>();
  private groupInfo(name: string): sds.GroupSnapshotInfo | undefined {
    const g = this.groups.get(name);
    if (!g) return undefined;
    const snapshots = [...this.snapshots.values()]
      .filter((s) => s.groupName === name)
      .sort((a, b) => (a.volumeName < b.volumeName ? -1 : 1));
    return {
      name,
      state: 'available',
      status: 1,
      poolId: snapshots[0]?.poolId ?? 'pool0',
      createdAt: g.createdAt,
      volumeNames: [...g.volumeNames],
      quiesce: g.quiesce,
      frozenCount: 0,
      healthy: true,
      snapshots: snapshots.map((s) => ({ ...s })),
    };
  }
  async createGroupSnapshot(spec: sds.GroupSnapshotSpec): Promise<sds.GroupSnapshotInfo> {
    await this.enter('createGroupSnapshot', true);
    const wanted = [...spec.volumeNames].sort();
    const existing = this.groups.get(spec.name);
    if (existing) {
      if (existing.volumeNames.join(':') !== wanted.join(':'))
        throw new SdsError('AlreadyExists', `group ${spec.name} exists with other members`);
      return this.groupInfo(spec.name)!;
    }
    const vols = wanted.map((n) => {
      const v = this.volumes.get(n);
      if (!v) throw new SdsError('NotFound', `volume ${n} does not exist`);
      return v;
    });
    if (new Set(vols.map((v) => v.poolId)).size > 1) throw new SdsError('NotSupported', 'members in several pools');
    const createdAt = new Date();
    this.groups.set(spec.name, { volumeNames: wanted, createdAt, quiesce: spec.quiesce ?? 'freeze' });
    for (const v of vols) {
      const name = `${spec.name}_${v.name}`;
      this.snapshots.set(name, {
        name,
        volumeName: v.name,
        sizeBytes: v.sizeBytes,
        poolId: v.poolId,
        state: 'available',
        status: 1,
        allocatedBytes: 0,
        createdAt,
        dependents: 0,
        groupName: spec.name,
      });
    }
    return this.groupInfo(spec.name)!;
  }
  async deleteGroupSnapshot(name: string): Promise<void> {
    await this.enter('deleteGroupSnapshot', true);
    for (const s of [...this.snapshots.values()]) if (s.groupName === name) this.snapshots.delete(s.name);
    this.groups.delete(name);
  }
  async getGroupSnapshot(name: string): Promise<sds.GroupSnapshotInfo | undefined> {
    await this.enter('getGroupSnapshot');
    return this.groupInfo(name);
  }
  async snapshotExtents(): Promise<sds.ExtentPage> {
    throw new SdsError('NotSupported', 'not in the fake');
  }
  async snapshotDelta(): Promise<sds.ExtentPage> {
    throw new SdsError('NotSupported', 'not in the fake');
  }
  async getSnapshot(name: string): Promise<sds.SnapshotInfo | undefined> {
    await this.enter('getSnapshot');
    const s = this.snapshots.get(name);
    return s && { ...s };
  }
  async listSnapshots(query: {
    marker?: string;
    limit?: number;
    volumeName?: string;
    snapshotName?: string;
  }): Promise<sds.Page<sds.SnapshotInfo>> {
    await this.enter('listSnapshots');
    const all = [...this.snapshots.values()]
      .filter(
        (s) =>
          (!query.volumeName || s.volumeName === query.volumeName) &&
          (!query.snapshotName || s.name === query.snapshotName),
      )
      .sort((a, b) => (a.name < b.name ? -1 : 1))
      .filter((s) => !query.marker || s.name > query.marker);
    const limit = query.limit ?? 100;
    const page = all.slice(0, limit);
    return { items: page.map((s) => ({ ...s })), nextMarker: all.length > limit ? page[page.length - 1]!.name : '' };
  }
  async mapVolume(name: string, hostId: string, options: { readOnly: boolean; exclusive: boolean }): Promise<void> {
    await this.enter('mapVolume', true);
    if (!this.volumes.has(name)) throw new SdsError('NotFound', `volume ${name} does not exist`);
    if (!this.hosts.has(hostId)) throw new SdsError('HostNotFound', `host ${hostId} does not exist`);
    const maps = this.mappings.get(name) ?? [];
    const mode = options.readOnly ? 'ro' : 'rw';
    const same = maps.find((m) => m.hostId === hostId);
    if (same) {
      if (same.accessMode !== mode) throw new SdsError('MapConflict', `already mapped to ${hostId} ${same.accessMode}`);
      return;
    }
    const other = maps.find((m) => m.hostId !== hostId);
    if (options.exclusive && other)
      throw new SdsError('MappedElsewhere', `volume ${name} is mapped to host ${other.hostId}`);
    maps.push({ hostId, accessMode: mode, attached: false, online: true });
    this.mappings.set(name, maps);
  }
  async unmapVolume(name: string, hostId: string, options: { force?: boolean } = {}): Promise<void> {
    await this.enter('unmapVolume', true);
    if (!this.volumes.has(name)) throw new SdsError('NotFound', `volume ${name} does not exist`);
    this.unmaps.push({ name, hostId, force: options.force === true });
    const mapping = (this.mappings.get(name) ?? []).find((m) => m.hostId === hostId);
    if (mapping?.attached && !options.force)
      throw new SdsError('Attached', `volume ${name} is attached on ${hostId}; detach it or unmap with force=1`);
    this.mappings.set(
      name,
      (this.mappings.get(name) ?? []).filter((m) => m.hostId !== hostId),
    );
  }
  /** Every unmapVolume call, in order, with its force flag. */
  readonly unmaps: Array<{ name: string; hostId: string; force: boolean }> = [];
  /** Marks a mapping attached (a block device on that host) and its host up or down, as the VBS reports it. */
  setAttachment(name: string, hostId: string, state: { attached: boolean; online: boolean }): void {
    const mapping = (this.mappings.get(name) ?? []).find((m) => m.hostId === hostId);
    if (!mapping) throw new Error(`volume ${name} is not mapped to ${hostId}`);
    Object.assign(mapping, state);
  }
  async volumeHosts(name: string): Promise<sds.HostMapping[]> {
    await this.enter('volumeHosts');
    if (!this.volumes.has(name)) throw new SdsError('NotFound', `volume ${name} does not exist`);
    return [...(this.mappings.get(name) ?? [])];
  }
  async importImage(spec: sds.ImageImportSpec): Promise<{ job: sds.ImageJob; volume: sds.VolumeInfo }> {
    await this.enter('importImage', true);
    const volume = this.newVolume({ ...spec, sizeBytes: spec.sizeBytes ?? 16 * MiB }, { source: { type: 'image' } });
    // 'broken' fails as a bad image, 'full' as a pool that ran out of space.
    const full = spec.url.includes('full');
    const failed = full || spec.url.includes('broken');
    if (failed) this.volumes.delete(spec.name);
    const job: sds.ImageJob = {
      id: `job-${this.jobs.size + 1}`,
      type: 'import',
      state: failed ? 'failed' : 'done',
      volumeName: spec.name,
      bytesDone: 0,
      bytesTotal: 0,
      ...(failed ? { error: full ? 'ENOSPC: no space left on device, write' : 'unreadable image' } : {}),
      ...(full ? { outOfSpace: true } : {}),
    };
    this.jobs.set(job.id, job);
    return { job: { ...job, state: 'running' }, volume };
  }
  async exportImage(_spec: sds.ImageExportSpec): Promise<sds.ImageJob> {
    throw new SdsError('NotSupported', 'not in the fake');
  }
  async getImageJob(id: string): Promise<sds.ImageJob | undefined> {
    await this.enter('getImageJob');
    return this.jobs.get(id);
  }
  async waitImageJob(id: string, _timeoutMs: number, _opts?: sds.CallOptions): Promise<sds.ImageJob> {
    await this.enter('waitImageJob');
    const job = this.jobs.get(id);
    if (!job) throw new SdsError('NotFound', `job ${id} does not exist`);
    return job;
  }
  close(): void {}
}
