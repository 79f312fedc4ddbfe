// An in-process CSI server (identity + controller) over a real unix socket, backed by a fake SdsBackend:
// unit tests of the controller room. The conformance suite uses test/support/stack.ts (real processes).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controllerService } from '../../src/controller/controller.js';
import type { ImageKube } from '../../src/controller/images.js';
import type { NodeKube } from '../../src/controller/unpublish.js';
import { identityService } from '../../src/identity/identity.js';
import { createLogger } from '../../src/log/logger.js';
import type { SdsBackend } from '../../src/sds/backend.js';
import { makeContextFactory } from '../../src/server/rpc.js';
import { CsiServer } from '../../src/server/server.js';
import { connectCsi, type CsiClients } from './csi-client.js';

export interface InProcessServer {
  csi: CsiClients;
  socketPath: string;
  stop(): Promise<void>;
}

export async function startInProcess(
  backend: SdsBackend,
  options: { probe?: () => Promise<boolean>; kube?: ImageKube & Partial<NodeKube> } = {},
): Promise<InProcessServer> {
  const dir = await mkdtemp(join(tmpdir(), 'csi-unit-'));
  const socketPath = join(dir, 'csi.sock');
  const log = createLogger({ level: 'silent' });
  const server = new CsiServer(socketPath, log);
  const rpc = makeContextFactory(log, server.tracker);
  server.register({
    identity: identityService(
      { driverName: 'csi.sdshypervisor.io', vendorVersion: '0.0.0-test', probe: options.probe ?? (async () => true) },
      rpc,
    ),
    controller: controllerService({ backend, ...(options.kube ? { kube: options.kube } : {}) }, rpc),
  });
  await server.listen(0o600);
  const csi = connectCsi(socketPath);
  return {
    csi,
    socketPath,
    async stop() {
      csi.close();
      await server.shutdown(1000);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
