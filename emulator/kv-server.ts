// The KV data plane for sds_cli on a unix socket (docs/socket-api.md §3.2): `method=..\nvolume=..\n\n`, one
// request per connection, the reply in the form sds_cli prints.
import { Key } from '../src/protocol/catalog.js';
import { KV_METHODS, KvCode, MAX_KV_MESSAGE_BYTES, type KvMethod } from '../src/protocol/kv.js';
import { isValidName } from '../src/protocol/vbs.js';
import type { AttachService, KvReply } from './attach.js';
import type { EmulatorProtocol } from './config.js';
import type { Logger } from './log.js';
import { OneShotServer, REQUEST_ID_PATTERN } from './one-shot-server.js';
import { encodeOriginalKvReply } from './original.js';

/** Formats a KV reply as sds_cli prints it. */
export function encodeKvReply(r: KvReply): Buffer {
  const desc = r.ret_desc.replace(/[\u0000-\u001f\u007f"]/g, ' ');
  let text = `ret_code=${r.ret_code}\nret_desc="${desc}"\n`;
  if (r.dev_addr) text += `dev_addr=${r.dev_addr}\n`;
  const bytes = Buffer.from(text, 'utf8');
  return bytes.length <= MAX_KV_MESSAGE_BYTES
    ? bytes
    : Buffer.from(`ret_code=${r.ret_code}\nret_desc="reply too long"\n`);
}

/** The KV data plane for sds_cli: `method=..\nvolume=..\n\n`. */
export class KvServer extends OneShotServer {
  /** `hostId`: the host whose data plane this socket is (a data host's own socket, emulator/hosts.ts). */
  constructor(attach: AttachService, log: Logger, protocol: EmulatorProtocol = 'extended', hostId?: string) {
    const encode = (method: KvMethod | undefined, r: KvReply): Buffer =>
      protocol === 'original' ? encodeOriginalKvReply(method, r) : encodeKvReply(r);
    super({
      maxBytes: MAX_KV_MESSAGE_BYTES,
      quietMs: 0,
      log,
      tooLarge: () =>
        encode(undefined, {
          ret_code: KvCode.BAD_ARGUMENTS,
          ret_desc: `request exceeds ${MAX_KV_MESSAGE_BYTES} bytes`,
        }),
      onRequest: async (bytes) => {
        const started = Date.now();
        const parsed = parseKvRequest(bytes);
        if ('error' in parsed) return encode(undefined, { ret_code: KvCode.BAD_ARGUMENTS, ret_desc: parsed.error });
        const reqLog = log.child({ request_id: parsed.requestId, kv: parsed.method, volume: parsed.volume });
        let result: KvReply;
        try {
          result =
            parsed.method === 'attach'
              ? await attach.attach(parsed.volume, hostId)
              : parsed.method === 'detach'
                ? await attach.detach(parsed.volume, hostId)
                : await attach.querydev(parsed.volume, hostId);
        } catch (err) {
          reqLog.error({ err }, 'kv request failed');
          result = { ret_code: KvCode.DEVICE_FAILED, ret_desc: `internal error: ${(err as Error).message}` };
        }
        const entry = {
          ret_code: result.ret_code,
          dev_addr: result.dev_addr,
          ms: Date.now() - started,
          ...(result.ret_code !== 0 ? { ret_desc: result.ret_desc } : {}),
        };
        if (parsed.method === 'querydev') reqLog.debug(entry, 'kv request');
        else reqLog.info(entry, 'kv request');
        return encode(parsed.method, result);
      },
    });
  }
}

function parseKvRequest(bytes: Buffer): { method: KvMethod; volume: string; requestId?: string } | { error: string } {
  if (bytes.includes(0)) return { error: 'request holds a NUL byte' };
  const text = bytes.toString('utf8');
  const values = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '') continue;
    const m = /^([a-z_]+)=([^\u0000-\u001f\u007f]*)$/.exec(line);
    if (!m) return { error: 'request lines must be key=value' };
    if (!values.has(m[1]!)) values.set(m[1]!, m[2]!);
  }
  const method = values.get('method') ?? '';
  const volume = values.get('volume') ?? '';
  if (!(KV_METHODS as readonly string[]).includes(method))
    return { error: `method must be one of ${KV_METHODS.join(', ')}` };
  if (!isValidName(volume)) return { error: 'volume must be a volume name' };
  const rid = values.get(Key.REQUEST_ID);
  return { method: method as KvMethod, volume, requestId: rid && REQUEST_ID_PATTERN.test(rid) ? rid : undefined };
}
