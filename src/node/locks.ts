// One operation per volume at a time on this node. A second concurrent call for the same volume is refused
// with ABORTED (CSI "operation pending"), not queued: the CO retries with back-off, and by then the first
// call has finished the work the retry will find done.
import { aborted } from '../server/errors.js';

export class VolumeLocks {
  private readonly held = new Map<string, string>();

  get size(): number {
    return this.held.size;
  }

  async run<T>(volumeId: string, what: string, fn: () => Promise<T>): Promise<T> {
    const running = this.held.get(volumeId);
    if (running !== undefined) throw aborted(`an operation on volume ${volumeId} is already in progress (${running}); retry later`);
    this.held.set(volumeId, what);
    try {
      return await fn();
    } finally {
      this.held.delete(volumeId);
    }
  }
}
