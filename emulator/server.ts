// The VBS socket API on TCP and a unix socket (docs/socket-api.md §1.1, framing exactly as there): one
// request per connection, checked against the token and the catalog, answered and closed. The KV data plane
// is emulator/kv-server.ts.
import { createHash, timingSafeEqual } from 'node:crypto';
import { isKnownAt, isMutating, Key, ORIGINAL_GENERIC_FAILURE } from '../src/protocol/catalog.js';
import {
  encodeReply,
  MAX_REQUEST_BYTES,
  parseRequest,
  ProtocolError,
  RetCode,
  type Field,
} from '../src/protocol/vbs.js';
import type { EmulatorProtocol } from './config.js';
import { VbsError } from './errors.js';
import type { Handler, Reply } from './handlers.js';
import type { Logger } from './log.js';
import { handleOriginalRequest } from './original.js';
import { Params } from './params.js';

import { OneShotServer, REQUEST_ID_PATTERN } from './one-shot-server.js';

/** The form a token is kept and compared in: its SHA-256, so every comparison is of 32 bytes. */
export const tokenDigest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/**
 * Whether a request's `auth_token` is the configured one, in constant time: the digests always have the same
 * length, and timingSafeEqual's time does not depend on where they differ, so neither the length nor a
 * prefix of the token can be learnt by timing.
 */
export function tokenMatches(given: string | undefined, expected: Buffer): boolean {
  return given !== undefined && timingSafeEqual(tokenDigest(given), expected);
}

export interface ControlServerOptions {
  handlers: Map<string, Handler>;
  /** `original`: the 2014 product's form (emulator/original.ts); no token, no request id, no ret_desc */
  protocol: EmulatorProtocol;
  token: string | undefined;
  quietMs: number;
  log: Logger;
  /** true once shutdown began: requests that arrive late are answered UNAVAILABLE */
  stopping: () => boolean;
}

/** The VBS socket API. */
export class ControlServer extends OneShotServer {
  private counter = 0;

  constructor(private readonly options: ControlServerOptions) {
    const expected = options.token !== undefined ? tokenDigest(options.token) : undefined;
    const original = options.protocol === 'original';
    super({
      maxBytes: MAX_REQUEST_BYTES,
      quietMs: options.quietMs,
      log: options.log,
      tooLarge: () =>
        original
          ? encodeReply(ORIGINAL_GENERIC_FAILURE)
          : encodeReply(RetCode.TOO_LARGE, { [Key.RET_DESC]: `request exceeds ${MAX_REQUEST_BYTES} bytes` }),
      onRequest: (bytes) =>
        original
          ? handleOriginalRequest(
              bytes,
              { handlers: options.handlers, log: options.log, stopping: options.stopping },
              ++this.counter,
            )
          : this.handle(bytes, expected),
    });
  }

  private async handle(bytes: Buffer, expectedToken: Buffer | undefined): Promise<Buffer> {
    const started = process.hrtime.bigint();
    const { log: baseLog, handlers } = this.options;
    let type = '';
    let requestId: string | undefined;
    let reply: Reply;
    let bindings: { request_id?: string; req?: string } = {};
    // A child logger costs a serialisation: made only when a handler logs.
    let child: Logger | undefined;
    const log = (): Logger => (child ??= baseLog.child(bindings));
    try {
      const req = parseRequest(bytes);
      type = req.type;
      const rid = req.fields.get(Key.REQUEST_ID);
      if (rid !== undefined && REQUEST_ID_PATTERN.test(rid)) requestId = rid;
      bindings = { request_id: requestId ?? `emu-${++this.counter}`, req: type };
      // The token is checked before any other key is looked at.
      if (expectedToken) {
        const given = req.fields.get(Key.AUTH_TOKEN);
        if (!tokenMatches(given, expectedToken)) {
          throw new VbsError(RetCode.AUTH_FAILED, `${Key.AUTH_TOKEN}: ${given === undefined ? 'missing' : 'wrong'}`);
        }
      }
      if (rid !== undefined && requestId === undefined) {
        throw new VbsError(RetCode.INVALID_PARAMETER, `${Key.REQUEST_ID}: must be 1-128 printable characters`);
      }
      const handler = isKnownAt(type, 'extended') ? handlers.get(type) : undefined;
      if (!handler) throw new VbsError(RetCode.UNKNOWN_REQUEST, `unknown request type ${type}`);
      if (this.options.stopping()) throw new VbsError(RetCode.UNAVAILABLE, 'the VBS is shutting down; retry');
      reply = await handler({
        params: new Params(req.fields),
        get log() {
          return log();
        },
      });
    } catch (err) {
      if (err instanceof VbsError)
        reply = { retcode: err.retcode, fields: [[Key.RET_DESC, err.message], ...err.fields] };
      else if (err instanceof ProtocolError) reply = { retcode: err.retcode, fields: [[Key.RET_DESC, err.message]] };
      else {
        log().error({ err }, 'internal error');
        reply = { retcode: RetCode.INTERNAL, fields: [[Key.RET_DESC, `internal error: ${(err as Error).message}`]] };
      }
    }
    const fields: Field[] = [...reply.fields];
    if (requestId !== undefined) fields.push([Key.REQUEST_ID, requestId]);
    // The log entry is built only when it will be written (the bench and many deployments log at warn).
    const level =
      reply.retcode === RetCode.INTERNAL
        ? 'error'
        : isMutating(type)
          ? 'info'
          : ('debug' as 'error' | 'info' | 'debug');
    if (baseLog.isLevelEnabled(level)) {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const entry = {
        ...bindings,
        retcode: reply.retcode,
        ms: Math.round(ms * 1000) / 1000,
        ...(reply.retcode !== 0 ? { ret_desc: reply.fields[0]?.[1] } : {}),
      };
      baseLog[level](entry, level === 'error' ? 'request failed' : 'request');
    }
    return encodeReply(reply.retcode, fields);
  }
}
