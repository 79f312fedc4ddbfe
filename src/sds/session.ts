// The session with the VBS: its addresses and fail-over, one request's deadline, back-off and safe retries
// (the catalog's resendSafe), cancellation, the token and request id on the wire, and result codes turned into
// SdsError. Knows no request type: the per-request methods (client.ts, original.ts) are built on it.
import { kindOfRetcode, SdsError, type SdsErrorKind } from './errors.js';
import type { CallOptions, Page } from './backend.js';
import { FieldReader } from './records.js';
import { AddressError, exchange, parseAddressList, TransportError, type VbsAddress } from './transport.js';
import { isResendSafe, Key, type ProtocolLevel } from '../protocol/catalog.js';
import {
  encodeRequest,
  isValidName,
  parseReply,
  ProtocolError,
  RetCode,
  type Field,
  type VbsReply,
} from '../protocol/vbs.js';
import { CancelFanout } from '../util/abort.js';
import { observed } from '../util/observe.js';
import type { RetryPolicy, SdsLogger, SdsObserver } from './client-options.js';

export interface SessionOptions {
  addresses: string | readonly string[];
  defaultPort?: number | undefined;
  token?: string | undefined;
  connectTimeoutMs: number;
  requestTimeoutMs: number;
  retry: RetryPolicy;
  logger?: SdsLogger | undefined;
  observer?: SdsObserver | undefined;
  level: ProtocolLevel;
}

const REQUEST_ID_PATTERN = /^[\x20-\x7e]{1,128}$/;
const TOKEN_PATTERN = /^[\x21-\x7e]{1,4096}$/;

export class VbsSession {
  readonly addresses: VbsAddress[];
  private readonly token: string | undefined;
  private readonly connectTimeoutMs: number;
  readonly requestTimeoutMs: number;
  private readonly retry: RetryPolicy;
  readonly logger: SdsLogger | undefined;
  private readonly observer: SdsObserver | undefined;
  /** index of the address that last took a request: tried first next time */
  private preferred = 0;
  private readonly closing = new AbortController();
  /** links each call's own signal to the client's closing signal and the caller's signal */
  private readonly cancels = new CancelFanout();
  /** the protocol level requests are sent at (set once negotiated) */
  level: ProtocolLevel;

  constructor(options: SessionOptions) {
    try {
      this.addresses = parseAddressList(options.addresses, options.defaultPort);
    } catch (err) {
      if (err instanceof AddressError) throw new SdsError('InvalidParameter', `vbs-url: ${err.message}`);
      throw err;
    }
    if (options.token !== undefined && options.token !== '') {
      // Checked here so a bad token fails at start, with a message that does not show it.
      if (!TOKEN_PATTERN.test(options.token)) {
        throw new SdsError('InvalidParameter', 'vbs token: must be 1-4096 printable ASCII characters without spaces');
      }
      this.token = options.token;
    }
    this.connectTimeoutMs = options.connectTimeoutMs;
    this.requestTimeoutMs = options.requestTimeoutMs;
    this.retry = options.retry;
    this.logger = options.logger;
    this.observer = options.observer;
    this.level = options.level;
  }

  close(): void {
    this.closing.abort(new SdsError('Unavailable', 'the VBS client was closed'));
  }

  /** Refuses, without sending it, a request the VBS of the original level does not know. */
  extendedOnly(type: string): void {
    if (this.level === 'original')
      throw this.error('NotSupported', `${type}: not offered by a VBS of the original protocol level`);
  }

  // ---- the request loop ----

  /**
   * Sends one request and returns its reply, whatever its retcode except BUSY/UNAVAILABLE (retried, then
   * thrown). Fail-over, deadline, cancellation and safe retries happen here; callers interpret retcodes.
   */
  async request(
    type: string,
    fields: readonly Field[],
    opts: CallOptions = {},
    timeoutMs: number = this.requestTimeoutMs,
  ): Promise<VbsReply> {
    if (this.closing.signal.aborted) throw this.error('Unavailable', `${type}: the VBS client is closed`);
    const bytes = this.encode(type, fields, opts.requestId);
    return observed(
      this.observer,
      type,
      () => this.withCall(opts, (signal) => this.requestLoop(type, bytes, opts, timeoutMs, signal)),
      (reply) => (reply.retcode === RetCode.OK ? 'ok' : kindOfRetcode(reply.retcode)),
      (err) => (err instanceof SdsError ? err.kind : 'Internal'),
    );
  }

