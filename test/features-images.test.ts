// Copy image to volume, end to end over gRPC: CreateVolume with a StorageClass imageSource or a claim's
// annotation (read through the in-process fake Kubernetes API, Events recorded there), images served over
// http on 127.0.0.1 or read from the back end's image directory, raw and qcow2, checksums, failures that
// leave nothing behind, and the driver's export command to read every volume back byte for byte.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure, settle, status } from './support/csi-client.js';
import { FakeKubeApi, writeKubeconfig } from './support/fake-kube-api.js';
import { blockCap, emulatorPid, MiB, pattern, runDriverCli, sha256, sha256File } from './support/features.js';
import { serveImages, type ImageServer } from './support/image-server.js';
import { startStack, type Stack } from './support/stack.js';
import { backendVolume, backendVolumeNames, vbsRequest } from './support/vbs.js';
import { projectRoot } from '../src/util/paths.js';

const SOURCE = 'sdshypervisor.csi/image-source';
const CHECKSUM = 'sdshypervisor.csi/image-checksum';
const NS = 'tenant-a';

let stack: Stack;
let api: FakeKubeApi;
let web: ImageServer;
let work: string;
let images: string;
let seq = 0;

/** The image everything is checked against: 24 MiB, data at the start, the middle and the end, holes between. */
const IMAGE = Buffer.alloc(24 * MiB);
pattern(MiB, 'image-head').copy(IMAGE, 0);
pattern(3 * MiB + 123, 'image-middle').copy(IMAGE, 12 * MiB);
pattern(4096, 'image-tail').copy(IMAGE, 24 * MiB - 4096);
/** A second image, for precedence. */
const OTHER = pattern(2 * MiB, 'other-image');

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'features-images-'));
  images = join(work, 'images');
  await mkdir(images);
  await writeFile(join(images, 'disk.raw'), IMAGE);
  execFileSync('qemu-img', [
    'convert',
    '-f',
    'raw',
    '-O',
    'qcow2',
    join(images, 'disk.raw'),
    join(images, 'disk.qcow2'),
  ]);
  await writeFile(join(images, 'other.raw'), OTHER);
  // A VMDK header (what `qemu-img create -f vmdk` writes first): a format this VBS does not read.
  await writeFile(join(images, 'disk.vmdk'), Buffer.concat([Buffer.from('KDMV'), Buffer.alloc(MiB - 4, 1)]));
  await writeFile(
    join(images, 'disk.raw.gz'),
    Buffer.concat([Buffer.from([0x1f, 0x8b, 0x08, 0x00]), Buffer.alloc(4096, 2)]),
  );

  web = await serveImages(images, IMAGE);

  const tlsDir = join(dirname(fileURLToPath(import.meta.url)), 'support', 'tls');
  const caFile = join(tlsDir, 'fake-kube-api.crt');
  api = await new FakeKubeApi({
    token: 'controller-token',
    tls: { key: readFileSync(join(tlsDir, 'fake-kube-api.key'), 'utf8'), cert: readFileSync(caFile, 'utf8') },
  }).start();
  const kubeconfig = await writeKubeconfig(work, api.url, 'controller-token', { caFile });
  stack = await startStack({
    mode: 'controller',
    pools: ['pool0:4G'],
    emulatorArgs: ['--image-dir', images, '--image-url-allow', '127.0.0.1'],
    driverArgs: [`--kubeconfig=${kubeconfig}`],
  });
}, 60_000);

afterAll(async () => {
  web?.releaseStall?.();
  await stack?.stop();
  await api?.stop();
  web?.close();
  await rm(work, { recursive: true, force: true });
});

function claim(annotations: Record<string, string> = {}) {
  const name = `claim-${process.pid}-${++seq}`;
  const uid = api.addPvc({ namespace: NS, name, annotations });
  return { name, uid, volumeName: `pvc-${process.pid}-${seq}` };
}

/** What external-provisioner sends for a claim (with --extra-create-metadata). */
function createFor(
  c: { name: string; volumeName: string },
  parameters: Record<string, string>,
  bytes = 64 * MiB,
  timeoutMs?: number,
) {
  return stack.csi.controller.CreateVolume(
    {
      name: c.volumeName,
      volume_capabilities: [blockCap()],
      capacity_range: { required_bytes: String(bytes) },
      parameters: {
        ...parameters,
        'csi.storage.k8s.io/pvc/name': c.name,
        'csi.storage.k8s.io/pvc/namespace': NS,
        'csi.storage.k8s.io/pv/name': c.volumeName,
      },
    },
    timeoutMs !== undefined ? { timeoutMs } : {},
  );
}

