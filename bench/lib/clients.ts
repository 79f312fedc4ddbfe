// The benchmark's clients: the shared CSI client (src/util/csi-client.ts) with the bench's longer deadline,
// and a minimal client of the VBS socket API (one connection per request, as the protocol wants).
import { connect } from 'node:net';
import { encodeRequest, parseReply, type FieldInput, type VbsReply } from '../../src/protocol/vbs.js';
import { connectCsi as connectShared, type ConnectOptions, type CsiClients } from '../../src/util/csi-client.js';

export type Csi = CsiClients;

/** CSI clients whose calls wait up to 120 s by default (a format or a big clone is slow on a busy host). */
export function connectCsi(socket: string, options: ConnectOptions = {}): Csi {
  return connectShared(socket, { timeoutMs: 120_000, ...options });
}

/** One socket-API request on its own connection; resolves with the parsed reply. */
export function vbsCall(socket: string, type: string, fields: Record<string, FieldInput> = {}): Promise<VbsReply> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect(socket, () => s.write(encodeRequest(type, fields)));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      try {
        resolve(parseReply(Buffer.concat(chunks)));
      } catch (err) {
        reject(err);
      }
    });
    s.on('error', reject);
  });
}
