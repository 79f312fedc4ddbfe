// Finishes accepted deletes in the background: unlink the file, then drop the row, in batches. Each
// enqueue returns when its item is done, so a request handler may wait a short window and tell the client
// the delete already completed (`deleted=1`), sparing it the QUERY_*_REQ polls.
import { promises as fsp } from 'node:fs';
import type { Background } from './context.js';
import type { Logger } from './log.js';
import type { Store } from './store.js';

export interface DeleteItem {
  /** a group's item comes after its members' and only drops the group row */
  kind: 'volume' | 'snapshot' | 'group';
  id: number;
  name: string;
  /** the object's file; undefined when its pool is gone */
  path: string | undefined;
}

export class Deleter {
  private queue: Array<{ item: DeleteItem; done: (deleted: boolean) => void }> = [];
  private running = false;

  constructor(
    private readonly store: Store,
    private readonly background: Background,
    private readonly log: Logger,
  ) {}

  /** Resolves true once the item is gone (file and row), false when it failed and was marked faulty. */
  enqueue(item: DeleteItem): Promise<boolean> {
    return new Promise((done) => {
      this.queue.push({ item, done });
      if (!this.running) {
        this.running = true;
        void this.background.track(this.loop());
      }
    });
  }

  private async loop(): Promise<void> {
    try {
      // Let the request handler write its reply first.
      await new Promise((r) => setImmediate(r));
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, 512);
        const results = await Promise.allSettled(batch.map(({ item }) => this.unlink(item)));
        this.store.tx(() => {
          batch.forEach(({ item }, i) => {
            const result = results[i]!;
            if (result.status === 'fulfilled') {
              if (item.kind === 'volume') this.store.deleteVolume(item.id);
              else if (item.kind === 'group') this.store.deleteGroup(item.id, item.name);
              else this.store.deleteSnapshot(item.id);
            } else {
              const reason = `delete failed: ${(result.reason as Error).message}`;
              this.log.error(
                { err: result.reason, kind: item.kind, name: item.name },
                'delete failed; the object is marked faulty',
              );
              if (item.kind === 'volume') this.store.setVolumeFault(item.id, reason);
              else if (item.kind === 'group') this.store.deleteGroup(item.id, item.name);
              else this.store.setSnapshotFault(item.id, reason);
            }
          });
        });
        batch.forEach(({ item, done }, i) => {
          this.log.debug({ kind: item.kind, name: item.name }, 'deleted');
          done(results[i]!.status === 'fulfilled');
        });
      }
    } finally {
      this.running = false;
    }
  }

  private async unlink(item: DeleteItem): Promise<void> {
    if (!item.path) return;
    try {
      await fsp.unlink(item.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}
