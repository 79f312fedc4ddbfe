// A real CSI server (identity + node) on a unix socket in a temp dir, and a promise-based gRPC client for
// it. The node service gets whatever connector the test passes (the loop stand-in, or the real KvConnector).
import { execFileSync } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { expect } from 'vitest';
import type { NodeClient } from '../../src/generated/csi/v1/Node.js';
import type { IdentityClient } from '../../src/generated/csi/v1/Identity.js';
import type {
  _csi_v1_VolumeCapability_AccessMode_Mode,
  VolumeCapability,
} from '../../src/generated/csi/v1/VolumeCapability.js';
import { identityService } from '../../src/identity/identity.js';
import { nodeService, type NodeDeps } from '../../src/node/node.js';
import { loadCsiProto } from '../../src/server/proto.js';
import { makeContextFactory } from '../../src/server/rpc.js';
import { CsiServer } from '../../src/server/server.js';
import { readMountTable, topMountAt } from '../../src/mount/index.js';
import type { LoopConnector } from './loop-connector.js';
import { LoopFixtures } from './loop-fixtures.js';

type Callback<Res> = (err: grpc.ServiceError | null, res?: Res) => void;
type Promisified<C> = {
  [K in keyof C as K extends `${Uppercase<infer _F>}${string}` ? K : never]: C[K] extends {
    (argument: infer Req, callback: Callback<infer Res>): grpc.ClientUnaryCall;
  }
    ? (request: Req) => Promise<Res>
    : never;
};

/** Wraps a grpc-js client: `await client.NodeStageVolume({...})`. */
export function promisify<C extends grpc.Client>(client: C): Promisified<C> {
  return new Proxy({} as Promisified<C>, {
    get(_, method: string) {
      const fn = (client as unknown as Record<string, (req: unknown, cb: Callback<unknown>) => void>)[method];
      if (typeof fn !== 'function') return undefined;
      return (request: unknown) =>
        new Promise((resolve, reject) => fn.call(client, request, (err, res) => (err ? reject(err) : resolve(res))));
    },
  });
}

export interface CsiClients {
  node: Promisified<NodeClient>;
  identity: Promisified<IdentityClient>;
  close(): void;
}

export function connectCsi(socketPath: string): CsiClients {
  const csi = loadCsiProto().csi.v1;
  const address = `unix://${socketPath}`;
  const creds = grpc.credentials.createInsecure();
  const node = new csi.Node(address, creds);
  const identity = new csi.Identity(address, creds);
  return {
    node: promisify(node),
    identity: promisify(identity),
    close: () => {
      node.close();
      identity.close();
    },
  };
}

export interface NodeHarness extends CsiClients {
  server: CsiServer;
  stop(): Promise<void>;
}

export async function startNodeServer(
  socketPath: string,
  deps: Omit<NodeDeps, 'log' | 'maxVolumesPerNode'> & Partial<NodeDeps>,
): Promise<NodeHarness> {
  const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const server = new CsiServer(socketPath, log);
  const rpc = makeContextFactory(log, server.tracker);
  server.register({
    identity: identityService(
      { driverName: 'csi.sdshypervisor.io', vendorVersion: 'test', probe: async () => true },
      rpc,
    ),
    node: nodeService({ maxVolumesPerNode: 16, log, ...deps }, rpc),
  });
  await server.listen(0o600);
  const clients = connectCsi(socketPath);
  return {
    ...clients,
    server,
    stop: async () => {
      clients.close();
      await server.shutdown(1_000);
    },
  };
}

/** The gRPC status name of a rejected call (for `expect(...).rejects`). */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'OK';
  } catch (err) {
    const code = (err as grpc.ServiceError).code;
    return grpc.status[code] ?? String(code);
  }
}

export type AccessModeName = keyof typeof _csi_v1_VolumeCapability_AccessMode_Mode;

/** A mount capability. */
export function mountCap(
  fsType: string,
  mode: AccessModeName = 'SINGLE_NODE_WRITER',
  mountFlags: string[] = [],
): VolumeCapability {
  return { access_mode: { mode }, mount: { fs_type: fsType, mount_flags: mountFlags } };
}

export function blockCap(mode: AccessModeName = 'SINGLE_NODE_WRITER'): VolumeCapability {
  return { access_mode: { mode }, block: {} };
}

/** Size of the filesystem at `path` as df reports it, in bytes. */
export function dfSize(path: string): number {
  return Number(execFileSync('df', ['-B1', '--output=size', path], { encoding: 'utf8' }).trim().split('\n')[1]);
}

/** The mount at exactly `path` (the top one when stacked), or undefined. */
export async function mountAt(path: string) {
  return topMountAt(await readMountTable(), path);
}

export interface LoopNode<C extends LoopConnector> {
  fx: LoopFixtures;
  connector: C;
  h: NodeHarness;
}

/** Fresh loop fixtures in a temp dir and a node server over the loop stand-in connector `makeConnector` builds. */
export async function startLoopNode<C extends LoopConnector>(
  prefix: string,
  makeConnector: (fx: LoopFixtures) => C,
): Promise<LoopNode<C>> {
  const fx = await LoopFixtures.create(prefix);
  const connector = makeConnector(fx);
  const h = await startNodeServer(fx.path('csi.sock'), { connector, hostId: 'host-a' });
  return { fx, connector, h };
}

/** Stops the server, removes the fixtures, and fails the suite if a mount or loop device was left behind. */
export async function stopLoopNode(node: Partial<LoopNode<LoopConnector>>): Promise<void> {
  await node.h?.stop();
  if (!node.fx) return;
  const leaks = await node.fx.leaks();
  await node.fx.cleanup();
  expect(leaks).toEqual({ mounts: [], loops: [] });
}
