// Whether a pool has room: the thin over-subscription limit and, for thick allocations, statfs's free space
// less what is promised to files still being allocated (reservations.ts).
import { Key } from '../src/protocol/catalog.js';
import { RetCode } from '../src/protocol/vbs.js';
import type { Ctx } from './context.js';
import { VbsError } from './errors.js';
import { MiB } from './files.js';
import type { Pool } from './pools.js';

/**
 * Thin provisioning: the pool accepts volumes while provisioned ≤ total × max over-subscription.
 * `needBytes` is real space the operation allocates now (thick volumes, full copies).
 */
export function checkCapacity(ctx: Ctx, pool: Pool, addMb: number, needBytes: number): void {
  const totalMb = Math.floor(pool.totalBytes() / MiB);
  const ratio = ctx.config.maxOversubscription;
  const thinLeft = Math.max(0, Math.floor(totalMb * ratio) - ctx.store.provisionedMb(pool.name));
  if (addMb > thinLeft) {
    throw new VbsError(
      RetCode.NO_SPACE,
      `${Key.VOL_SIZE}: pool ${pool.name} can provision ${thinLeft} MiB more (over-subscription ${ratio}), ${addMb} MiB asked`,
    );
  }
  if (needBytes > 0) {
    const free = pool.space().freeBytes - (ctx.thickReserved.get(pool.name) ?? 0);
    if (needBytes > free) {
      throw new VbsError(
        RetCode.NO_SPACE,
        `${Key.VOL_SIZE}: pool ${pool.name} has ${Math.floor(Math.max(0, free) / MiB)} MiB free, ${Math.ceil(needBytes / MiB)} MiB needed`,
      );
    }
  }
}

/** Holds `bytes` of `pool` for `file` until released; what `file` allocates meanwhile is counted once. */
export function reserve(ctx: Ctx, pool: string, bytes: number, file?: string): () => void {
  return ctx.thickReserved.reserve(pool, bytes, file);
}

/**
 * After checkCapacity refused `err`: returns once an allocation of `pool` in flight has finished, so the
 * caller checks again; rethrows `err` when it is not about space or none is in flight. While XFS preallocates
 * a thick file it takes the space out of statfs's free before the file's block count shows it, so for that
 * moment the file's promise and its allocation both count: a refusal for space stands only once no
 * allocation of the pool is in flight.
 */
export async function waitOutAllocations(ctx: Ctx, pool: string, err: unknown): Promise<void> {
  const forSpace = err instanceof VbsError && err.retcode === RetCode.NO_SPACE;
  if (!forSpace || !ctx.thickReserved.inFlight(pool)) throw err;
  await ctx.thickReserved.released(pool);
}