  private async requestLoop(
    type: string,
    bytes: Buffer,
    opts: CallOptions,
    timeoutMs: number,
    signal: AbortSignal,
  ): Promise<VbsReply> {
    const deadline = Date.now() + timeoutMs;
    const retryAfterSend = isResendSafe(type);
    let lostReplies = 0;
    let busyReplies = 0;
    let overloads = 0;
    let lastBusyReply: VbsReply | undefined;
    for (;;) {
      let raw: Buffer;
      try {
        raw = await this.sendToFirstReachable(bytes, deadline, signal);
      } catch (err) {
        if (!(err instanceof TransportError)) throw err;
        if (err.failure === 'overloaded') {
          // Its accept queue is full (a burst of calls): it is alive and nothing was sent, so any request type
          // may be tried again, backing off, until the deadline — rather than answer "unreachable".
          this.logger?.debug(
            { request: type, requestId: opts.requestId, attempt: overloads + 1 },
            'VBS accept queue full; retrying',
          );
          await this.backoff(Math.min(overloads++, 6), deadline, signal, type, () =>
            this.error(
              'Unavailable',
              `${type}: the VBS was too busy to accept a connection until the deadline (${err.message})`,
              undefined,
              err,
            ),
          );
          continue;
        }
        // A VBS that just said BUSY and now cannot be reached before the deadline is still best described as busy.
        if (!err.sent && err.failure !== 'aborted' && lastBusyReply !== undefined)
          throw this.replyError(type, lastBusyReply);
        if (err.failure === 'aborted') {
          throw this.error(
            'Timeout',
            `${type}: cancelled ${err.sent ? 'after the request was sent (outcome unknown)' : 'before the request was sent'}`,
            undefined,
            err,
          );
        }
        // A retry after BUSY cut by the deadline: for a request that is safe to send again, the VBS's last word
        // (busy, retry) says more than "timeout", and the CO's retry is safe either way.
        if (err.failure === 'timeout' && retryAfterSend && lastBusyReply !== undefined)
          throw this.replyError(type, lastBusyReply);
        if (err.failure === 'timeout')
          throw this.error(
            'Timeout',
            `${type}: ${err.message} within ${timeoutMs} ms; the outcome is unknown`,
            undefined,
            err,
          );
        if (err.failure === 'oversize') throw this.error('Protocol', `${type}: ${err.message}`, undefined, err);
        if (err.failure === 'no-reply') {
          if (retryAfterSend && lostReplies < this.retry.attempts) {
            this.logger?.warn(
              { request: type, requestId: opts.requestId, attempt: lostReplies + 1, error: this.redact(err.message) },
              'VBS reply lost; sending the request again',
            );
            await this.backoff(lostReplies++, deadline, signal, type, () =>
              this.error('Unavailable', `${type}: ${err.message}; no time left to retry`, undefined, err),
            );
            continue;
          }
          throw this.error('Unavailable', `${type}: ${err.message}; the outcome is unknown`, undefined, err);
        }
        throw this.error('Unavailable', `${type}: no VBS could be reached (${err.message})`, undefined, err);
      }
      let reply: VbsReply;
      try {
        reply = parseReply(raw);
      } catch (err) {
        if (err instanceof ProtocolError)
          throw this.error('Protocol', `${type}: unreadable reply: ${err.message}`, undefined, err);
        throw err;
      }
      this.logger?.debug({ request: type, requestId: opts.requestId, retcode: reply.retcode }, 'VBS reply');
      if (reply.retcode === RetCode.BUSY || reply.retcode === RetCode.UNAVAILABLE) {
        lastBusyReply = reply;
        if (busyReplies < this.retry.attempts) {
          this.logger?.debug(
            { request: type, requestId: opts.requestId, retcode: reply.retcode, attempt: busyReplies + 1 },
            'VBS busy; retrying',
          );
          await this.backoff(busyReplies++, deadline, signal, type, () => this.replyError(type, reply));
          continue;
        }
        throw this.replyError(type, reply);
      }
      return reply;
    }
  }

  /** Tries the addresses, the last good one first, until one takes the request. */
  private async sendToFirstReachable(bytes: Buffer, deadline: number, signal: AbortSignal): Promise<Buffer> {
    const order = [this.preferred, ...this.addresses.keys()].filter((v, i, all) => all.indexOf(v) === i);
    const failures: string[] = [];
    let overloaded = false;
    for (const index of order) {
      if (Date.now() >= deadline) {
        failures.push('deadline passed');
        break;
      }
      try {
        return await exchange(this.addresses[index]!, bytes, {
          connectTimeoutMs: this.connectTimeoutMs,
          deadline,
          signal,
          onSent: () => {
            this.preferred = index;
          },
        });
      } catch (err) {
        if (err instanceof TransportError && !err.sent && err.failure !== 'aborted') {
          this.logger?.debug(
            { address: this.addresses[index]!.text, error: err.message },
            'VBS address failed; trying the next',
          );
          failures.push(err.message);
          if (err.failure === 'overloaded') overloaded = true;
          continue;
        }
        throw err;
      }
    }
    // One VBS alive but too busy to accept is worth another try; all of them down is not.
    throw new TransportError(overloaded ? 'overloaded' : 'connect-failed', false, failures.join('; '));
  }

