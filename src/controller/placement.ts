// Where a volume goes: the pool named by the StorageClass or the first pool, restricted by the CO's
// accessibility requirements to pools whose LUN a requested host sees. Only segments carrying our host key
// take part: other keys (zone labels the node plugin copies) neither select nor exclude a pool.
import type { Topology__Output } from '../generated/csi/v1/Topology.js';
import type { TopologyRequirement__Output } from '../generated/csi/v1/TopologyRequirement.js';
import type { CallOptions, PoolInfo, SdsBackend } from '../sds/backend.js';
import { SdsError } from '../sds/errors.js';
import { raceAbort } from '../util/abort.js';
import { invalidArgument, outOfRange, resourceExhausted } from '../server/errors.js';
import { hostsInTopologies, TOPOLOGY_HOST_KEY } from './validation.js';

/** Host ids a volume must be reachable from, or undefined when the requirement does not restrict hosts. */
export function requiredHosts(requirements: TopologyRequirement__Output | null): string[] | undefined {
  const requisite = requirements?.requisite ?? [];
  // A requisite segment without our key can be met by any pool, so the requirement restricts nothing.
  if (requisite.length === 0 || requisite.some((t) => t.segments[TOPOLOGY_HOST_KEY] === undefined)) return undefined;
  return hostsInTopologies(requisite);
}

export function poolSatisfies(pool: PoolInfo, requirements: TopologyRequirement__Output | null): boolean {
  const hosts = requiredHosts(requirements);
  // A pool whose record names no hosts (the original level) constrains nothing the driver could check: the
  // back end decides reachability, and no host topology is claimed for its volumes.
  return hosts === undefined || pool.hostsUnknown === true || pool.hosts.some((h) => hosts.includes(h));
}

/**
 * The pools the driver uses (--vbs-pools, or all the VBS lists) and the StorageClass's `pool` when it is not
 * among them: asked for by id, as the original client asked (a VBS that answers only named pools has it).
 */
export async function withNamedPool(
  backend: Pick<SdsBackend, 'queryPools'>,
  pools: PoolInfo[],
  poolId: string | undefined,
  opts: CallOptions,
): Promise<PoolInfo[]> {
  if (poolId === undefined || pools.some((p) => p.id === poolId)) return pools;
  try {
    return [...pools, ...(await backend.queryPools([poolId], opts)).filter((p) => p.id === poolId)];
  } catch (err) {
    // An unknown id is the parameter's fault; candidatePools names it.
    if (err instanceof SdsError && (err.kind === 'PoolNotFound' || err.kind === 'InvalidParameter')) return pools;
    throw err;
  }
}

/** The pool named `poolId` (INVALID_ARGUMENT naming the parameter when unknown), or all pools. */
export function candidatePools(pools: PoolInfo[], poolId: string | undefined): PoolInfo[] {
  if (poolId === undefined) return pools;
  const pool = pools.find((p) => p.id === poolId);
  if (!pool) throw invalidArgument(`parameters.pool: the back end has no pool ${JSON.stringify(poolId)}`);
  return [pool];
}

/** Chooses the pool for a new volume; RESOURCE_EXHAUSTED when no pool is reachable where the CO requires. */
export function choosePool(
  pools: PoolInfo[],
  poolId: string | undefined,
  requirements: TopologyRequirement__Output | null,
): PoolInfo {
  const named = candidatePools(pools, poolId);
  const fitting = named.filter((p) => poolSatisfies(p, requirements));
  if (fitting.length === 0) {
    if (named.length === 0) throw resourceExhausted('the back end has no storage pool');
    const hosts = requiredHosts(requirements) ?? [];
    throw resourceExhausted(
      `no ${poolId ? `pool ${JSON.stringify(poolId)}` : 'pool'} is reachable from the required hosts ${hosts.join(', ')}`,
    );
  }
  // Healthy pools first, then the CO's preferred hosts in its order.
  const ordered = [...fitting.filter((p) => p.healthy), ...fitting.filter((p) => !p.healthy)];
  for (const host of hostsInTopologies(requirements?.preferred ?? [])) {
    const pool = ordered.find((p) => p.hosts.includes(host));
    if (pool) return pool;
  }
  return ordered[0]!;
}

/** Pools serving a GetCapacity topology: those seen by the host our key names, or all when it names none. */
export function poolsForTopology(pools: PoolInfo[], topology: Topology__Output | null): PoolInfo[] {
  const host = topology?.segments[TOPOLOGY_HOST_KEY];
  return host === undefined ? pools : pools.filter((p) => p.hostsUnknown === true || p.hosts.includes(host));
}

/** The most a pool can ever hold for one volume: total × over-subscription for thin, total for thick. */
export function poolCeilingBytes(pool: PoolInfo, thin: boolean): number {
  return thin ? Math.floor(pool.totalBytes * Math.max(1, pool.maxOversubscription)) : pool.totalBytes;
}

export function checkPoolCeiling(pool: PoolInfo, thin: boolean, sizeBytes: number): void {
  const ceiling = poolCeilingBytes(pool, thin);
  if (sizeBytes > ceiling) {
    throw outOfRange(
      `${sizeBytes} bytes exceeds what pool ${pool.id} can ever hold for a ${thin ? 'thin' : 'thick'} volume (${ceiling} bytes)`,
    );
  }
}

/**
 * The pools' layout — ids, sizes, kinds, the hosts that see them — changes only when an administrator
 * reconfigures the back end, so placement and topology read it through a short cache: a CreateVolume then
 * costs one back-end request, not two. Free space never comes from here (the back end enforces it on every
 * create, and GetCapacity asks afresh). Concurrent callers share one request.
 */
export class PoolDirectory {
  private cached: { pools: PoolInfo[]; at: number } | undefined;
  private pending: Promise<PoolInfo[]> | undefined;

  constructor(
    private readonly fetch: (opts: CallOptions) => Promise<PoolInfo[]>,
    private readonly ttlMs = 5_000,
  ) {}

  async pools(opts: CallOptions): Promise<PoolInfo[]> {
    if (this.cached && Date.now() - this.cached.at < this.ttlMs) return this.cached.pools;
    this.pending ??= this.fetch({ ...(opts.requestId ? { requestId: opts.requestId } : {}) })
      .then((pools) => {
        this.cached = { pools, at: Date.now() };
        return pools;
      })
      .finally(() => {
        this.pending = undefined;
      });
    // The shared request carries no caller's signal; each caller still stops waiting when its own fires.
    return opts.signal ? raceAbort(this.pending, opts.signal, () => waitEnded(opts.signal!)) : this.pending;
  }

  async pool(poolId: string, opts: CallOptions): Promise<PoolInfo | undefined> {
    return (await this.pools(opts)).find((p) => p.id === poolId);
  }
}

function waitEnded(signal: AbortSignal): SdsError {
  const why = (signal.reason as Error | undefined)?.message ?? String(signal.reason);
  return new SdsError('Timeout', `QUERY_POOLS_CAPABILITY_REQ: the call ended while waiting for the pool list: ${why}`);
}
