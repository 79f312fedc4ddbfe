// Unit tests of the controller's image-source rules (src/controller/images.ts) with a fake back end and a fake
// Kubernetes client: the cases the end-to-end suite (features-images.test.ts) cannot reach with a healthy API
// server. Over real gRPC on a unix socket, in process.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ImageKube } from '../src/controller/images.js';
import { KubeError, type PvcEvent, type PvcImageSource } from '../src/kube/index.js';
import { failure, status } from './support/csi-client.js';
import { FakeBackend } from './support/fake-backend.js';
import { startInProcess, type InProcessServer } from './support/in-process.js';

class FakeKube implements ImageKube {
  enabled = true;
  reads = 0;
  readonly events: Array<{ pvc: string; event: PvcEvent }> = [];
  annotation: PvcImageSource | undefined;
  readFailure: Error | undefined;
  eventFailure: Error | undefined;
  async readPvcImageSource(): Promise<PvcImageSource | undefined> {
    this.reads++;
    if (this.readFailure) throw this.readFailure;
    return this.annotation;
  }
  async recordPvcEvent(namespace: string, name: string, event: PvcEvent): Promise<void> {
    if (this.eventFailure) throw this.eventFailure;
    this.events.push({ pvc: `${namespace}/${name}`, event });
  }
  reset(): void {
    Object.assign(this, {
      enabled: true,
      reads: 0,
      annotation: undefined,
      readFailure: undefined,
      eventFailure: undefined,
    });
    this.events.length = 0;
  }
}

const block = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' as const } };
const claimKeys = { 'csi.storage.k8s.io/pvc/name': 'data', 'csi.storage.k8s.io/pvc/namespace': 'apps' };

describe('claim image sources, fake back end and fake Kubernetes', () => {
  const kube = new FakeKube();
  let backend: FakeBackend;
  let server: InProcessServer;
  let n = 0;
  const create = (parameters: Record<string, string>, extra: Record<string, unknown> = {}) =>
    server.csi.controller.CreateVolume({ name: `pvc-u${++n}`, volume_capabilities: [block], parameters, ...extra });

  beforeAll(async () => {
    backend = new FakeBackend();
    server = await startInProcess(backend, { kube });
  });
  afterAll(async () => {
    await server.stop();
  });
  afterEach(() => kube.reset());

  it('does not read a claim when the provisioner did not name one', async () => {
    await create({ allowPvcImageSource: 'true' });
    expect(kube.reads).toBe(0);
  });

  it('imports the annotated image in an allowing class; an Event that cannot be recorded does not fail the call', async () => {
    kube.annotation = { source: '/images/base.raw', pvcUid: 'uid-1' };
    kube.eventFailure = new KubeError('Forbidden', 'POST event: HTTP 403');
    const res = await create({ ...claimKeys, allowPvcImageSource: 'true' });
    expect(backend.volumes.get(res.volume!.volume_id)?.source).toEqual({ type: 'image' });
  });

  it('needs Kubernetes access when the class allows claim images', async () => {
    kube.enabled = false;
    const f = await failure(create({ ...claimKeys, allowPvcImageSource: 'true' }));
    expect(f.code).toBe(status.FAILED_PRECONDITION);
    expect(f.message).toMatch(/allowPvcImageSource.*no Kubernetes access/);
    // A class that does not allow them needs no claim at all.
    await create({ ...claimKeys });
    expect(kube.reads).toBe(0);
  });

  it('a claim it cannot read fails an allowing class (the mapped code) and not another one', async () => {
    kube.readFailure = new KubeError('Forbidden', 'GET persistentvolumeclaim apps/data: HTTP 403');
    expect((await failure(create({ ...claimKeys, allowPvcImageSource: 'true' }))).code).toBe(status.PERMISSION_DENIED);
    const plain = await create({ ...claimKeys });
    expect(backend.volumes.get(plain.volume!.volume_id)?.source).toEqual({ type: 'none' });
    kube.readFailure = new KubeError(
      'InvalidAnnotation',
      'PVC apps/data: sdshypervisor.csi/image-source must be an absolute path',
    );
    const bad = await failure(create({ ...claimKeys }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(kube.events.map((e) => [e.pvc, e.event.reason])).toEqual([['apps/data', 'ImageImportFailed']]);
  });

  it('refuses an annotation together with a dataSource', async () => {
    const source = await create({});
    kube.annotation = { source: '/images/base.raw' };
    const f = await failure(
      create(
        { ...claimKeys, allowPvcImageSource: 'true' },
        { volume_content_source: { volume: { volume_id: source.volume!.volume_id } } },
      ),
    );
    expect(f.code).toBe(status.INVALID_ARGUMENT);
    expect(f.message).toMatch(/cannot be combined with a dataSource/);
  });

  it('records ImageImportFailed for a failed import of the class image too, naming the parameter', async () => {
    const f = await failure(create({ ...claimKeys, imageSource: '/images/broken.raw' }));
    expect(f.message).toMatch(/^parameters\.imageSource: the image \/images\/broken\.raw could not be imported/);
    expect(kube.events.map((e) => [e.event.type, e.event.reason])).toEqual([['Warning', 'ImageImportFailed']]);
  });

  it('an import that runs out of space is RESOURCE_EXHAUSTED, not INVALID_ARGUMENT', async () => {
    const f = await failure(create({ ...claimKeys, imageSource: '/images/full.raw' }));
    expect([f.code, f.message]).toEqual([
      status.RESOURCE_EXHAUSTED,
      expect.stringMatching(/could not be imported .*ENOSPC/),
    ]);
  });

  it('keeps credentials of an image URL out of messages and Events', async () => {
    kube.annotation = { source: 'https://user:secret@images.example/broken.raw' };
    const f = await failure(create({ ...claimKeys, allowPvcImageSource: 'true' }));
    expect(f.message).not.toContain('secret');
    expect(f.message).toContain('https://images.example/broken.raw');
    expect(JSON.stringify(kube.events)).not.toContain('secret');
  });
});
