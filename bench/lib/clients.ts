// The benchmark's CSI client: the shared one (src/util/csi-client.ts) with the bench's longer deadline. Raw
// socket-API requests go through src/sds/raw.ts.
import { Key } from '../../src/protocol/catalog.js';
import { RetCode } from '../../src/protocol/vbs.js';
import { rawVbsCall } from '../../src/sds/raw.js';
import { connectCsi as connectShared, type ConnectOptions, type CsiClients } from '../../src/util/csi-client.js';

export type Csi = CsiClients;

/** CSI clients whose calls wait up to 120 s by default (a format or a big clone is slow on a busy host). */
export function connectCsi(socket: string, options: ConnectOptions = {}): Csi {
  return connectShared(socket, { timeoutMs: 120_000, ...options });
}

/** CREATE_VOLUME_REQ of a thin volume straight to the back end's socket; throws on a non-zero retcode. */
export async function createThinVolume(socket: string, name: string, sizeMb: number): Promise<void> {
  const r = await rawVbsCall(socket, 'CREATE_VOLUME_REQ', {
    vol_name: name,
    vol_size: sizeMb,
    pool_id: 'pool0',
    thin_flag: 1,
  });
  if (r.retcode !== 0) throw new Error(`CREATE_VOLUME_REQ ${name}: retcode ${r.retcode}`);
}

/**
 * DELETE_VOLUME_REQ, then QUERY_VOLUME_REQ every millisecond until the volume is gone, as the driver's delete
 * waits; returns how many queries that took.
 */
export async function deleteVolumeUntilGone(socket: string, name: string): Promise<number> {
  const r = await rawVbsCall(socket, 'DELETE_VOLUME_REQ', { vol_name: name });
  if (r.retcode !== 0) throw new Error(`DELETE_VOLUME_REQ ${name}: retcode ${r.retcode}`);
  let queries = 1;
  while ((await rawVbsCall(socket, 'QUERY_VOLUME_REQ', { vol_name: name })).retcode !== RetCode.NOT_EXIST) {
    queries++;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return queries;
}

/** One LIST_VOLUMES_REQ page straight to the back end: how many records it held and where the next starts. */
export async function listVolumesPage(
  socket: string,
  marker: string,
  limit: number,
): Promise<{ count: number; nextMarker: string }> {
  const r = await rawVbsCall(socket, 'LIST_VOLUMES_REQ', { marker, limit });
  if (r.retcode !== 0) throw new Error(`LIST_VOLUMES_REQ after ${marker}: retcode ${r.retcode}`);
  return { count: Number(r.fields.get(Key.VOL_NUM) ?? 0), nextMarker: r.fields.get(Key.NEXT_MARKER) ?? '' };
}
