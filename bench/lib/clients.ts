// The benchmark's clients: a real gRPC client of the CSI services (the driver's own proto loading), and a
// minimal client of the VBS socket API (one connection per request, as the protocol wants).
import * as grpc from '@grpc/grpc-js';
import { connect } from 'node:net';
import type { ControllerClient } from '../../src/generated/csi/v1/Controller.js';
import type { IdentityClient } from '../../src/generated/csi/v1/Identity.js';
import type { NodeClient } from '../../src/generated/csi/v1/Node.js';
import { encodeRequest, parseReply, type FieldInput, type VbsReply } from '../../src/protocol/vbs.js';
import { loadCsiProto } from '../../src/server/proto.js';

export class CallFailed extends Error {
  constructor(
    readonly method: string,
    readonly code: grpc.status,
    details: string,
  ) {
    super(`${method}: ${grpc.status[code]}: ${details}`);
  }
}

type AnyClient = IdentityClient | ControllerClient | NodeClient;

export interface Csi {
  /** calls `method` with `request`; rejects with CallFailed */
  call<T = Record<string, unknown>>(
    service: 'identity' | 'controller' | 'node',
    method: string,
    request: object,
    timeoutMs?: number,
  ): Promise<T>;
  close(): void;
}

/**
 * Clients of the three services on one channel. `fastReconnect` makes a client that is polling a server
 * still starting try again within milliseconds instead of grpc-js's default back-off of a second.
 */
export function connectCsi(socket: string, options: { fastReconnect?: boolean } = {}): Csi {
  const csi = loadCsiProto().csi.v1;
  const address = `unix://${socket}`;
  const channelOptions: grpc.ChannelOptions = options.fastReconnect
    ? { 'grpc.initial_reconnect_backoff_ms': 2, 'grpc.max_reconnect_backoff_ms': 5, 'grpc.min_reconnect_backoff_ms': 1 }
    : {};
  const creds = grpc.credentials.createInsecure();
  const identity = new csi.Identity(address, creds, channelOptions);
  // The other two share the first one's channel, as one CO connection does.
  const shared = { ...channelOptions, channelOverride: identity.getChannel() } as grpc.ClientOptions;
  const clients: Record<string, AnyClient> = {
    identity,
    controller: new csi.Controller(address, creds, shared),
    node: new csi.Node(address, creds, shared),
  };
  return {
    call(service, method, request, timeoutMs = 120_000) {
      const client = clients[service] as unknown as Record<string, (...args: unknown[]) => unknown>;
      return new Promise((resolve, reject) => {
        client[method]!.call(
          client,
          request,
          { deadline: Date.now() + timeoutMs },
          (err: grpc.ServiceError | null, response: unknown) => {
            if (err) reject(new CallFailed(method, err.code, err.details));
            else resolve(response as never);
          },
        );
      });
    },
    close() {
      for (const c of Object.values(clients)) (c as unknown as grpc.Client).close();
    },
  };
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
