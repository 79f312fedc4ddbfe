// The one promise-based gRPC client of the CSI services over a unix socket, loaded from proto/csi.proto with
// the driver's loader options; the demo, the tests and the bench all use it. Every method returns a promise;
// a failed call rejects with a CsiCallError carrying the status code and message.
import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import type { ControllerDefinition } from '../generated/csi/v1/Controller.js';
import type { GroupControllerDefinition } from '../generated/csi/v1/GroupController.js';
import type { SnapshotMetadataDefinition } from '../generated/csi/v1/SnapshotMetadata.js';
import type { IdentityDefinition } from '../generated/csi/v1/Identity.js';
import type { NodeDefinition } from '../generated/csi/v1/Node.js';
import { loadCsiProto } from '../server/proto.js';

export { status } from '@grpc/grpc-js';

export interface CallOpts {
  /** per-call deadline; default the connection's `timeoutMs` */
  timeoutMs?: number;
}

export interface ConnectOptions {
  /** default per-call deadline; 60 s unless given */
  timeoutMs?: number;
  /**
   * Retry a connection within milliseconds instead of grpc-js's default back-off of a second: for a client
   * polling a server that is still starting.
   */
  fastReconnect?: boolean;
}

type Promisified<D> = {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- variance of the unused parameters
  [M in keyof D]: D[M] extends MethodDefinition<infer Req, any, any, infer ResOut>
    ? (request: Req, opts?: CallOpts) => Promise<ResOut>
    : never;
};

export type IdentityApi = Promisified<IdentityDefinition>;
export type ControllerApi = Promisified<ControllerDefinition>;
export type NodeApi = Promisified<NodeDefinition>;
export type GroupControllerApi = Promisified<GroupControllerDefinition>;

/** Server-streaming methods: every message of the stream, or a CsiCallError when the stream ends with one. */
type Collected<D> = {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- variance of the unused parameters
  [M in keyof D]: D[M] extends MethodDefinition<infer Req, any, any, infer ResOut>
    ? (request: Req, opts?: CallOpts) => Promise<ResOut[]>
    : never;
};
export type SnapshotMetadataApi = Collected<SnapshotMetadataDefinition>;

export class CsiCallError extends Error {
  constructor(
    readonly method: string,
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(`${method}: ${grpc.status[code]} (${code}): ${details}`);
    this.name = 'CsiCallError';
  }
  get codeName(): string {
    return grpc.status[this.code] ?? String(this.code);
  }
}

type Method = (...args: unknown[]) => unknown;

/**
 * Each method of `definition`, bound to `client`, as a function of (request, opts) returning a promise that
 * `call` settles; the deadline is opts.timeoutMs or `timeoutMs` from now.
 */
function wrapEach<T>(
  client: grpc.Client,
  definition: grpc.ServiceDefinition,
  timeoutMs: number,
  call: (
    fn: Method,
    method: string,
    request: unknown,
    deadline: Date,
    resolve: (value: unknown) => void,
    reject: (err: unknown) => void,
  ) => void,
): T {
  const api: Record<string, unknown> = {};
  for (const method of Object.keys(definition)) {
    const fn = (client as unknown as Record<string, Method>)[method]!.bind(client);
    api[method] = (request: unknown, opts: CallOpts = {}) =>
      new Promise((resolve, reject) => {
        call(fn, method, request, new Date(Date.now() + (opts.timeoutMs ?? timeoutMs)), resolve, reject);
      });
  }
  return api as T;
}

function promisify<D>(client: grpc.Client, definition: grpc.ServiceDefinition, timeoutMs: number): Promisified<D> {
  return wrapEach<Promisified<D>>(client, definition, timeoutMs, (fn, method, request, deadline, resolve, reject) => {
    fn(request, { deadline }, (err: grpc.ServiceError | null, response: unknown) => {
      if (err) reject(new CsiCallError(method, err.code, err.details));
      else resolve(response);
    });
  });
}

function collecting<D>(client: grpc.Client, definition: grpc.ServiceDefinition, timeoutMs: number): Collected<D> {
  return wrapEach<Collected<D>>(client, definition, timeoutMs, (fn, method, request, deadline, resolve, reject) => {
    const messages: unknown[] = [];
    const call = fn(request, { deadline }) as grpc.ClientReadableStream<unknown>;
    call.on('data', (m: unknown) => messages.push(m));
    call.on('error', (err: grpc.ServiceError) => reject(new CsiCallError(method, err.code, err.details)));
    call.on('end', () => resolve(messages));
  });
}

export interface CsiClients {
  identity: IdentityApi;
  controller: ControllerApi;
  node: NodeApi;
  groupController: GroupControllerApi;
  snapshotMetadata: SnapshotMetadataApi;
  close(): void;
}

/** Clients for `unix:///path` or a bare socket path, on one channel as one CO connection is. */
export function connectCsi(socket: string, options: ConnectOptions = {}): CsiClients {
  const csi = loadCsiProto().csi.v1;
  const address = socket.startsWith('unix:') ? socket : `unix://${socket}`;
  const timeoutMs = options.timeoutMs ?? 60_000;
  const channelOptions: grpc.ChannelOptions = options.fastReconnect
    ? { 'grpc.initial_reconnect_backoff_ms': 2, 'grpc.max_reconnect_backoff_ms': 5, 'grpc.min_reconnect_backoff_ms': 1 }
    : {};
  const creds = grpc.credentials.createInsecure();
  const identity = new csi.Identity(address, creds, channelOptions);
  const shared = { ...channelOptions, channelOverride: identity.getChannel() } as grpc.ClientOptions;
  const controller = new csi.Controller(address, creds, shared);
  const node = new csi.Node(address, creds, shared);
  const groupController = new csi.GroupController(address, creds, shared);
  const snapshotMetadata = new csi.SnapshotMetadata(address, creds, shared);
  return {
    identity: promisify<IdentityDefinition>(identity, csi.Identity.service, timeoutMs),
    controller: promisify<ControllerDefinition>(controller, csi.Controller.service, timeoutMs),
    node: promisify<NodeDefinition>(node, csi.Node.service, timeoutMs),
    groupController: promisify<GroupControllerDefinition>(groupController, csi.GroupController.service, timeoutMs),
    snapshotMetadata: collecting<SnapshotMetadataDefinition>(snapshotMetadata, csi.SnapshotMetadata.service, timeoutMs),
    close() {
      for (const client of [identity, controller, node, groupController, snapshotMetadata]) client.close();
    },
  };
}
