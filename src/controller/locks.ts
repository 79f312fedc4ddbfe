// Per-key operation locks: a second operation on a volume or snapshot that is already being worked on is
// refused with ABORTED (CSI "operation pending") rather than queued, so the CO retries with back-off.
// TODO(reconcile): switch the inside to KeyedMutex.tryLock (src/util/keyed-mutex.ts) once it is on main.
import { aborted } from '../server/errors.js';

export class OperationLocks {
  private readonly held = new Set<string>();

  /** How many keys are held now (for tests). */
  get size(): number {
    return this.held.size;
  }

  /** Runs `fn` holding `key`; `subject` names the object in the ABORTED message. */
  async run<T>(key: string, subject: string, fn: () => Promise<T>): Promise<T> {
    if (this.held.has(key)) throw aborted(`an operation on ${subject} is already in progress`);
    this.held.add(key);
    try {
      return await fn();
    } finally {
      this.held.delete(key);
    }
  }
}

export const volumeKey = (volumeName: string) => `volume/${volumeName}`;
export const snapshotKey = (snapshotName: string) => `snapshot/${snapshotName}`;
