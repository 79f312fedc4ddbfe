// Space promised to thick volumes while their files are being allocated (issue #15, item 11). A promise
// counts only the part its file does not hold yet: statfs already shows what fallocate has allocated, so
// counting the whole promise until it is released would count those bytes twice and refuse creates that fit.
import { allocationOf } from './files.js';

interface Reservation {
  bytes: number;
  /** the file being allocated, when known; its growth since `baseline` is already out of statfs's free */
  file: string | undefined;
  baseline: number;
}

export class ThickReservations {
  private readonly byPool = new Map<string, Set<Reservation>>();

  /** Promises `bytes` of `pool` to `file` (allocated from now on); the function releases the promise. */
  reserve(pool: string, bytes: number, file?: string): () => void {
    if (bytes <= 0) return () => undefined;
    const entry: Reservation = { bytes, file, baseline: file ? (allocationOf(file) ?? 0) : 0 };
    let set = this.byPool.get(pool);
    if (!set) this.byPool.set(pool, (set = new Set()));
    set.add(entry);
    return () => {
      set.delete(entry);
    };
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
