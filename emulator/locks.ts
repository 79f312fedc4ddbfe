// In-memory guards: a non-blocking per-object lock (a second operation on the same object is answered BUSY)
// and a per-key queue (attach/detach of one volume run one after the other).

export class ObjectLocks {
  private readonly held = new Map<string, string>();

  /** Takes the lock of every key, or none: returns the operation holding one of them, undefined when taken. */
  tryTake(keys: readonly string[], op: string): string | undefined {
    for (const k of keys) {
      const holder = this.held.get(k);
      if (holder !== undefined) return holder;
    }
    for (const k of keys) this.held.set(k, op);
    return undefined;
  }

  release(keys: readonly string[]): void {
    for (const k of keys) this.held.delete(k);
  }

  holder(key: string): string | undefined {
    return this.held.get(key);
  }

  get size(): number {
    return this.held.size;
  }
}

export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }
}

export const volKey = (name: string): string => `vol:${name}`;
export const snapKey = (name: string): string => `snap:${name}`;