function eventsOf(pvcName: string) {
  return api.events
    .filter((e) => (e.object.involvedObject as { name?: string }).name === pvcName)
    .map(
      (e) =>
        e.object as {
          type: string;
          reason: string;
          message: string;
          involvedObject: { kind: string; uid?: string; namespace: string };
        },
    );
}

/** Exports a volume with the driver's command and returns the image file's path. */
async function exportVolume(volumeId: string): Promise<string> {
  const out = join(work, `${volumeId}.raw`);
  const r = await runDriverCli([
    'export',
    '--vbs-url',
    `unix://${stack.vbsSocket}`,
    '--volume',
    volumeId,
    '--out',
    out,
    '--overwrite',
    '--quiet',
  ]);
  expect([r.code, r.stderr]).toEqual([0, '']);
  return out;
}

/** The first `image.length` bytes of the volume are the image, the rest zeros. */
async function expectVolumeHolds(volumeId: string, image: Buffer, volumeBytes: number) {
  const out = await exportVolume(volumeId);
  expect(statSync(out).size).toBe(volumeBytes);
  expect(await sha256File(out, image.length)).toBe(sha256(image));
  const rest = readFileSync(out).subarray(image.length);
  expect(rest.every((b) => b === 0)).toBe(true);
  await rm(out);
}

function poolTmp(): string[] {
  return readdirSync(join(stack.emulatorDataDir, 'pools', 'pool0', '.tmp'));
}

