// The SDS client's options and their defaults (with the logger, metrics observer and retry policy its session
// uses), and which requests it sends again after a lost reply.
import { isResendSafe, type ProtocolLevel } from '../protocol/catalog.js';
import type { SdsErrorKind } from './errors.js';

/**
 * Told of every request when it ends, for metrics: its type (`CREATE_VOLUME_REQ`), its result (`ok`, or the
 * SdsErrorKind of its retcode or failure: `NotFound`, `Unavailable`, `Timeout`...) and how long it took,
 * retries included. Called on the request path: keep it cheap, and it must not throw.
 */
export type SdsObserver = (requestType: string, result: 'ok' | SdsErrorKind, seconds: number) => void;

/** What the client logs; pino's logger fits. The token never reaches it. */
export interface SdsLogger {
  debug(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
}

export interface RetryPolicy {
  /** retries after a lost reply (safe request types only), and separately after BUSY/UNAVAILABLE replies */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface SdsClientOptions {
  /** `tcp://host:port`, `host:port`, `host`, `unix:///path`; a comma-separated string or a list */
  addresses: string | readonly string[];
  defaultPort?: number;
  /** the shared secret (`auth_token`); never logged, never in an error message */
  token?: string;
  connectTimeoutMs?: number;
  /** bound of one call (fail-over and retries included) */
  requestTimeoutMs?: number;
  /** bound of calls that copy data on the VBS: full clones, image import and export */
  longRequestTimeoutMs?: number;
  /** how long a delete may take to complete after the VBS accepted it */
  deleteTimeoutMs?: number;
  retry?: Partial<RetryPolicy>;
  deletePoll?: { initialDelayMs?: number; maxDelayMs?: number };
  logger?: SdsLogger;
  observer?: SdsObserver;
  /** the protocol level the VBS speaks (default extended; settable once negotiated, see setLevel) */
  level?: ProtocolLevel;
  /** pool ids the pool queries name when the caller names none (--vbs-pools); empty: all pools (extended only) */
  pools?: readonly string[];
}

export const CLIENT_DEFAULTS = {
  connectTimeoutMs: 3_000,
  requestTimeoutMs: 30_000,
  longRequestTimeoutMs: 30 * 60_000,
  deleteTimeoutMs: 60_000,
  retry: { attempts: 5, baseDelayMs: 50, maxDelayMs: 2_000 } satisfies RetryPolicy,
  deletePoll: { initialDelayMs: 2, maxDelayMs: 200 },
} as const;

/**
 * Which requests are sent again after the request went out but no reply came back: the catalog's
 * `resendSafe` (src/protocol/catalog.ts says why for each type). A request that never left (refused,
 * unreachable, connect timeout) is tried on the next address whatever its type; one that never left because
 * the VBS's accept queue was full (EAGAIN) is tried again after a back-off until the deadline; and BUSY
 * (-900013) / UNAVAILABLE (-900031) replies are retried for every type: the VBS did nothing for them.
 */
export function isRetriedAfterSend(requestType: string): boolean {
  return isResendSafe(requestType);
}
