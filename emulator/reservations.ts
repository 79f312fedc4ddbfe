// Space promised to thick volumes while their files are being allocated (issue #15, item 11). A promise
// counts only the part its file does not hold yet: statfs already shows what fallocate has allocated, so
// counting the whole promise until it is released would count those bytes twice and refuse creates that fit.
// Inside one fallocate XFS takes the space out of statfs's free before the file's block count grows (measured:
// the whole 1 GiB of a fallocate -l 1G for a moment), so a refusal waits for allocations in flight
// (capacity.ts, waitOutAllocations).
import { allocationOf } from './files.js';

interface Reservation {
  bytes: number;
  /** the file being allocated, when known; its growth since `baseline` is already out of statfs's free */
  file: string | undefined;
  baseline: number;
}

export class ThickReservations {
  private readonly byPool = new Map<string, Set<Reservation>>();
  /** callers of released(): woken at the next release of a promise of their pool */
  private readonly waiters = new Map<string, Array<() => void>>();

  /** Promises `bytes` of `pool` to `file` (allocated from now on); the function releases the promise. */
  reserve(pool: string, bytes: number, file?: string): () => void {
    if (bytes <= 0) return () => undefined;
    const entry: Reservation = { bytes, file, baseline: file ? (allocationOf(file) ?? 0) : 0 };
    let set = this.byPool.get(pool);
    if (!set) this.byPool.set(pool, (set = new Set()));
    set.add(entry);
    return () => {
      if (!set.delete(entry)) return;
      const woken = this.waiters.get(pool) ?? [];
      this.waiters.delete(pool);
      for (const wake of woken) wake();
    };
  }

  /** Whether some file of `pool` is being allocated under a promise now. */
  inFlight(pool: string): boolean {
    return (this.byPool.get(pool)?.size ?? 0) > 0;
  }

  /** Resolves at the next release of a promise of `pool` (at once when none is held). */
  released(pool: string): Promise<void> {
    if (!this.inFlight(pool)) return Promise.resolve();
    return new Promise((resolve) => {
      const list = this.waiters.get(pool) ?? [];
      list.push(resolve);
      this.waiters.set(pool, list);
    });
  }

  /** Bytes of `pool` promised and not yet allocated. */
  get(pool: string): number {
    let total = 0;
    for (const r of this.byPool.get(pool) ?? []) {
      const grown = r.file ? Math.max(0, (allocationOf(r.file) ?? 0) - r.baseline) : 0;
      total += Math.max(0, r.bytes - grown);
    }
    return total;
  }
}
