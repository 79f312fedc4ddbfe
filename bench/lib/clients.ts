// The benchmark's CSI client: the shared one (src/util/csi-client.ts) with the bench's longer deadline. Raw
// socket-API requests go through src/sds/raw.ts.
import { connectCsi as connectShared, type ConnectOptions, type CsiClients } from '../../src/util/csi-client.js';

export type Csi = CsiClients;

/** CSI clients whose calls wait up to 120 s by default (a format or a big clone is slow on a busy host). */
export function connectCsi(socket: string, options: ConnectOptions = {}): Csi {
  return connectShared(socket, { timeoutMs: 120_000, ...options });
}
