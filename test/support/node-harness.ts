// A real CSI server (identity + node) on a unix socket in a temp dir, and the shared CSI client
// (src/util/csi-client.ts) for it. The node service gets whatever connector the test passes (the loop stand-in, or the real KvConnector).
import { execFileSync } from 'node:child_process';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { afterAll, beforeAll } from 'vitest';
import type {
  _csi_v1_VolumeCapability_AccessMode_Mode,
  VolumeCapability,
} from '../../src/generated/csi/v1/VolumeCapability.js';
import { identityService } from '../../src/identity/identity.js';
import { nodeService, type NodeDeps } from '../../src/node/node.js';
import { makeContextFactory } from '../../src/server/rpc.js';
import { CsiServer } from '../../src/server/server.js';
import { readMountTable, topMountAt } from '../../src/mount/index.js';
import { connectCsi, type CsiClients, type NodeApi } from '../../src/util/csi-client.js';
import type { LoopConnector } from './loop-connector.js';
import { LoopFixtures } from './loop-fixtures.js';

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
    const code = (err as { code: grpc.status }).code;
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

/**
 * One volume's stage, publish, unpublish and unstage requests as a CO sends them, with nothing else set;
 * `node` is asked at each call (a harness is started in beforeAll).
 */
export function volumeRequests(node: () => NodeApi, volumeId: string) {
  return {
    stage: (staging: string, cap: VolumeCapability) =>
      node().NodeStageVolume({ volume_id: volumeId, staging_target_path: staging, volume_capability: cap }),
    publish: (staging: string, target: string, cap: VolumeCapability) =>
      node().NodePublishVolume({
        volume_id: volumeId,
        staging_target_path: staging,
        target_path: target,
        volume_capability: cap,
      }),
    unpublish: (target: string) => node().NodeUnpublishVolume({ volume_id: volumeId, target_path: target }),
    unstage: (staging: string) => node().NodeUnstageVolume({ volume_id: volumeId, staging_target_path: staging }),
  };
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
  await node.fx.cleanupChecked();
}

/**
 * A loop node for the enclosing describe (or file): started in beforeAll, stopped and leak-checked in afterAll.
 * The fields are filled in once beforeAll has run. `beforeStop` releases what the suite made outside the temp
 * dir; whatever it throws fails the suite after the node is stopped, so a failed check leaves nothing behind.
 */
export function useLoopNode<C extends LoopConnector>(
  prefix: string,
  makeConnector: (fx: LoopFixtures) => C,
  beforeStop?: (node: LoopNode<C>) => void | Promise<void>,
): LoopNode<C> {
  const node = {} as LoopNode<C>;
  beforeAll(async () => {
    Object.assign(node, await startLoopNode(prefix, makeConnector));
  });
  afterAll(async () => {
    let failed: { error: unknown } | undefined;
    if (node.fx && beforeStop) {
      try {
        await beforeStop(node);
      } catch (error) {
        failed = { error };
      }
    }
    await stopLoopNode(node);
    if (failed) throw failed.error;
  });
  return node;
}
