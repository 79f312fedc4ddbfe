// What every part of the emulator shares: settings, logger, store, pools, locks and background work.
import { Key } from '../src/protocol/catalog.js';
import type { EmulatorConfig } from './config.js';
import type { ThickReservations } from './reservations.js';
import type { Freezer } from './freeze.js';
import { VbsError } from './errors.js';
import type { ObjectLocks } from './locks.js';
import type { Logger } from './log.js';
import type { Pool } from './pools.js';
import type { BlkioThrottle } from './qos.js';
import type { Deleter } from './deleter.js';
import type { Store } from './store.js';
import { RetCode } from '../src/protocol/vbs.js';

/** Work that outlives the request that started it (deletes, image jobs); shutdown waits for it. */
export class Background {
  private readonly running = new Set<Promise<unknown>>();

  track<T>(p: Promise<T>): Promise<T> {
    this.running.add(p);
    const done = (): void => void this.running.delete(p);
    p.then(done, done);
    return p;
  }

  get size(): number {
    return this.running.size;
  }

  /** Resolves when nothing runs, or after `timeoutMs`; true when everything finished. */
  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.running.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.allSettled([...this.running]),
        new Promise((r) => {
          timer = setTimeout(r, left);
        }),
      ]);
      clearTimeout(timer);
    }
    return true;
  }
}

export interface Ctx {
  config: EmulatorConfig;
  log: Logger;
  store: Store;
  pools: Map<string, Pool>;
  /** the pool a request without pool_id uses */
  defaultPool: string;
  locks: ObjectLocks;
  qos: BlkioThrottle;
  hostId: string;
  background: Background;
  deleter: Deleter;
  /** bytes promised to thick volumes being preallocated, per pool, not yet visible in statfs */
  thickReserved: ThickReservations;
  /** set when shutdown begins: new work is refused with UNAVAILABLE */
  stopping: boolean;
  /** file systems frozen for group snapshots; thawed at shutdown whatever happens */
  freezer: Freezer;
}

export function poolOf(ctx: Ctx, name: string): Pool {
  const pool = ctx.pools.get(name);
  if (!pool) throw new VbsError(RetCode.POOL_NOT_EXIST, `${Key.POOL_ID}: pool ${name} does not exist`);
  return pool;
}

/** The pool a new object goes to; refuses a faulty pool. */
export function usablePool(ctx: Ctx, name: string): Pool {
  const pool = poolOf(ctx, name);
  if (!pool.healthy) throw new VbsError(RetCode.INTERNAL, `pool ${name} is faulty: ${pool.faultReason}`);
  return pool;
}

/** The hosts that see a pool's LUN (--pool-hosts), in the back end's host order; every host by default. */
export function poolHostIds(ctx: Ctx, pool: string): string[] {
  const all = ctx.store.hosts().map((h) => h.host_id);
  const seenBy = ctx.config.poolHosts[pool];
  return seenBy === undefined ? all : all.filter((h) => seenBy.includes(h));
}

/** Why `hostId` cannot reach a volume of `pool`, or undefined when it sees the pool. */
export function poolUnseenBy(ctx: Ctx, pool: string, hostId: string, volume: string): string | undefined {
  const seenBy = poolHostIds(ctx, pool);
  if (seenBy.includes(hostId)) return undefined;
  return `volume ${volume} is in pool ${pool}, which host ${hostId} does not see (seen by ${seenBy.join(', ') || 'no host'})`;
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/**
 * One host's view of the shared context: the same store, pools, locks and flags (read through to `ctx`, so
 * `stopping` set on it is seen here), only `hostId` is this host's. Every host of a multi-host back end
 * serves its socket API and data plane through such a view (emulator/README.md, "Several hosts").
 */
export function hostView(ctx: Ctx, hostId: string): Ctx {
  if (hostId === ctx.hostId) return ctx;
  const view = Object.create(ctx) as Ctx;
  Object.defineProperty(view, 'hostId', { value: hostId, enumerable: true });
  return view;
}