  private async backoff(
    attempt: number,
    deadline: number,
    signal: AbortSignal,
    type: string,
    giveUp: () => SdsError,
  ): Promise<void> {
    const exp = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** attempt);
    const delay = Math.round(exp / 2 + (Math.random() * exp) / 2); // jitter: callers retrying together spread out
    if (Date.now() + delay >= deadline) throw giveUp();
    await this.sleep(delay, signal, `${type} retry`);
  }

  sleep(ms: number, signal: AbortSignal, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        reject(this.error('Timeout', `cancelled while ${what}`));
        return;
      }
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(this.error('Timeout', `cancelled while ${what}`));
      };
      const timer = setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Runs `fn` with a signal of its own that fires when the caller's signal does or the client closes.
   * What listens to it (the exchange, a backoff sleep) listens to this call only; its links to the shared
   * signals are dropped when the call ends, however it ends.
   */
  async withCall<T>(opts: CallOptions | undefined, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const call = new AbortController();
    const unlinks = [this.cancels.link(this.closing.signal, call)];
    if (opts?.signal) unlinks.push(this.cancels.link(opts.signal, call));
    try {
      return await fn(call.signal);
    } finally {
      for (const unlink of unlinks) unlink();
    }
  }

  private encode(type: string, fields: readonly Field[], requestId: string | undefined): Buffer {
    const head: Field[] = [];
    // A VBS of the original level knows neither key.
    if (this.level === 'original') return this.encodeFields(type, fields);
    // The token goes first: the VBS checks it before reading anything else.
    if (this.token !== undefined) head.push([Key.AUTH_TOKEN, this.token]);
    if (requestId !== undefined) {
      if (!REQUEST_ID_PATTERN.test(requestId))
        throw this.error('InvalidParameter', 'request_id: must be 1-128 printable ASCII characters');
      head.push([Key.REQUEST_ID, requestId]);
    }
    return this.encodeFields(type, [...head, ...fields]);
  }

  private encodeFields(type: string, fields: readonly Field[]): Buffer {
    try {
      return encodeRequest(type, fields);
    } catch (err) {
      if (err instanceof ProtocolError) throw this.error('InvalidParameter', `${type}: ${err.message}`);
      throw err;
    }
  }

  // ---- replies and errors ----

  replyError(type: string, reply: VbsReply): SdsError {
    const e = SdsError.fromRetcode(type, reply.retcode, reply.fields.get(Key.RET_DESC));
    return new SdsError(e.kind, this.redact(e.message), e.retcode);
  }

  error(kind: SdsErrorKind, message: string, retcode?: number, cause?: unknown): SdsError {
    return new SdsError(kind, this.redact(message), retcode, cause === undefined ? undefined : { cause });
  }

  /** Whatever a message quotes (a ret_desc, a garbled line), the token never appears in it. */
  redact(message: string): string {
    return this.token === undefined ? message : message.split(this.token).join('<token>');
  }

  /** Runs a record parser, turning codec errors into 'Protocol' errors. */
  parsing<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      if (err instanceof ProtocolError) throw this.error('Protocol', `garbled reply from the VBS: ${err.message}`);
      if (err instanceof SdsError) throw new SdsError(err.kind, this.redact(err.message), err.retcode);
      throw err;
    }
  }

  firstRecord<T>(reply: VbsReply, prefix: string, parse: (record: Record<string, string>) => T): T | undefined {
    return this.parsing(() => {
      const records = reply.fields.records(prefix);
      return records.length === 0 ? undefined : parse(records[0]!);
    });
  }

  /** Records announced by a count key (`vol_num`): a reply cut short shows as a mismatch. */
  counted<T>(reply: VbsReply, countKey: string, prefix: string, parse: (record: Record<string, string>) => T): T[] {
    return this.parsing(() => {
      const records = reply.fields.records(prefix);
      const count = FieldReader.ofReply('reply', reply.fields).int(countKey, { fallback: records.length, min: 0 });
      if (count !== records.length) {
        throw new SdsError(
          'Protocol',
          `garbled reply from the VBS: ${countKey}=${count} but ${records.length} ${prefix} records`,
        );
      }
      return records.map(parse);
    });
  }

  page<T>(reply: VbsReply, countKey: string, prefix: string, parse: (record: Record<string, string>) => T): Page<T> {
    const items = this.counted(reply, countKey, prefix, parse);
    const nextMarker = reply.fields.get(Key.NEXT_MARKER) ?? '';
    if (nextMarker !== '' && !isValidName(nextMarker))
      throw this.error('Protocol', `garbled reply from the VBS: next_marker: not a name`);
    return { items, nextMarker };
  }
}
