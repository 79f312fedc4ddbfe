// A bare VBS socket-API request from a test, for looking at the back end's own view of things (the driver
// is never involved): one request per connection, the reply read to EOF. Uses the shared pure codec.
import { connect } from 'node:net';
import { encodeRequest, parseReply, type FieldInput } from '../../src/protocol/vbs.js';

export interface RawReply {
  retcode: number;
  get(key: string): string | undefined;
  records(prefix: string): Record<string, string>[];
}

export function vbsRequest(socketPath: string, type: string, fields: Record<string, FieldInput> = {}, token?: string): Promise<RawReply> {
  const bytes = encodeRequest(type, { ...fields, ...(token ? { auth_token: token } : {}) });
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const chunks: Buffer[] = [];
    socket.setTimeout(10_000, () => socket.destroy(new Error(`${type}: no reply within 10 s`)));
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', reject);
    socket.on('end', () => {
      try {
        const reply = parseReply(Buffer.concat(chunks));
        resolve({ retcode: reply.retcode, get: (k) => reply.fields.get(k), records: (p) => reply.fields.records(p) });
      } catch (err) {
        reject(err);
      }
    });
  });
}

/** The back end's record of a volume, or undefined when it does not exist. */
export async function backendVolume(socketPath: string, name: string, token?: string): Promise<Record<string, string> | undefined> {
  const reply = await vbsRequest(socketPath, 'QUERY_VOLUME_REQ', { vol_name: name }, token);
  if (reply.retcode === -900079) return undefined;
  if (reply.retcode !== 0) throw new Error(`QUERY_VOLUME_REQ ${name}: retcode ${reply.retcode} ${reply.get('ret_desc') ?? ''}`);
  return reply.records('volume')[0];
}

/** Every volume name on the back end. */
export async function backendVolumeNames(socketPath: string, token?: string): Promise<string[]> {
  const names: string[] = [];
  let marker = '';
  do {
    const reply = await vbsRequest(socketPath, 'LIST_VOLUMES_REQ', { marker, limit: 1000 }, token);
    if (reply.retcode !== 0) throw new Error(`LIST_VOLUMES_REQ: retcode ${reply.retcode} ${reply.get('ret_desc') ?? ''}`);
    names.push(...reply.records('volume').map((r) => r.vol_name!));
    marker = reply.get('next_marker') ?? '';
  } while (marker !== '');
  return names;
}
