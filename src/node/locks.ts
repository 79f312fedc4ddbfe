// One operation per volume at a time on this node. A second concurrent call for the same volume is refused
// with ABORTED (CSI "operation pending"), not queued: the CO retries with back-off, and by then the first
// call has finished the work the retry will find done.
import { aborted } from '../server/errors.js';
import { KeyedMutex } from '../util/keyed-mutex.js';

export class VolumeLocks {
  private readonly mutex = new KeyedMutex<string>();
  /** what holds each lock, for the ABORTED message */
  private readonly holders = new Map<string, string>();

  get size(): number {
    return this.mutex.size;
  }

  async run<T>(volumeId: string, what: string, fn: () => Promise<T>): Promise<T> {
    const release = this.mutex.tryLock(volumeId);
    if (!release)
      throw aborted(
        `an operation on volume ${volumeId} is already in progress (${this.holders.get(volumeId) ?? 'another call'}); retry later`,
      );
    this.holders.set(volumeId, what);
    try {
      return await fn();
    } finally {
      this.holders.delete(volumeId);
      release();
    }
  }
}
