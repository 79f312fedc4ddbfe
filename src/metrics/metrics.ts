// The driver's Prometheus metrics (prom-client), in a registry of its own (not prom-client's global one, so
// nothing else in the process can add to or reset it). Everything we define is named sdshypervisor_csi_*;
// the default process and Node.js metrics keep their usual names (process_*, nodejs_*).
// The observers below sit on hot paths (every RPC, every VBS request, every sds_cli run): each is a
// cached label lookup and an increment or observe, nothing more.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ConnectorObserver } from '../connector/options.js';
import type { Logger } from '../log/logger.js';
import type { PoolInfo, SdsBackend } from '../sds/backend.js';
import type { SdsObserver } from '../sds/client.js';
import type { RpcObserver } from '../server/rpc.js';

export const METRIC_PREFIX = 'sdshypervisor_csi_';

/** Seconds, from 1 ms to 60 s: a Probe takes a millisecond, a full clone or a mkfs may take a minute. */
export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface BackendStatsOptions {
  /** how long collected values are served before the back end is asked again */
  maxAgeMs: number;
  /** how long a scrape waits for a collection; past it the scrape answers with what it has */
  waitMs: number;
  /** bound of one collection (pools and every page of volumes) */
  collectTimeoutMs: number;
  log: Logger;
}

export const BACKEND_STATS_DEFAULTS = { maxAgeMs: 10_000, waitMs: 2_000, collectTimeoutMs: 20_000 } as const;

/** What the back end holds, as the metrics show it. */
export interface BackendStats {
  pools: PoolInfo[];
  volumesByPool: Map<string, number>;
}

type StatsSource = Pick<SdsBackend, 'queryPools' | 'listVolumes'>;

const VOLUME_PAGE = 1000;
/** 1,000 pages of 1,000: a bound on the work of one collection, far above any real back end. */
const MAX_VOLUME_PAGES = 1000;

/**
 * Pools and volume counts, collected at scrape time and kept for `maxAgeMs`. Scrapes that come while a
 * collection runs share it; a scrape never waits more than `waitMs` (a slow back end answers the next one).
 */
export class BackendStatsCache {
  private last: { stats: BackendStats; at: number } | undefined;
  private pending: Promise<void> | undefined;
  /** whether the last collection that ended succeeded */
  up = false;
  private loggedFailure = false;

  constructor(
    private readonly source: StatsSource,
    private readonly options: BackendStatsOptions,
  ) {}

  async get(): Promise<BackendStats | undefined> {
    if (this.last && Date.now() - this.last.at < this.options.maxAgeMs) return this.last.stats;
    this.pending ??= this.collect().finally(() => {
      this.pending = undefined;
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.pending,
      new Promise<void>((resolve) => (timer = setTimeout(resolve, this.options.waitMs))),
    ]);
    clearTimeout(timer);
    return this.last?.stats;
  }

  private async collect(): Promise<void> {
    const signal = AbortSignal.timeout(this.options.collectTimeoutMs);
    try {
      const pools = await this.source.queryPools(undefined, { signal });
      const volumesByPool = new Map<string, number>(pools.map((p) => [p.id, 0]));
      let marker = '';
      for (let page = 0; page < MAX_VOLUME_PAGES; page++) {
        const { items, nextMarker } = await this.source.listVolumes({ marker, limit: VOLUME_PAGE }, { signal });
        for (const v of items) volumesByPool.set(v.poolId, (volumesByPool.get(v.poolId) ?? 0) + 1);
        marker = nextMarker;
        if (marker === '') break;
      }
      this.last = { stats: { pools, volumesByPool }, at: Date.now() };
      this.up = true;
      if (this.loggedFailure) this.options.log.info('metrics: the back end answers again');
      this.loggedFailure = false;
    } catch (err) {
      // Values we can no longer confirm are dropped rather than shown as current.
      this.last = undefined;
      this.up = false;
      if (!this.loggedFailure)
        this.options.log.warn(
          { err: (err as Error).message },
          'metrics: cannot collect pool and volume figures from the back end',
        );
      this.loggedFailure = true;
    }
  }
}

export class DriverMetrics {
  readonly registry = new Registry();
  private readonly rpcRequests: Counter<'method' | 'code'>;
  private readonly rpcDuration: Histogram<'method' | 'code'>;
  private readonly rpcInFlight: Gauge<'method'>;
  private readonly backendDuration: Histogram<'request_type' | 'result'>;
  private readonly connectorDuration: Histogram<'method' | 'result'>;
  /** label children by key, so the hot path does not hash label objects */
  private readonly children = new Map<string, unknown>();

