// ControllerUnpublishVolume of a volume still attached on its node: a plain unmap, refused while the host
// may still use the volume; a forced one when the VBS reports the host down or the host's Node carries the
// node.kubernetes.io/out-of-service taint (read through the real Kubernetes client from the fake API server).
// The real VBS side (the forced unmap fencing the old device) is in test/controller-dead-node.alone.test.ts.
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createKubeClient } from '../src/kube/client.js';
import { createLogger } from '../src/log/logger.js';
import { failure } from './support/csi-client.js';
import { FakeBackend } from './support/fake-backend.js';
import { FakeKubeApi, writeKubeconfig } from './support/fake-kube-api.js';
import { startInProcess, type InProcessServer } from './support/in-process.js';

const TOKEN = 'unpublish-token';
const cap = { mount: { fs_type: 'ext4', mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_WRITER' as const } };
const OUT_OF_SERVICE = {
  key: 'node.kubernetes.io/out-of-service',
  value: 'nodeshutdown',
  effect: 'NoExecute' as const,
};

let dir: string;
let api: FakeKubeApi;
let backend: FakeBackend;
let server: InProcessServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'csi-unpublish-'));
  const tlsDir = join(dirname(fileURLToPath(import.meta.url)), 'support', 'tls');
  const caFile = join(tlsDir, 'fake-kube-api.crt');
  api = await new FakeKubeApi({
    token: TOKEN,
    tls: { key: readFileSync(join(tlsDir, 'fake-kube-api.key'), 'utf8'), cert: readFileSync(caFile, 'utf8') },
  }).start();
  // host-a's Node is named differently and found by the kubelet's node-id annotation; host-b's by its name.
  api.addNode({
    name: 'worker-1',
    annotations: { 'csi.volume.kubernetes.io/nodeid': JSON.stringify({ 'csi.sdshypervisor.io': 'host-a' }) },
  });
  api.addNode({ name: 'host-b', taints: [OUT_OF_SERVICE] });
  api.addNode({ name: 'host-c', annotations: { 'csi.volume.kubernetes.io/nodeid': 'not json' } });
  const kubeconfig = await writeKubeconfig(dir, api.url, TOKEN, { caFile });
  const kube = createKubeClient({
    logger: createLogger({ level: 'silent' }),
    kubeconfig,
    retry: { deadlineMs: 2_000 },
  });
  backend = new FakeBackend();
  server = await startInProcess(backend, { kube });
});
afterAll(async () => {
  await server?.stop();
  await api?.stop();
  await rm(dir, { recursive: true, force: true });
});

let volume = 0;
/** A volume published to `host` and attached there (a block device on that host, as the VBS reports it). */
async function attachedVolume(host: string, online = true): Promise<string> {
  const id = `pvc-unpublish-${++volume}`;
  await server.csi.controller.CreateVolume({
    name: id,
    volume_capabilities: [cap],
    capacity_range: { required_bytes: 64 * 1024 * 1024 },
  });
  await server.csi.controller.ControllerPublishVolume({ volume_id: id, node_id: host, volume_capability: cap });
  backend.setAttachment(id, host, { attached: true, online });
  return id;
}

const unmapsOf = (id: string) => backend.unmaps.filter((u) => u.name === id).map((u) => (u.force ? 'force' : 'plain'));

/** ControllerUnpublishVolume from `host` is refused FAILED_PRECONDITION after one plain unmap, nothing forced. */
async function expectUnpublishRefused(id: string, host: string): Promise<void> {
  const refusal = await failure(server.csi.controller.ControllerUnpublishVolume({ volume_id: id, node_id: host }));
  expect(refusal.codeName).toBe('FAILED_PRECONDITION');
  expect(unmapsOf(id)).toEqual(['plain']);
}

describe('ControllerUnpublishVolume of a volume attached on its node', () => {
  beforeEach(() => {
    api.requests.length = 0;
  });

  it('host up, Node not tainted: the plain unmap is refused, FAILED_PRECONDITION, nothing forced', async () => {
    const id = await attachedVolume('host-a');
    const err = await failure(server.csi.controller.ControllerUnpublishVolume({ volume_id: id, node_id: 'host-a' }));
    expect(err).toMatchObject({ codeName: 'FAILED_PRECONDITION', message: expect.stringContaining('force=1') });
    expect(unmapsOf(id)).toEqual(['plain']);
    expect(api.requestsTo('nodes')).toHaveLength(1);
    expect((await backend.volumeHosts(id)).map((h) => h.hostId)).toEqual(['host-a']);
  });

  it('the VBS reports the host down: forced, without asking Kubernetes', async () => {
    const id = await attachedVolume('host-a', false);
    await server.csi.controller.ControllerUnpublishVolume({ volume_id: id, node_id: 'host-a' });
    expect(unmapsOf(id)).toEqual(['plain', 'force']);
    expect(api.requestsTo('nodes')).toEqual([]);
    expect(await backend.volumeHosts(id)).toEqual([]);
  });

  it('the Node (found by its node-id annotation) carries the out-of-service taint: forced', async () => {
    const id = await attachedVolume('host-a');
    api.addNode({
      name: 'worker-1',
      annotations: { 'csi.volume.kubernetes.io/nodeid': JSON.stringify({ 'csi.sdshypervisor.io': 'host-a' }) },
      taints: [OUT_OF_SERVICE],
    });
    try {
      await server.csi.controller.ControllerUnpublishVolume({ volume_id: id, node_id: 'host-a' });
    } finally {
      api.addNode({
        name: 'worker-1',
        annotations: { 'csi.volume.kubernetes.io/nodeid': JSON.stringify({ 'csi.sdshypervisor.io': 'host-a' }) },
      });
    }
    expect(unmapsOf(id)).toEqual(['plain', 'force']);
    expect(await backend.volumeHosts(id)).toEqual([]);
  });

  it('the Node found by name carries the taint: forced; without a node id (every host) too', async () => {
    const id = await attachedVolume('host-b');
    await server.csi.controller.ControllerUnpublishVolume({ volume_id: id, node_id: '' });
    expect(unmapsOf(id)).toEqual(['plain', 'force']);
  });

  it('a Node with a garbled annotation and no taint, or no Node at all: refused', async () => {
    await expectUnpublishRefused(await attachedVolume('host-c'), 'host-c');
  });

  it('Kubernetes does not answer: the refusal stands (the CO retries), nothing forced', async () => {
    const id = await attachedVolume('host-a');
    api.inject('nodes', { status: 403 });
    await expectUnpublishRefused(id, 'host-a');
  });

  it('not attached: one plain unmap, Kubernetes not asked', async () => {
    const id = await attachedVolume('host-a');
    backend.setAttachment(id, 'host-a', { attached: false, online: true });
    await server.csi.controller.ControllerUnpublishVolume({ volume_id: id, node_id: 'host-a' });
    expect(unmapsOf(id)).toEqual(['plain']);
    expect(api.requestsTo('nodes')).toEqual([]);
  });
});
