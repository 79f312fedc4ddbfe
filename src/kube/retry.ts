// Bounded retries for API-server calls: every call has one overall deadline covering all attempts and the
// waits between them, so a CSI RPC that asks Kubernetes something can never hang on it.
// Retried: 429, 5xx and network errors, with exponential backoff (and Retry-After when the server sends one).
// Not retried: other 4xx, which another attempt would only repeat.
import type { Logger } from 'pino';
import { KubeError } from './errors.js';
import { raceAbort } from '../util/abort.js';

export interface RetryPolicy {
  /** overall time for all attempts of one call, in ms */
  deadlineMs: number;
  /** wait before the second attempt; doubles each time up to maxBackoffMs */
  initialBackoffMs: number;
  maxBackoffMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { deadlineMs: 5_000, initialBackoffMs: 100, maxBackoffMs: 1_000 };

/** What one failed attempt tells us. */
export interface AttemptFailure {
  retryable: boolean;
  /** the error to throw when this is the last failure */
  error: KubeError;
  /** the server asked us to wait this long (Retry-After) */
  retryAfterMs?: number;
}

export interface RetryContext {
  /** "GET node worker-1", for messages and logs */
  operation: string;
  logger: Logger;
  policy: RetryPolicy;
  /** the caller's cancellation, e.g. the CSI call's */
  signal?: AbortSignal;
  classify(err: unknown): AttemptFailure;
}

/** Runs attempt(signal) until it succeeds, fails for good, or the deadline passes. */
export async function withRetries<T>(context: RetryContext, attempt: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const { operation, logger, policy } = context;
  const started = Date.now();
  const deadline = started + policy.deadlineMs;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort('deadline'), policy.deadlineMs);
  const onCallerAbort = () => abort.abort('cancelled');
  if (context.signal?.aborted) onCallerAbort();
  context.signal?.addEventListener('abort', onCallerAbort, { once: true });

  let attempts = 0;
  let last: AttemptFailure | undefined;
  const stopped = (): KubeError => {
    const after = `after ${attempts} attempt${attempts === 1 ? '' : 's'} in ${Date.now() - started} ms`;
    const lastWords = last ? `; last error: ${last.error.message}` : '';
    if (abort.signal.reason === 'cancelled') {
      return new KubeError('Cancelled', `${operation}: cancelled ${after}${lastWords}`, last?.error.httpStatus, {
        cause: last?.error,
      });
    }
    // The kind says what the server did, not where the deadline happened to fall: one that kept answering
    // with retryable errors is Unavailable even when the deadline cut the attempt after them short (on a
    // loaded machine it often does); Timeout is for a server that never answered in time.
    if (last?.retryable) {
      return new KubeError(
        'Unavailable',
        `${operation}: failed ${after}, the last attempt cut by the ${policy.deadlineMs} ms deadline: ${last.error.message}`,
        last.error.httpStatus,
        { cause: last.error },
      );
    }
    return new KubeError(
      'Timeout',
      `${operation}: no answer within ${policy.deadlineMs} ms (${after})${lastWords}`,
      last?.error.httpStatus,
      {
        cause: last?.error,
      },
    );
  };

  try {
    for (;;) {
      if (abort.signal.aborted) throw stopped();
      attempts += 1;
      try {
        // Raced against the abort too, in case a library layer does not honour the signal.
        return await raceAbort(attempt(abort.signal), abort.signal, () => new Error('aborted'));
      } catch (err) {
        if (abort.signal.aborted) throw stopped();
        last = context.classify(err);
        if (!last.retryable) throw last.error;
        const backoff = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** (attempts - 1));
        // Equal jitter: replicas that failed together do not retry together.
        const jittered = backoff / 2 + Math.random() * (backoff / 2);
        const wait = Math.max(jittered, last.retryAfterMs ?? 0);
        if (Date.now() + wait >= deadline) {
          throw new KubeError(
            'Unavailable',
            `${operation}: failed after ${attempts} attempt${attempts === 1 ? '' : 's'}, no time left for another: ${last.error.message}`,
            last.error.httpStatus,
            { cause: last.error },
          );
        }
        logger.warn(
          { operation, attempt: attempts, retryInMs: Math.round(wait), err: last.error.message },
          'Kubernetes API call failed, retrying',
        );
        await sleep(wait, abort.signal).catch(() => undefined);
      }
    }
  } finally {
    clearTimeout(timer);
    context.signal?.removeEventListener('abort', onCallerAbort);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(new Error('aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