describe('copy image to volume through CreateVolume', () => {
  it('imports the StorageClass imageSource (a raw file in the image directory), checksum verified, byte for byte', async () => {
    const c = claim();
    const res = await createFor(c, { imageSource: join(images, 'disk.raw'), imageChecksum: `sha256:${sha256(IMAGE)}` });
    expect(res.volume?.capacity_bytes).toBe(String(64 * MiB));
    expect(await backendVolume(stack.vbsSocket, c.volumeName)).toMatchObject({
      src_type: 'image',
      status: '1',
      vol_size: '64',
    });
    await expectVolumeHolds(c.volumeName, IMAGE, 64 * MiB);
    // Events go to the claim for class images too.
    expect(eventsOf(c.name).map((e) => [e.type, e.reason])).toEqual([['Normal', 'ImageImported']]);
    await stack.csi.controller.DeleteVolume({ volume_id: c.volumeName });
  });

  it("imports a claim's annotated http image (raw, then qcow2) and records ImageImported on the claim", async () => {
    for (const [file, sum] of [
      ['disk.raw', sha256(IMAGE)],
      ['disk.qcow2', sha256(readFileSync(join(images, 'disk.qcow2')))],
    ] as const) {
      const c = claim({ [SOURCE]: `${web.base}/${file}`, [CHECKSUM]: `sha256:${sum}` });
      await createFor(c, { allowPvcImageSource: 'true' });
      await expectVolumeHolds(c.volumeName, IMAGE, 64 * MiB);
      const [event, ...more] = eventsOf(c.name);
      expect(more).toEqual([]);
      expect(event).toMatchObject({
        type: 'Normal',
        reason: 'ImageImported',
        involvedObject: { kind: 'PersistentVolumeClaim', uid: c.uid, namespace: NS },
      });
      expect(event!.message).toContain(`${web.base}/${file}`);
      expect(event!.message).toContain(c.volumeName);
      // A repeat of the call (the provisioner retries) is the same volume, without a second import.
      await createFor(c, { allowPvcImageSource: 'true' });
      expect(eventsOf(c.name)).toHaveLength(1);
      await stack.csi.controller.DeleteVolume({ volume_id: c.volumeName });
    }
  });

  it("takes the claim's annotation over the class's imageSource, and ignores the class's checksum for it", async () => {
    const c = claim({ [SOURCE]: join(images, 'other.raw') });
    await createFor(
      c,
      { allowPvcImageSource: 'true', imageSource: join(images, 'disk.raw'), imageChecksum: `sha256:${sha256(IMAGE)}` },
      8 * MiB,
    );
    await expectVolumeHolds(c.volumeName, OTHER, 8 * MiB);
    await stack.csi.controller.DeleteVolume({ volume_id: c.volumeName });
  });

  it('refuses an annotated claim in a class that does not allow claim images, with a Warning event and no volume', async () => {
    const classes: Array<Record<string, string>> = [
      {},
      { allowPvcImageSource: 'false' },
      { imageSource: join(images, 'disk.raw') },
    ];
    for (const parameters of classes) {
      const c = claim({ [SOURCE]: '/etc/shadow' });
      const f = await failure(createFor(c, parameters));
      expect(f.code).toBe(status.INVALID_ARGUMENT);
      expect(f.message).toContain(`annotation ${SOURCE} of PVC ${NS}/${c.name}`);
      expect(f.message).toContain('allowPvcImageSource');
      expect(eventsOf(c.name).map((e) => [e.type, e.reason])).toEqual([['Warning', 'ImageImportFailed']]);
      expect(await backendVolume(stack.vbsSocket, c.volumeName)).toBeUndefined();
    }
  });

  it('fails cleanly on a checksum mismatch, an unreadable format or a path outside the image directories: INVALID_ARGUMENT, a Warning event, nothing left', async () => {
    const cases: Array<[Record<string, string>, RegExp]> = [
      [{ [SOURCE]: `${web.base}/disk.qcow2`, [CHECKSUM]: `sha256:${'0'.repeat(64)}` }, /checksum mismatch/],
      [{ [SOURCE]: `${web.base}/disk.raw`, [CHECKSUM]: `md5:${'0'.repeat(32)}` }, /checksum mismatch/],
      [{ [SOURCE]: join(images, 'disk.vmdk') }, /the image is vmdk, which this VBS cannot read/],
      [{ [SOURCE]: `${web.base}/disk.raw.gz` }, /the image is gzip-compressed/],
      [{ [SOURCE]: '/etc/hostname' }, /outside the image directories/],
      [{ [SOURCE]: `${web.base}/missing.raw` }, /HTTP 404/],
    ];
    const before = await backendVolumeNames(stack.vbsSocket);
    for (const [annotations, why] of cases) {
      const c = claim(annotations);
      const f = await failure(createFor(c, { allowPvcImageSource: 'true' }));
      expect({ annotations, code: f.codeName }).toEqual({ annotations, code: 'INVALID_ARGUMENT' });
      expect(f.message).toMatch(why);
      expect(f.message).toContain(`annotation ${SOURCE} of PVC ${NS}/${c.name}`);
      const events = eventsOf(c.name);
      expect(events.map((e) => [e.type, e.reason])).toEqual([['Warning', 'ImageImportFailed']]);
      expect(events[0]!.message).toMatch(why);
    }
    expect(await backendVolumeNames(stack.vbsSocket)).toEqual(before);
    expect(poolTmp()).toEqual([]);
  });

  it('refuses a bad annotation value before any import, naming the annotation', async () => {
    const c = claim({ [SOURCE]: 'ftp://images.example/disk.raw' });
    const f = await failure(createFor(c, { allowPvcImageSource: 'true' }));
    expect(f.code).toBe(status.INVALID_ARGUMENT);
    expect(f.message).toContain(SOURCE);
    expect(eventsOf(c.name).map((e) => e.reason)).toEqual(['ImageImportFailed']);
  });

  it('makes a plain volume for a claim without the annotation, and records nothing', async () => {
    const c = claim();
    await createFor(c, { allowPvcImageSource: 'true' }, 8 * MiB);
    expect(await backendVolume(stack.vbsSocket, c.volumeName)).toMatchObject({ src_type: 'none' });
    expect(eventsOf(c.name)).toEqual([]);
    await stack.csi.controller.DeleteVolume({ volume_id: c.volumeName });
  });

  it('never blocks on the API server: a claim read that hangs ends the call at the client deadline', async () => {
    const c = claim({ [SOURCE]: `${web.base}/disk.raw` });
    api.inject('pvc', { delayMs: Infinity });
    const started = Date.now();
    const f = await failure(createFor(c, { allowPvcImageSource: 'true' }));
    expect(f.codeName).toBe('DEADLINE_EXCEEDED');
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(await backendVolume(stack.vbsSocket, c.volumeName)).toBeUndefined();
    // A class that does not take claim images does not need the claim: it provisions anyway.
    const plain = claim();
    api.inject('pvc', { delayMs: Infinity });
    await createFor(plain, {}, 8 * MiB);
    expect(await backendVolume(stack.vbsSocket, plain.volumeName)).toMatchObject({ src_type: 'none' });
    await stack.csi.controller.DeleteVolume({ volume_id: plain.volumeName });
  });

  it('a retry after the first call gave up waits for the running import and records the outcome once', async () => {
    const c = claim({ [SOURCE]: `${web.base}/stall` });
    web.releaseStall = undefined;
    const first = await failure(createFor(c, { allowPvcImageSource: 'true' }, 64 * MiB, 1_500));
    expect(first.codeName).toBe('DEADLINE_EXCEEDED');
    expect(await backendVolume(stack.vbsSocket, c.volumeName)).toMatchObject({
      status: '10',
      src_type: 'image',
      job_id: expect.stringMatching(/^job-/),
    });
    expect(eventsOf(c.name)).toEqual([]);
    setTimeout(() => web.releaseStall?.(), 500);
    let done: Awaited<ReturnType<typeof settle>> | undefined;
    for (let attempt = 0; attempt < 20; attempt++) {
      done = await settle(createFor(c, { allowPvcImageSource: 'true' }));
      if (done.ok || done.codeName !== 'ABORTED') break; // ABORTED: the first call had not let go yet
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(done?.ok).toBe(true);
    expect(eventsOf(c.name).map((e) => [e.type, e.reason])).toEqual([['Normal', 'ImageImported']]);
    await expectVolumeHolds(c.volumeName, IMAGE, 64 * MiB);
    await stack.csi.controller.DeleteVolume({ volume_id: c.volumeName });
  });

  it('streams: a 1 GiB image goes through the emulator without its memory growing with the image', async () => {
    const big = join(images, 'big.raw');
    await writeFile(big, '');
    await truncate(big, 1024 * MiB);
    execFileSync('dd', ['if=/dev/urandom', `of=${big}`, 'bs=1M', 'count=4', 'seek=512', 'conv=notrunc', 'status=none']);
    const c = claim();
    await createFor(c, { imageSource: big }, 1024 * MiB);
    // The peak resident memory of the emulator's whole life so far, this import included.
    const hwmKiB = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${emulatorPid(stack)}/status`, 'utf8'))![1]);
    expect(hwmKiB * 1024).toBeLessThan(320 * MiB);
    const record = await backendVolume(stack.vbsSocket, c.volumeName);
    expect(record).toMatchObject({ vol_size: '1024', src_type: 'image' });
    expect(Number(record!.alloc_size)).toBeLessThanOrEqual(8); // sparse: the holes stayed holes
    await stack.csi.controller.DeleteVolume({ volume_id: c.volumeName });
    await rm(big);
  });
});

describe('a back end without qemu-img (--qemu-img none)', () => {
  let plain: Stack;
  beforeAll(async () => {
    plain = await startStack({
      mode: 'controller',
      pools: ['pool0:2G'],
      emulatorArgs: ['--image-dir', images, '--image-url-allow', '127.0.0.1', '--qemu-img', 'none'],
    });
  }, 60_000);
  afterAll(async () => {
    await plain?.stop();
  });

  it('refuses qcow2 with a clear error and nothing made; raw imports and exports still work', async () => {
    expect((await vbsRequest(plain.vbsSocket, 'QUERY_CAPABILITY_REQ')).all('capability')).not.toContain('image_qcow2');
    expect((await vbsRequest(stack.vbsSocket, 'QUERY_CAPABILITY_REQ')).all('capability')).toContain('image_qcow2');
    expect((await vbsRequest(plain.vbsSocket, 'QUERY_CAPABILITY_REQ')).all('image_dir')).toEqual([images]);

    const ctl = plain.csi.controller;
    const qcow = await failure(
      ctl.CreateVolume({
        name: 'pvc-q',
        volume_capabilities: [blockCap()],
        parameters: { imageSource: join(images, 'disk.qcow2') },
      }),
    );
    expect(qcow.code).toBe(status.INVALID_ARGUMENT);
    expect(qcow.message).toMatch(/qcow2 image needs qemu-img, and this VBS has none/);
    expect(await backendVolume(plain.vbsSocket, 'pvc-q')).toBeUndefined();

    await ctl.CreateVolume({
      name: 'pvc-r',
      volume_capabilities: [blockCap()],
      parameters: { imageSource: join(images, 'disk.raw') },
    });
    const out = join(work, 'no-qemu.raw');
    const exportR = (to: string, ...extra: string[]) =>
      runDriverCli(['export', '--vbs-url', `unix://${plain.vbsSocket}`, '--volume', 'pvc-r', '--out', to, ...extra]);
    const raw = await exportR(out, '--quiet');
    expect([raw.code, raw.stderr]).toEqual([0, '']);
    expect(await sha256File(out)).toBe(sha256(IMAGE));
    const q = await exportR(join(work, 'no-qemu.qcow2'), '--format', 'qcow2');
    expect(q.code).toBe(1);
    expect(q.stderr).toMatch(/writing a qcow2 image needs qemu-img/);
    expect(existsSync(join(work, 'no-qemu.qcow2'))).toBe(false);
    await ctl.DeleteVolume({ volume_id: 'pvc-r' });
  });

  it('the emulator refuses a --qemu-img that is not an executable, naming the setting', () => {
    const emulator = join(projectRoot(), 'dist', 'emulator', 'main.js');
    const r = spawnSync(
      process.execPath,
      [emulator, '--data-dir', join(work, 'never'), '--qemu-img', join(work, 'no-such-qemu-img')],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--qemu-img \(SDS_QEMU_IMG\): is not an executable file/);
    expect(existsSync(join(work, 'never'))).toBe(false);
  });
});
