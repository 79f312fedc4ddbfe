// A bare VBS socket-API request from a test, for looking at the back end's own view of things (the driver
// is never involved): the shared raw client (src/sds/raw.ts) with accessors for repeated keys and records.
import type { FieldInput } from '../../src/protocol/vbs.js';
import { rawVbsCall } from '../../src/sds/raw.js';

export interface RawReply {
  retcode: number;
  get(key: string): string | undefined;
  /** every value of a repeated key */
  all(key: string): string[];
  records(prefix: string): Record<string, string>[];
}

export async function vbsRequest(
  socketPath: string,
  type: string,
  fields: Record<string, FieldInput> = {},
  token?: string,
): Promise<RawReply> {
  const reply = await rawVbsCall(socketPath, type, fields, { token, timeoutMs: 10_000 });
  return {
    retcode: reply.retcode,
    get: (k) => reply.fields.get(k),
    all: (k) => reply.fields.getAll(k),
    records: (p) => reply.fields.records(p),
  };
}

/** The back end's record of a volume, or undefined when it does not exist. */
export async function backendVolume(
  socketPath: string,
  name: string,
  token?: string,
): Promise<Record<string, string> | undefined> {
  const reply = await vbsRequest(socketPath, 'QUERY_VOLUME_REQ', { vol_name: name }, token);
  if (reply.retcode === -900079) return undefined;
  if (reply.retcode !== 0)
    throw new Error(`QUERY_VOLUME_REQ ${name}: retcode ${reply.retcode} ${reply.get('ret_desc') ?? ''}`);
  return reply.records('volume')[0];
}

/** Every volume name on the back end. */
export async function backendVolumeNames(socketPath: string, token?: string): Promise<string[]> {
  const names: string[] = [];
  let marker = '';
  do {
    const reply = await vbsRequest(socketPath, 'LIST_VOLUMES_REQ', { marker, limit: 1000 }, token);
    if (reply.retcode !== 0)
      throw new Error(`LIST_VOLUMES_REQ: retcode ${reply.retcode} ${reply.get('ret_desc') ?? ''}`);
    names.push(...reply.records('volume').map((r) => r.vol_name!));
    marker = reply.get('next_marker') ?? '';
  } while (marker !== '');
  return names;
}
