// An in-process mutex per key (a volume name, a snapshot name, ...): calls on one key run one at a time, in
// arrival order; calls on different keys run freely. No external dependency, no timers; an idle key costs
// nothing (its entry is dropped when the last holder releases).

/** Releases a held lock; calling it more than once is harmless. */
export type Release = () => void;

interface Waiter {
  grant: () => void;
}

export class KeyedMutex<K = string> {
  // A key is held exactly when it has an entry; the entry lists who waits for it, first come first served.
  private readonly held = new Map<K, Waiter[]>();

  /** Whether some caller holds `key` now. */
  isLocked(key: K): boolean {
    return this.held.has(key);
  }

  /** How many keys are held now (for metrics and leak checks in tests). */
  get size(): number {
    return this.held.size;
  }

  /** Takes `key` at once when it is free; undefined when someone holds it (the caller answers "busy"). */
  tryLock(key: K): Release | undefined {
    if (this.held.has(key)) return undefined;
    this.held.set(key, []);
    return this.releaser(key);
  }

  /**
   * Waits for `key`, then holds it. An aborted `signal` stops the wait (rejecting with the signal's reason)
   * and leaves the queue as if the caller had never come.
   */
  lock(key: K, signal?: AbortSignal): Promise<Release> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const queue = this.held.get(key);
    if (queue === undefined) {
      this.held.set(key, []);
      return Promise.resolve(this.releaser(key));
    }
    return new Promise<Release>((resolve, reject) => {
      const onAbort = (): void => {
        const at = queue.indexOf(waiter);
        if (at !== -1) queue.splice(at, 1);
        reject(abortReason(signal!));
      };
      const waiter: Waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.releaser(key));
        },
      };
      queue.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Runs `fn` holding `key`; the lock is released however `fn` ends. */
  async withLock<T>(key: K, fn: () => T | Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.lock(key, signal);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /**
   * Runs `fn` holding `key` when the key is free; resolves `{ acquired: false }` without running it when the
   * key is held (a second concurrent call for one volume is refused rather than queued).
   */
  async tryWithLock<T>(key: K, fn: () => T | Promise<T>): Promise<{ acquired: true; value: T } | { acquired: false }> {
    const release = this.tryLock(key);
    if (release === undefined) return { acquired: false };
    try {
      return { acquired: true, value: await fn() };
    } finally {
      release();
    }
  }

  private releaser(key: K): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const queue = this.held.get(key);
      const next = queue?.shift();
      if (next) next.grant();
      else this.held.delete(key);
    };
  }
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new Error('aborted');
}