  constructor(info: { version: string; mode: string; driverName: string }) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: `${METRIC_PREFIX}build_info`,
      help: 'Always 1; the labels say which driver runs',
      labelNames: ['version', 'mode', 'driver_name'],
      registers,
    }).set({ version: info.version, mode: info.mode, driver_name: info.driverName }, 1);
    this.rpcRequests = new Counter({
      name: `${METRIC_PREFIX}rpc_requests_total`,
      help: 'CSI RPCs handled, by method and gRPC status code',
      labelNames: ['method', 'code'],
      registers,
    });
    this.rpcDuration = this.durations(
      'rpc_duration_seconds',
      'How long CSI RPCs took, by method and gRPC status code',
      ['method', 'code'],
    );
    this.rpcInFlight = new Gauge({
      name: `${METRIC_PREFIX}rpc_in_flight`,
      help: 'CSI RPCs being handled now, by method',
      labelNames: ['method'],
      registers,
    });
    this.backendDuration = this.durations(
      'backend_request_duration_seconds',
      'How long VBS socket-API requests took (retries included), by request type and result (ok or the error kind)',
      ['request_type', 'result'],
    );
    this.connectorDuration = this.durations(
      'connector_call_duration_seconds',
      'How long sds_cli runs took, by method (attach, detach, querydev) and result (ok or the error kind)',
      ['method', 'result'],
    );
  }

  /** A histogram of durations in seconds, with the driver's buckets, in this registry. */
  private durations<L extends string>(name: string, help: string, labelNames: L[]): Histogram<L> {
    return new Histogram({
      name: `${METRIC_PREFIX}${name}`,
      help,
      labelNames,
      buckets: DURATION_BUCKETS,
      registers: [this.registry],
    });
  }

  private child<T>(key: string, make: () => T): T {
    let c = this.children.get(key) as T | undefined;
    if (c === undefined) {
      c = make();
      this.children.set(key, c);
    }
    return c;
  }

  /** For the CSI server's RpcTracker. */
  readonly rpc: RpcObserver = {
    started: (method) => this.child(`f\0${method}`, () => this.rpcInFlight.labels(method)).inc(),
    finished: (method, code, seconds) => {
      this.child(`f\0${method}`, () => this.rpcInFlight.labels(method)).dec();
      this.child(`c\0${method}\0${code}`, () => this.rpcRequests.labels(method, code)).inc();
      this.child(`d\0${method}\0${code}`, () => this.rpcDuration.labels(method, code)).observe(seconds);
    },
  };

  /** For SdsClientOptions.observer. */
  readonly backend: SdsObserver = (requestType, result, seconds) => {
    this.child(`b\0${requestType}\0${result}`, () => this.backendDuration.labels(requestType, result)).observe(seconds);
  };

  /** For KvConnectorOptions.observer. */
  readonly connector: ConnectorObserver = (method, result, seconds) => {
    this.child(`k\0${method}\0${result}`, () => this.connectorDuration.labels(method, result)).observe(seconds);
  };

  /**
   * Adds what the back end holds: volumes per pool and pool capacities, collected at scrape time through
   * `source` (cached and bounded, see BackendStatsCache). For the controller: every node would report the same.
   */
  watchBackend(source: StatsSource, options: BackendStatsOptions): BackendStatsCache {
    const cache = new BackendStatsCache(source, options);
    const registers = [this.registry];
    new Gauge({
      name: `${METRIC_PREFIX}backend_up`,
      help: '1 when the last collection of pool and volume figures from the back end succeeded, else 0',
      registers,
      async collect() {
        await cache.get();
        this.set(cache.up ? 1 : 0);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}volumes`,
      help: 'Volumes on the back end, by pool',
      labelNames: ['pool'],
      registers,
      async collect() {
        const stats = await cache.get();
        this.reset();
        for (const [pool, count] of stats?.volumesByPool ?? []) this.set({ pool }, count);
      },
    });
    new Gauge({
      name: `${METRIC_PREFIX}pool_capacity_bytes`,
      help: 'Pool capacity by kind: total, free (unused space in the LUN), provisioned (sum of volume sizes), allocated (written), thin_available (what new thin volumes may still provision)',
      labelNames: ['pool', 'kind'],
      registers,
      async collect() {
        const stats = await cache.get();
        this.reset();
        for (const p of stats?.pools ?? []) {
          this.set({ pool: p.id, kind: 'total' }, p.totalBytes);
          this.set({ pool: p.id, kind: 'free' }, p.freeBytes);
          this.set({ pool: p.id, kind: 'provisioned' }, p.provisionedBytes);
          this.set({ pool: p.id, kind: 'allocated' }, p.allocatedBytes);
          this.set({ pool: p.id, kind: 'thin_available' }, p.thinCapacityBytes);
        }
      },
    });
    return cache;
  }
}
