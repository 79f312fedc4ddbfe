// A real gRPC client for the CSI services over a unix socket, loaded from proto/csi.proto with the driver's
// loader options. Every method returns a promise; a failed call rejects with a CsiCallError carrying the
// status code and message, and `failure()` turns an expected failure into `{ code, codeName, message }`.
import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import type { ControllerDefinition } from '../../src/generated/csi/v1/Controller.js';
import type { GroupControllerDefinition } from '../../src/generated/csi/v1/GroupController.js';
import type { SnapshotMetadataDefinition } from '../../src/generated/csi/v1/SnapshotMetadata.js';
import type { IdentityDefinition } from '../../src/generated/csi/v1/Identity.js';
import type { NodeDefinition } from '../../src/generated/csi/v1/Node.js';
import { loadCsiProto } from '../../src/server/proto.js';

export { status } from '@grpc/grpc-js';

export interface CallOpts {
  /** per-call deadline; default 60 s */
  timeoutMs?: number;
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

function promisify<D>(client: grpc.Client, definition: grpc.ServiceDefinition): Promisified<D> {
  const api: Record<string, unknown> = {};
  for (const method of Object.keys(definition)) {
    const fn = (client as unknown as Record<string, (...args: unknown[]) => unknown>)[method]!.bind(client);
    api[method] = (request: unknown, opts: CallOpts = {}) =>
      new Promise((resolve, reject) => {
        const deadline = new Date(Date.now() + (opts.timeoutMs ?? 60_000));
        fn(request, { deadline }, (err: grpc.ServiceError | null, response: unknown) => {
          if (err) reject(new CsiCallError(method, err.code, err.details));
          else resolve(response);
        });
      });
  }
  return api as Promisified<D>;
}

function collecting<D>(client: grpc.Client, definition: grpc.ServiceDefinition): Collected<D> {
  const api: Record<string, unknown> = {};
  for (const method of Object.keys(definition)) {
    const fn = (client as unknown as Record<string, (...args: unknown[]) => unknown>)[method]!.bind(client);
    api[method] = (request: unknown, opts: CallOpts = {}) =>
      new Promise((resolve, reject) => {
        const deadline = new Date(Date.now() + (opts.timeoutMs ?? 60_000));
        const messages: unknown[] = [];
        const call = fn(request, { deadline }) as grpc.ClientReadableStream<unknown>;
        call.on('data', (m: unknown) => messages.push(m));
        call.on('error', (err: grpc.ServiceError) => reject(new CsiCallError(method, err.code, err.details)));
        call.on('end', () => resolve(messages));
      });
  }
  return api as Collected<D>;
}

export interface CsiClients {
  identity: IdentityApi;
  controller: ControllerApi;
  node: NodeApi;
  groupController: GroupControllerApi;
  snapshotMetadata: SnapshotMetadataApi;
  close(): void;
}

/** Clients for `unix:///path` or a bare socket path. */
export function connectCsi(socket: string): CsiClients {
  const csi = loadCsiProto().csi.v1;
  const address = socket.startsWith('unix:') ? socket : `unix://${socket}`;
  const creds = grpc.credentials.createInsecure();
  const identity = new csi.Identity(address, creds);
  const controller = new csi.Controller(address, creds);
  const node = new csi.Node(address, creds);
  const groupController = new csi.GroupController(address, creds);
  const snapshotMetadata = new csi.SnapshotMetadata(address, creds);
  return {
    identity: promisify<IdentityDefinition>(identity, csi.Identity.service),
    controller: promisify<ControllerDefinition>(controller, csi.Controller.service),
    node: promisify<NodeDefinition>(node, csi.Node.service),
    groupController: promisify<GroupControllerDefinition>(groupController, csi.GroupController.service),
    snapshotMetadata: collecting<SnapshotMetadataDefinition>(snapshotMetadata, csi.SnapshotMetadata.service),
    close() {
      identity.close();
      controller.close();
      node.close();
      groupController.close();
      snapshotMetadata.close();
    },
  };
}

export interface Failure {
  code: grpc.status;
  codeName: string;
  message: string;
}

/** Awaits a call that must fail and returns its status; a success is a test failure. */
export async function failure(call: Promise<unknown>): Promise<Failure> {
  try {
    const value = await call;
    throw new Error(`expected the call to fail, but it succeeded with ${JSON.stringify(value)}`);
  } catch (err) {
    if (!(err instanceof CsiCallError)) throw err;
    return { code: err.code, codeName: err.codeName, message: err.details };
  }
}

/** The outcome of a call either way: the response, or its failure. */
export async function settle<T>(call: Promise<T>): Promise<{ ok: true; value: T } | ({ ok: false } & Failure)> {
  try {
    return { ok: true, value: await call };
  } catch (err) {
    if (!(err instanceof CsiCallError)) throw err;
    return { ok: false, code: err.code, codeName: err.codeName, message: err.details };
  }
}
