// Signals shared by many calls: waiting for shared work without letting it outlive the caller (the work
// goes on, only this caller stops waiting), and one shared signal fanned out to the calls in flight.

/** Resolves or rejects with `work`, or rejects with `reason()` once `signal` fires — whichever comes first. */
export function raceAbort<T>(work: Promise<T>, signal: AbortSignal, reason: () => Error): Promise<T> {
  if (signal.aborted) return Promise.reject(reason());
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(reason());
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/**
 * Fans a shared signal (the client's closing signal, a caller's signal passed to many calls) out to the
 * calls in flight with ONE abort listener per shared signal, removed as soon as the last linked call ends.
 * A listener per call would pile up on a shared signal with concurrency (Node warns past 10) and stay
 * there as long as the signal lives if a call forgot to remove it.
 */
export class CancelFanout {
  private readonly linked = new Map<AbortSignal, { calls: Set<AbortController>; onAbort: () => void }>();

  /** Aborts `call` when `shared` fires, until the returned unlink is called. */
  link(shared: AbortSignal, call: AbortController): () => void {
    if (shared.aborted) {
      call.abort(shared.reason);
      return () => {};
    }
    let entry = this.linked.get(shared);
    if (entry === undefined) {
      const calls = new Set<AbortController>();
      const onAbort = (): void => {
        this.linked.delete(shared);
        for (const c of calls) c.abort(shared.reason);
      };
      entry = { calls, onAbort };
      this.linked.set(shared, entry);
      shared.addEventListener('abort', onAbort, { once: true });
    }
    const mine = entry;
    mine.calls.add(call);
    return () => {
      mine.calls.delete(call);
      if (mine.calls.size === 0 && this.linked.get(shared) === mine) {
        this.linked.delete(shared);
        shared.removeEventListener('abort', mine.onAbort);
      }
    };
  }
}
