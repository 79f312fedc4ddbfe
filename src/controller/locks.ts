// Per-key operation locks: a second operation on a volume or snapshot that is already being worked on is
// refused with ABORTED (CSI "operation pending") rather than queued, so the CO retries with back-off.
import { aborted } from '../server/errors.js';
import { KeyedMutex } from '../util/keyed-mutex.js';

export class OperationLocks {
  private readonly mutex = new KeyedMutex<string>();

  /** How many keys are held now (for tests). */
  get size(): number {
    return this.mutex.size;
  }

  /** Runs `fn` holding `key`; `subject` names the object in the ABORTED message. */
  async run<T>(key: string, subject: string, fn: () => Promise<T>): Promise<T> {
    const result = await this.mutex.tryWithLock(key, fn);
    if (!result.acquired) throw aborted(`an operation on ${subject} is already in progress`);
    return result.value;
  }
}

export const volumeKey = (volumeName: string) => `volume/${volumeName}`;
export const snapshotKey = (snapshotName: string) => `snapshot/${snapshotName}`;
