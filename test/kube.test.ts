// src/kube against an in-process Kubernetes API (test/support/fake-kube-api.ts): topology, annotations,
// Event bodies, retries, deadlines, cancellation, typed errors, kubeconfig and in-cluster configuration.
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { pino, type Logger } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createKubeClient,
  IMAGE_CHECKSUM_ANNOTATION,
  IMAGE_SOURCE_ANNOTATION,
  isKubeError,
  KubeError,
  type KubeClient,
  type KubeErrorKind,
} from '../src/kube/index.js';
import { FakeKubeApi, writeKubeconfig } from './support/fake-kube-api.js';

const TOKEN = 'fake-token-5f1d2c3b4a';
const SHA256 = `sha256:${'ab'.repeat(32)}`;

function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

async function expectKubeError(promise: Promise<unknown>, kind: KubeErrorKind): Promise<KubeError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected a KubeError of kind ${kind}`).toBeInstanceOf(KubeError);
  expect((err as KubeError).kind).toBe(kind);
  return err as KubeError;
}

let workDir: string;
/** A self-signed certificate for 127.0.0.1 that doubles as the cluster CA (client-node insists on HTTPS). */
const tlsDir = join(dirname(fileURLToPath(import.meta.url)), 'support/tls');
let tls: { key: string; cert: string; caFile: string };
beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'kube-test-'));
  const caFile = join(tlsDir, 'fake-kube-api.crt');
  tls = {
    key: await readFile(join(tlsDir, 'fake-kube-api.key'), 'utf8'),
    cert: await readFile(caFile, 'utf8'),
    caFile,
  };
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

describe('configuration', () => {
  it('is disabled without kubeconfig or in-cluster credentials, and every call says so', async () => {
    const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
    delete process.env.KUBERNETES_SERVICE_HOST;
    delete process.env.KUBERNETES_SERVICE_PORT;
    try {
      const kube = createKubeClient({ logger: captureLogger().logger, inClusterRoot: join(workDir, 'nothing-here') });
      expect(kube.enabled).toBe(false);
      expect(kube.configSource).toBe('none');
      await expectKubeError(kube.readNodeTopology('n1', []), 'Disabled');
      await expectKubeError(kube.readPvcImageSource('default', 'claim'), 'Disabled');
      await expectKubeError(
        kube.recordPvcEvent('default', 'claim', { type: 'Normal', reason: 'Test', message: 'x' }),
        'Disabled',
      );
    } finally {
      if (saved.host !== undefined) process.env.KUBERNETES_SERVICE_HOST = saved.host;
      if (saved.port !== undefined) process.env.KUBERNETES_SERVICE_PORT = saved.port;
    }
  });

  it('refuses a kubeconfig it cannot read, naming the file', () => {
    const missing = join(workDir, 'no-such-kubeconfig');
    let caught: unknown;
    try {
      createKubeClient({ logger: captureLogger().logger, kubeconfig: missing });
    } catch (err) {
      caught = err;
    }
    expect(isKubeError(caught, 'Config')).toBe(true);
    expect((caught as Error).message).toContain(missing);
  });

  it('refuses a kubeconfig without a current context', async () => {
    const path = join(workDir, 'empty-kubeconfig');
    await writeFile(path, 'apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n');
    expect(() => createKubeClient({ logger: captureLogger().logger, kubeconfig: path })).toThrow(/no current-context/);
  });
});

describe('against the fake API server (kubeconfig)', () => {
  let api: FakeKubeApi;
  let kube: KubeClient;
  let logs: string[];
  let pvcUid: string;

  beforeEach(async () => {
    api = await new FakeKubeApi({ token: TOKEN, tls }).start();
    api.addNode({
      name: 'worker-1',
      labels: { 'topology.kubernetes.io/zone': 'zone-a', 'example.com/rack': 'r7', 'kubernetes.io/os': 'linux' },
    });
    pvcUid = api.addPvc({
      namespace: 'apps',
      name: 'data-db-0',
      annotations: {
        [IMAGE_SOURCE_ANNOTATION]: 'http://127.0.0.1:8080/images/base.qcow2',
        [IMAGE_CHECKSUM_ANNOTATION]: SHA256,
      },
    });
    api.addPvc({ namespace: 'apps', name: 'plain' });
    const kubeconfig = await writeKubeconfig(workDir, api.url, TOKEN, {
      caFile: tls.caFile,
      fileName: `kubeconfig-${api.listeningPort}`,
    });
    const captured = captureLogger();
    logs = captured.lines;
    kube = createKubeClient({
      logger: captured.logger,
      kubeconfig,
      component: 'csi.sdshypervisor.io',
      instance: 'controller-0',
      retry: { initialBackoffMs: 10, maxBackoffMs: 40 },
    });
  });

  afterEach(async () => {
    await api.stop();
    // Whatever happened, the token never reaches a log line.
    expect(logs.join('')).not.toContain(TOKEN);
  });

  it('reads the configured topology labels of a node with the kubeconfig token', async () => {
    expect(kube.enabled).toBe(true);
    expect(kube.configSource).toBe('kubeconfig');
    expect(kube.server).toBe(api.url);
    const topology = await kube.readNodeTopology('worker-1', ['topology.kubernetes.io/zone', 'example.com/rack']);
    expect(topology).toEqual({ 'topology.kubernetes.io/zone': 'zone-a', 'example.com/rack': 'r7' });
    const [request] = api.requestsTo('node');
    expect(request).toMatchObject({ method: 'GET', path: '/api/v1/nodes/worker-1' });
    expect(request!.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it('leaves out label keys the node lacks, and logs them', async () => {
    const topology = await kube.readNodeTopology('worker-1', [
      'topology.kubernetes.io/zone',
      'topology.kubernetes.io/region',
    ]);
    expect(topology).toEqual({ 'topology.kubernetes.io/zone': 'zone-a' });
    expect(logs.join('')).toContain('topology.kubernetes.io/region');
    expect(await kube.readNodeTopology('worker-1', [])).toEqual({});
  });

  it('gives a typed NotFound for an unknown node, without retrying', async () => {
    const err = await expectKubeError(kube.readNodeTopology('ghost', ['topology.kubernetes.io/zone']), 'NotFound');
    expect(err.httpStatus).toBe(404);
    expect(err.message).toContain('nodes "ghost" not found');
    expect(api.requestsTo('node')).toHaveLength(1);
  });

  it('rejects bad names and label keys before sending anything', async () => {
    await expectKubeError(kube.readNodeTopology('', []), 'InvalidArgument');
    await expectKubeError(kube.readNodeTopology('Bad_Name', []), 'InvalidArgument');
    const err = await expectKubeError(kube.readNodeTopology('worker-1', ['not a key']), 'InvalidArgument');
    expect(err.message).toContain('not a key');
    await expectKubeError(kube.readPvcImageSource('apps', '../etc'), 'InvalidArgument');
    await expectKubeError(
      kube.recordPvcEvent('apps', 'plain', { type: 'Normal', reason: 'not camel case', message: 'x' }),
      'InvalidArgument',
    );
    await expectKubeError(
      kube.recordPvcEvent('apps', 'plain', { type: 'Info' as 'Normal', reason: 'Test', message: 'x' }),
      'InvalidArgument',
    );
    expect(api.requests).toHaveLength(0);
  });

  it('reads the image-source and checksum annotations of a claim', async () => {
    expect(await kube.readPvcImageSource('apps', 'data-db-0')).toEqual({
      source: 'http://127.0.0.1:8080/images/base.qcow2',
      checksum: SHA256,
      pvcUid,
    });
    expect(api.requestsTo('pvc')[0]!.path).toBe('/api/v1/namespaces/apps/persistentvolumeclaims/data-db-0');
  });

  it('returns undefined for a claim without the annotation and NotFound for a missing claim', async () => {
    expect(await kube.readPvcImageSource('apps', 'plain')).toBeUndefined();
    const err = await expectKubeError(kube.readPvcImageSource('apps', 'nope'), 'NotFound');
    expect(err.message).toContain('persistentvolumeclaims "nope" not found');
  });

  it('accepts absolute paths and file:/// URLs, and rejects other sources and bad checksums', async () => {
    api.addPvc({
      namespace: 'apps',
      name: 'from-path',
      annotations: { [IMAGE_SOURCE_ANNOTATION]: ' /srv/images/base.raw ' },
    });
    expect(await kube.readPvcImageSource('apps', 'from-path')).toMatchObject({ source: '/srv/images/base.raw' });
    api.addPvc({
      namespace: 'apps',
      name: 'from-file-url',
      annotations: { [IMAGE_SOURCE_ANNOTATION]: 'file:///srv/images/base.raw' },
    });
    expect((await kube.readPvcImageSource('apps', 'from-file-url'))?.checksum).toBeUndefined();

    api.addPvc({ namespace: 'apps', name: 'relative', annotations: { [IMAGE_SOURCE_ANNOTATION]: 'images/base.raw' } });
    const relative = await expectKubeError(kube.readPvcImageSource('apps', 'relative'), 'InvalidAnnotation');
    expect(relative.message).toContain(IMAGE_SOURCE_ANNOTATION);
    api.addPvc({ namespace: 'apps', name: 'ftp', annotations: { [IMAGE_SOURCE_ANNOTATION]: 'ftp://host/base.raw' } });
    await expectKubeError(kube.readPvcImageSource('apps', 'ftp'), 'InvalidAnnotation');
    api.addPvc({
      namespace: 'apps',
      name: 'bad-sum',
      annotations: { [IMAGE_SOURCE_ANNOTATION]: '/srv/a.raw', [IMAGE_CHECKSUM_ANNOTATION]: 'sha1:abc' },
    });
    const badSum = await expectKubeError(kube.readPvcImageSource('apps', 'bad-sum'), 'InvalidAnnotation');
    expect(badSum.message).toContain(IMAGE_CHECKSUM_ANNOTATION);
    api.addPvc({ namespace: 'apps', name: 'sum-only', annotations: { [IMAGE_CHECKSUM_ANNOTATION]: SHA256 } });
    await expectKubeError(kube.readPvcImageSource('apps', 'sum-only'), 'InvalidAnnotation');
  });

  it('records a Normal event on the claim with the claim UID it reads first', async () => {
    await kube.recordPvcEvent('apps', 'data-db-0', {
      type: 'Normal',
      reason: 'ImageImported',
      message: 'imported base.qcow2 into pvc-123',
    });
    expect(api.requestsTo('pvc')).toHaveLength(1);
    expect(api.events).toHaveLength(1);
    const [post] = api.requestsTo('event');
    expect(post!.path).toBe('/api/v1/namespaces/apps/events');
    const body = post!.body as Record<string, any>;
    expect(body).toMatchObject({
      apiVersion: 'v1',
      kind: 'Event',
      metadata: { namespace: 'apps' },
      involvedObject: {
        apiVersion: 'v1',
        kind: 'PersistentVolumeClaim',
        namespace: 'apps',
        name: 'data-db-0',
        uid: pvcUid,
      },
      type: 'Normal',
      reason: 'ImageImported',
      message: 'imported base.qcow2 into pvc-123',
      source: { component: 'csi.sdshypervisor.io' },
      reportingComponent: 'csi.sdshypervisor.io',
      reportingInstance: 'controller-0',
      count: 1,
    });
    expect(body.metadata.name).toMatch(/^data-db-0\.[0-9a-f]+$/);
    expect(Number.isNaN(Date.parse(body.firstTimestamp))).toBe(false);
    expect(body.lastTimestamp).toBe(body.firstTimestamp);
  });

  it('records a Warning event without reading the claim when its UID is known, truncating long messages', async () => {
    await kube.recordPvcEvent(
      'apps',
      'data-db-0',
      { type: 'Warning', reason: 'ImageImportFailed', message: 'x'.repeat(5000) },
      { pvcUid: 'uid-given' },
    );
    expect(api.requestsTo('pvc')).toHaveLength(0);
    const body = api.requestsTo('event')[0]!.body as Record<string, any>;
    expect(body.type).toBe('Warning');
    expect(body.involvedObject.uid).toBe('uid-given');
    expect(body.message).toHaveLength(1024);
    expect(body.message.endsWith('...')).toBe(true);
  });

  it('gives distinct names to events recorded back to back', async () => {
    for (let i = 0; i < 5; i += 1) {
      await kube.recordPvcEvent(
        'apps',
        'plain',
        { type: 'Normal', reason: 'Test', message: `event ${i}` },
        { pvcUid: 'u' },
      );
    }
    const names = new Set(api.events.map((e) => (e.object.metadata as { name: string }).name));
    expect(names.size).toBe(5);
  });

  it('retries 500, 503, 429 and a dropped connection, then succeeds', async () => {
    api.inject(
      'node',
      { status: 500 },
      { status: 503 },
      { status: 429, retryAfterSeconds: 0 },
      { dropConnection: true },
    );
    const topology = await kube.readNodeTopology('worker-1', ['example.com/rack']);
    expect(topology).toEqual({ 'example.com/rack': 'r7' });
    expect(api.requestsTo('node')).toHaveLength(5);
    expect(logs.filter((l) => l.includes('retrying'))).toHaveLength(4);
  });

  it('retries an Event POST after a 500 and stores it once', async () => {
    api.inject('event', { status: 500 });
    await kube.recordPvcEvent('apps', 'plain', { type: 'Normal', reason: 'Test', message: 'once' }, { pvcUid: 'u' });
    expect(api.requestsTo('event')).toHaveLength(2);
    expect(api.events).toHaveLength(1);
  });

  it('does not retry 403 or 422: Forbidden and Rejected at once', async () => {
    api.inject('pvc', {
      status: 403,
      body: {
        kind: 'Status',
        apiVersion: 'v1',
        status: 'Failure',
        reason: 'Forbidden',
        message: 'cannot get resource "persistentvolumeclaims"',
        code: 403,
      },
    });
    const forbidden = await expectKubeError(kube.readPvcImageSource('apps', 'plain'), 'Forbidden');
    expect(forbidden.httpStatus).toBe(403);
    expect(forbidden.message).toContain('cannot get resource');
    expect(api.requestsTo('pvc')).toHaveLength(1);

    api.inject('event', { status: 422 });
    const rejected = await expectKubeError(
      kube.recordPvcEvent('apps', 'plain', { type: 'Normal', reason: 'Test', message: 'x' }, { pvcUid: 'u' }),
      'Rejected',
    );
    expect(rejected.httpStatus).toBe(422);
    expect(api.requestsTo('event')).toHaveLength(1);
  });

  it('gives up with Unavailable when 5xx persist past the deadline', async () => {
    // 1.5 s: room for several attempts even when a loaded machine takes a few hundred ms per TLS request.
    api.inject('node', ...Array.from({ length: 1000 }, () => ({ status: 500 })));
    const err = await expectKubeError(kube.readNodeTopology('worker-1', [], { deadlineMs: 1_500 }), 'Unavailable');
    expect(err.httpStatus).toBe(500);
    expect(err.message).toMatch(/failed after \d+ attempts/);
    expect(api.requestsTo('node').length).toBeGreaterThan(1);
  });

  it('is still Unavailable when the deadline cuts an attempt that follows 5xx answers (not Timeout)', async () => {
    // What used to depend on machine load: whether the deadline fell in a back-off (Unavailable) or in an
    // attempt (Timeout). Here it always falls in an attempt.
    api.inject('node', { status: 500 }, { status: 503 }, { delayMs: Infinity });
    const err = await expectKubeError(kube.readNodeTopology('worker-1', [], { deadlineMs: 1_500 }), 'Unavailable');
    expect(err.httpStatus).toBe(503);
    expect(err.message).toMatch(/failed after 3 attempts .*cut by the 1500 ms deadline/);
    expect(api.requestsTo('node')).toHaveLength(3);
  });

  it('does not wait for a Retry-After longer than the deadline', async () => {
    api.inject('node', { status: 429, retryAfterSeconds: 30 });
    const err = await expectKubeError(kube.readNodeTopology('worker-1', [], { deadlineMs: 1000 }), 'Unavailable');
    expect(err.httpStatus).toBe(429);
    expect(api.requestsTo('node')).toHaveLength(1);
  });

  it('stops a reply that never comes at the deadline with Timeout', async () => {
    api.inject('pvc', { delayMs: Infinity });
    const started = Date.now();
    const err = await expectKubeError(kube.readPvcImageSource('apps', 'plain', { deadlineMs: 300 }), 'Timeout');
    // The call returns at its deadline (generous margin for a loaded machine), never hangs.
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(err.message).toContain('300 ms');
  });

  it('retries a slow first reply within the deadline when the next one is quick', async () => {
    api.inject('node', { status: 503 }, { delayMs: 50 });
    expect(await kube.readNodeTopology('worker-1', ['kubernetes.io/os'])).toEqual({ 'kubernetes.io/os': 'linux' });
    expect(api.requestsTo('node')).toHaveLength(2);
  });

  it('stops when the caller cancels', async () => {
    api.inject('node', { delayMs: Infinity });
    const caller = new AbortController();
    const pending = kube.readNodeTopology('worker-1', [], { signal: caller.signal });
    setTimeout(() => caller.abort(), 50);
    await expectKubeError(pending, 'Cancelled');
    await expectKubeError(kube.readNodeTopology('worker-1', [], { signal: AbortSignal.abort() }), 'Cancelled');
  });

  it('treats a wrong token as Forbidden', async () => {
    const kubeconfig = await writeKubeconfig(workDir, api.url, 'wrong-token', {
      caFile: tls.caFile,
      fileName: `kubeconfig-wrong-${api.listeningPort}`,
    });
    const wrong = createKubeClient({ logger: captureLogger().logger, kubeconfig });
    const err = await expectKubeError(wrong.readNodeTopology('worker-1', []), 'Forbidden');
    expect(err.httpStatus).toBe(401);
  });
});

it('reports Unavailable when nothing listens at the API address', async () => {
  const api = await new FakeKubeApi({ tls }).start();
  const url = api.url;
  await api.stop();
  const kubeconfig = await writeKubeconfig(workDir, url, TOKEN, { caFile: tls.caFile, fileName: 'kubeconfig-closed' });
  const kube = createKubeClient({
    logger: captureLogger().logger,
    kubeconfig,
    retry: { deadlineMs: 500, initialBackoffMs: 20, maxBackoffMs: 80 },
  });
  const err = await expectKubeError(kube.readNodeTopology('worker-1', []), 'Unavailable');
  expect(err.message).toContain('ECONNREFUSED');
});

describe('in-cluster configuration (HTTPS, service-account token file)', () => {
  const savedEnv = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  let api: FakeKubeApi;
  let root: string;

  beforeAll(async () => {
    root = join(workDir, 'pod-root');
    const saDir = join(root, 'var/run/secrets/kubernetes.io/serviceaccount');
    await mkdir(saDir, { recursive: true });
    await writeFile(join(saDir, 'ca.crt'), tls.cert);
    await writeFile(join(saDir, 'token'), `${TOKEN}-sa`); // the kubelet writes it without a newline
    await writeFile(join(saDir, 'namespace'), 'kube-system');
    api = await new FakeKubeApi({ token: `${TOKEN}-sa`, tls }).start();
    api.addNode({ name: 'worker-2', labels: { 'topology.kubernetes.io/zone': 'zone-b' } });
    process.env.KUBERNETES_SERVICE_HOST = '127.0.0.1';
    process.env.KUBERNETES_SERVICE_PORT = String(api.listeningPort);
  });

  afterAll(async () => {
    await api.stop();
    if (savedEnv.host === undefined) delete process.env.KUBERNETES_SERVICE_HOST;
    else process.env.KUBERNETES_SERVICE_HOST = savedEnv.host;
    if (savedEnv.port === undefined) delete process.env.KUBERNETES_SERVICE_PORT;
    else process.env.KUBERNETES_SERVICE_PORT = savedEnv.port;
  });

  it('uses the pod service account when no kubeconfig is given', async () => {
    const kube = createKubeClient({ logger: captureLogger().logger, inClusterRoot: root });
    expect(kube.enabled).toBe(true);
    expect(kube.configSource).toBe('in-cluster');
    expect(kube.server).toBe(`https://127.0.0.1:${api.listeningPort}`);
    expect(await kube.readNodeTopology('worker-2', ['topology.kubernetes.io/zone'])).toEqual({
      'topology.kubernetes.io/zone': 'zone-b',
    });
    expect(api.requests[0]!.headers.authorization).toBe(`Bearer ${TOKEN}-sa`);
  });

  it('never repeats the token in an error, even when the token file is malformed', async () => {
    const badRoot = join(workDir, 'pod-root-bad');
    const saDir = join(badRoot, 'var/run/secrets/kubernetes.io/serviceaccount');
    await mkdir(saDir, { recursive: true });
    await writeFile(join(saDir, 'ca.crt'), tls.cert);
    await writeFile(join(saDir, 'token'), `${TOKEN}-sa\n`); // a header value may not end in a newline
    const { logger, lines } = captureLogger();
    const kube = createKubeClient({ logger, inClusterRoot: badRoot });
    const err = await expectKubeError(kube.readNodeTopology('worker-2', []), 'Rejected');
    expect(err.message).toContain('[REDACTED]');
    expect(err.message).not.toContain(TOKEN);
    expect(err.cause).toBeUndefined();
    expect(lines.join('')).not.toContain(TOKEN);
  });
});
