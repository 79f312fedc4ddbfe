// One bare socket-API request: the shared codec over the client's one-request exchange, no retries and no
// interpretation. For the tests, the bench and operators' scripts that want the back end's own answer;
// the driver itself goes through SdsClient.
import { encodeRequest, parseReply, type FieldInput, type VbsReply } from '../protocol/vbs.js';
import { exchange, type VbsAddress } from './transport.js';

export interface RawCallOptions {
  /** sent as auth_token when given */
  token?: string;
  /** for the whole request; default 120 s (a big clone or image job can be slow to answer) */
  timeoutMs?: number;
}

/** A unix socket path, a TCP port on 127.0.0.1, or a parsed address. */
export type RawTarget = string | { port: number } | VbsAddress;

function toAddress(target: RawTarget): VbsAddress {
  if (typeof target === 'string') return { kind: 'unix', path: target, text: `unix://${target}` };
  if ('kind' in target) return target;
  return { kind: 'tcp', host: '127.0.0.1', port: target.port, text: `127.0.0.1:${target.port}` };
}

export interface RawReply extends VbsReply {
  /** the reply's bytes as received */
  raw: Buffer;
}

/** Sends `type` with `fields` on its own connection and returns the parsed reply. */
export async function rawVbsCall(
  target: RawTarget,
  type: string,
  fields: Record<string, FieldInput> = {},
  options: RawCallOptions = {},
): Promise<RawReply> {
  const bytes = encodeRequest(type, { ...fields, ...(options.token ? { auth_token: options.token } : {}) });
  const timeoutMs = options.timeoutMs ?? 120_000;
  const raw = await exchange(toAddress(target), bytes, {
    connectTimeoutMs: Math.min(timeoutMs, 10_000),
    deadline: Date.now() + timeoutMs,
  });
  return { ...parseReply(raw), raw };
}
