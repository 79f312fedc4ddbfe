// Which protocol level the VBS speaks, decided once before the CSI socket opens (the sidecars read the
// capabilities once). QUERY_CAPABILITY_REQ answered → extended, with the capabilities it lists; a non-zero
// retcode, an unknown-request answer or a connection closed without a reply → original (the 2014 product
// knew no such request). A VBS that cannot be reached decides nothing: it is asked again for a few seconds,
// and then the extended level is assumed (the driver serves, Probe says not ready until the VBS answers); a
// deployment in front of the product sets --vbs-protocol=original and never depends on this guess.
import type { CallOptions, SystemInfo } from './backend.js';
import { isSdsError } from './errors.js';
import type { ProtocolLevel } from '../protocol/catalog.js';

export type ProtocolChoice = ProtocolLevel | 'auto';

export interface NegotiatedLevel {
  level: ProtocolLevel;
  /** how it was decided, for the log */
  how: 'forced' | 'answered' | 'refused' | 'assumed';
  /** the extended VBS's answer; absent on the original level (or when forced extended and unreachable) */
  system?: SystemInfo;
}

export interface LevelProbe {
  systemInfo(opts?: CallOptions): Promise<SystemInfo>;
}

export interface NegotiateOptions {
  /** stops the waiting for an unreachable VBS (the driver is asked to stop) */
  signal?: AbortSignal;
  /** told of each attempt that reached no VBS */
  onUnreachable?: (attempt: number, message: string) => void;
  /** pause between attempts at an unreachable VBS; default 250 ms, doubling */
  retryDelayMs?: number;
  /** how long an unreachable VBS is asked again before the extended level is assumed; default 3 s */
  unreachableWaitMs?: number;
}

/** How long the capability query may go unanswered before the silence counts as the original level's answer. */
export const LEVEL_QUERY_TIMEOUT_MS = 5_000;

/** The answer that tells the level, or undefined when the VBS could not be reached (ask again). */
export async function askLevel(
  vbs: LevelProbe,
  opts: CallOptions = {},
  timeoutMs = LEVEL_QUERY_TIMEOUT_MS,
): Promise<NegotiatedLevel | undefined> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  try {
    return { level: 'extended', how: 'answered', system: await vbs.systemInfo({ ...opts, signal }) };
  } catch (err) {
    if (!isSdsError(err)) throw err;
    if (opts.signal?.aborted) throw err;
    // A connection that failed before the request left says nothing about the level; one closed after it
    // left, without a reply, is how a VBS that does not know the request may answer. The client words the two
    // apart ("no VBS could be reached" vs "the outcome is unknown").
    if (err.kind === 'Unavailable' && /no VBS could be reached|too busy to accept/.test(err.message)) return undefined;
    if (err.kind === 'Timeout' && /before the request was sent/.test(err.message)) return undefined;
    // Only the extended level has a token: refusing ours (or its absence) is an extended answer. The driver
    // then starts, and Probe says not ready until the token is right.
    if (err.kind === 'AuthFailed') return { level: 'extended', how: 'answered' };
    // Any other answer but success (retcode=1, UNKNOWN_REQUEST, a connection closed without a reply, a
    // request taken and never answered — the least helpful reading of a product that does not know it): the
    // original level.
    return { level: 'original', how: 'refused' };
  }
}

/** Decides the level: forced, or asked of the VBS until it answers. */
export async function negotiateLevel(
  vbs: LevelProbe,
  choice: ProtocolChoice,
  options: NegotiateOptions = {},
): Promise<NegotiatedLevel> {
  if (choice === 'original') return { level: 'original', how: 'forced' };
  if (choice === 'extended') {
    // Forced: the capabilities are still worth having, but an unreachable VBS must not stop the start.
    const answer = await askLevel(vbs, options.signal ? { signal: options.signal } : {}).catch(() => undefined);
    return answer?.system
      ? { level: 'extended', how: 'forced', system: answer.system }
      : { level: 'extended', how: 'forced' };
  }
  let delay = options.retryDelayMs ?? 250;
  const giveUpAt = Date.now() + (options.unreachableWaitMs ?? 3_000);
  for (let attempt = 1; ; attempt++) {
    const answer = await askLevel(vbs, options.signal ? { signal: options.signal } : {});
    if (answer) return answer;
    options.onUnreachable?.(attempt, 'the VBS could not be reached to learn its protocol level');
    if (Date.now() + delay > giveUpAt) return { level: 'extended', how: 'assumed' };
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, delay);
      options.signal?.addEventListener(
        'abort',
        () => {
          clearTimeout(timer);
          reject(
            options.signal!.reason instanceof Error
              ? options.signal!.reason
              : new Error('stopped while negotiating the protocol level'),
          );
        },
        { once: true },
      );
    });
    delay = Math.min(delay * 2, 10_000);
  }
}
