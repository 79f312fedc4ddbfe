// Conformance of the CSI Controller service: the real driver process (--mode=controller) against the real
// emulator process, driven over the CSI unix socket by a real gRPC client. Rules: docs/csi-spec-notes.md
// §1 and §3. No handler is called in process.
import { randomUUID } from 'node:crypto';
import { createHash } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXTENDED_CONTROLLER_CAPABILITIES } from '../src/controller/original.js';
import type { CreateVolumeRequest } from '../src/generated/csi/v1/CreateVolumeRequest.js';
import type { VolumeCapability } from '../src/generated/csi/v1/VolumeCapability.js';
import { failure, settle, status, type ControllerApi } from './support/csi-client.js';
import { internalAnswers, startStack, type Stack } from './support/stack.js';
import { backendVolume, backendVolumeNames, vbsRequest } from './support/vbs.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const HOST_KEY = 'topology.sdshypervisor.io/host';
const POOL_BYTES = 4 * GiB;

const mountCap = (
  mode: NonNullable<VolumeCapability['access_mode']>['mode'] = 'SINGLE_NODE_WRITER',
  fsType = 'ext4',
): VolumeCapability => ({
  mount: { fs_type: fsType },
  access_mode: { mode },
});
const blockCap = (
  mode: NonNullable<VolumeCapability['access_mode']>['mode'] = 'SINGLE_NODE_WRITER',
): VolumeCapability => ({
  block: {},
  access_mode: { mode },
});
const segment = (host: string, extra: Record<string, string> = {}) => ({ segments: { [HOST_KEY]: host, ...extra } });

let stack: Stack;
let ctl: ControllerApi;
const unique = (prefix = 'pvc') => `${prefix}-${randomUUID()}`;

async function createVolume(name = unique(), extra: Record<string, unknown> = {}) {
  const res = await ctl.CreateVolume({
    name,
    volume_capabilities: [mountCap()],
    capacity_range: { required_bytes: String(16 * MiB) },
    ...extra,
  });
  return res.volume!;
}

/** A CreateVolume of a mount volume with these fields that fails: its error. */
const createRefused = (extra: Record<string, unknown>) =>
  failure(ctl.CreateVolume({ name: unique(), volume_capabilities: [mountCap()], ...extra }));

beforeAll(async () => {
  stack = await startStack({
    mode: 'controller',
    level: 'extended',
    extraHosts: ['host-b', 'host-c'],
    pools: [`pool0:${POOL_BYTES / GiB}G`],
  });
  ctl = stack.csi.controller;
});

afterAll(async () => {
  await stack?.stop();
});

describe('ControllerGetCapabilities', () => {
  it('advertises exactly the RPCs the controller implements', async () => {
    const res = await ctl.ControllerGetCapabilities({});
    // The list is the controller's own (src/controller/original.ts); the RPCs behind it are each tested below.
    expect(res.capabilities.map((c) => c.rpc?.type).sort()).toEqual([...EXTENDED_CONTROLLER_CAPABILITIES].sort());
  });
});

describe('CreateVolume', () => {
  it('refuses missing or malformed required fields with INVALID_ARGUMENT', async () => {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['no name', { volume_capabilities: [mountCap()] }, /name is required/],
      ['no capabilities', { name: unique() }, /volume_capabilities is required/],
      [
        'a capability without access mode',
        { name: unique(), volume_capabilities: [{ mount: {} }] },
        /access_mode is required/,
      ],
      [
        'a capability without access type',
        { name: unique(), volume_capabilities: [{ access_mode: { mode: 'SINGLE_NODE_WRITER' } }] },
        /access_type/,
      ],
      [
        'MULTI_NODE_MULTI_WRITER',
        { name: unique(), volume_capabilities: [mountCap('MULTI_NODE_MULTI_WRITER')] },
        /MULTI_NODE_MULTI_WRITER is not supported/,
      ],
      [
        'MULTI_NODE_SINGLE_WRITER',
        { name: unique(), volume_capabilities: [blockCap('MULTI_NODE_SINGLE_WRITER')] },
        /MULTI_NODE_SINGLE_WRITER is not supported/,
      ],
      [
        'an unsupported fs_type',
        { name: unique(), volume_capabilities: [mountCap('SINGLE_NODE_WRITER', 'btrfs')] },
        /fs_type "btrfs"/,
      ],
      ['a name with a control character', { name: 'pvc-\u0007bell', volume_capabilities: [mountCap()] }, /U\+0007/],
      ['a name of 129 bytes', { name: 'n'.repeat(129), volume_capabilities: [mountCap()] }, /129 bytes/],
      [
        'a negative size',
        { name: unique(), volume_capabilities: [mountCap()], capacity_range: { required_bytes: '-1' } },
        /must not be negative/,
      ],
      [
        'a snapshot source without id',
        { name: unique(), volume_capabilities: [mountCap()], volume_content_source: { snapshot: {} } },
        /snapshot_id is required/,
      ],
    ];
    for (const [what, request, message] of cases) {
      const f = await failure(ctl.CreateVolume(request));
      expect({ what, code: f.codeName }).toEqual({ what, code: 'INVALID_ARGUMENT' });
      expect(f.message).toMatch(message);
    }
  });

  it('names an unknown StorageClass parameter or a bad value, and accepts Kubernetes metadata keys', async () => {
    const unknown = await failure(
      ctl.CreateVolume({ name: unique(), volume_capabilities: [mountCap()], parameters: { replicas: '3' } }),
    );
    expect(unknown.code).toBe(status.INVALID_ARGUMENT);
    expect(unknown.message).toContain('"replicas"');
    for (const [key, value] of [
      ['maxIOPS', 'lots'],
      ['thin', 'maybe'],
      ['cloneMode', 'deep'],
      ['cache', 'all'],
      ['qosLevel', 'max'],
      ['fsType', 'ntfs'],
      ['pool', 'a/b'],
    ]) {
      const f = await failure(
        ctl.CreateVolume({ name: unique(), volume_capabilities: [mountCap()], parameters: { [key!]: value! } }),
      );
      expect(f.code).toBe(status.INVALID_ARGUMENT);
      expect(f.message).toContain(`parameters.${key}`);
    }
    const badMutable = await failure(
      ctl.CreateVolume({ name: unique(), volume_capabilities: [mountCap()], mutable_parameters: { pool: 'pool0' } }),
    );
    expect(badMutable.message).toMatch(/mutable_parameters: unknown key "pool"/);
    const ok = await createVolume(unique(), {
      parameters: {
        'csi.storage.k8s.io/pvc/name': 'data',
        'csi.storage.k8s.io/pvc/namespace': 'default',
        'csi.storage.k8s.io/pv/name': 'pv',
        fsType: 'xfs',
      },
      volume_capabilities: [{ mount: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
    });
    expect(ok.volume_context).toEqual({ fsType: 'xfs' });
  });

  it('provisions 1 GiB by default, rounds up to whole MiB and honours limit_bytes', async () => {
    expect((await ctl.CreateVolume({ name: unique(), volume_capabilities: [mountCap()] })).volume?.capacity_bytes).toBe(
      String(GiB),
    );
    // A filesystem volume is at least its filesystem's minimum (ext4: 8 MiB); above it, whole MiB.
    expect((await createVolume(unique(), { capacity_range: { required_bytes: '1' } })).capacity_bytes).toBe(
      String(8 * MiB),
    );
    expect(
      (await createVolume(unique(), { capacity_range: { required_bytes: String(9 * MiB + 1) } })).capacity_bytes,
    ).toBe(String(10 * MiB));
    expect(
      (
        await createVolume(unique(), {
          capacity_range: { required_bytes: String(8 * MiB), limit_bytes: String(8 * MiB) },
        })
      ).capacity_bytes,
    ).toBe(String(8 * MiB));
    expect(
      (await createVolume(unique(), { capacity_range: { limit_bytes: String(20 * MiB + 7) } })).capacity_bytes,
    ).toBe(String(20 * MiB));
    for (const range of [
      { required_bytes: String(10 * MiB), limit_bytes: String(5 * MiB) },
      { required_bytes: String(MiB + 1), limit_bytes: String(MiB + 100) },
      { limit_bytes: '4096' },
      { required_bytes: String(POOL_BYTES * 4 + GiB) },
      { required_bytes: '9223372036854775807' },
    ]) {
      const f = await failure(
        ctl.CreateVolume({ name: unique(), volume_capabilities: [mountCap()], capacity_range: range }),
      );
      expect({ range, code: f.codeName }).toEqual({ range, code: 'OUT_OF_RANGE' });
    }
    // A thick volume can never be larger than the pool itself.
    const thick = await failure(
      ctl.CreateVolume({
        name: unique(),
        volume_capabilities: [mountCap()],
        parameters: { thin: 'false' },
        capacity_range: { required_bytes: String(POOL_BYTES + GiB) },
      }),
    );
    expect(thick.code).toBe(status.OUT_OF_RANGE);
  });

  it('answers RESOURCE_EXHAUSTED when the pool cannot hold the volume now', async () => {
    const cap = await ctl.GetCapacity({});
    const available = Number(cap.available_capacity);
    const name = unique();
    const big = await ctl.CreateVolume({
      name,
      volume_capabilities: [blockCap()],
      capacity_range: { required_bytes: String(available - 64 * MiB) },
    });
    try {
      const f = await failure(
        ctl.CreateVolume({
          name: unique(),
          volume_capabilities: [blockCap()],
          capacity_range: { required_bytes: String(128 * MiB) },
        }),
      );
      expect(f.code).toBe(status.RESOURCE_EXHAUSTED);
    } finally {
      await ctl.DeleteVolume({ volume_id: big.volume!.volume_id });
    }
  });

  it('is idempotent by name and refuses incompatible repeats with ALREADY_EXISTS', async () => {
    const name = unique();
    const request = {
      name,
      volume_capabilities: [mountCap()],
      capacity_range: { required_bytes: String(32 * MiB) },
      parameters: { maxIOPS: '100' },
    };
    const first = await ctl.CreateVolume(request);
    const again = await ctl.CreateVolume(request);
    expect(again).toEqual(first);
    // A range that includes the existing size is compatible.
    expect(
      (
        await ctl.CreateVolume({
          ...request,
          capacity_range: { required_bytes: String(16 * MiB), limit_bytes: String(64 * MiB) },
        })
      ).volume?.volume_id,
    ).toBe(name);
    const changes: Array<Partial<CreateVolumeRequest>> = [
      { capacity_range: { required_bytes: String(64 * MiB) } },
      { capacity_range: { required_bytes: String(8 * MiB), limit_bytes: String(16 * MiB) } },
      { parameters: { maxIOPS: '200' } },
      { parameters: { maxIOPS: '100', thin: 'false' } },
      { parameters: { maxIOPS: '100', cache: 'read' } },
      { volume_content_source: { volume: { volume_id: unique() } } },
    ];
    for (const change of changes) {
      const f = await failure(ctl.CreateVolume({ ...request, ...change }));
      expect({ change, code: f.codeName }).toEqual({ change, code: 'ALREADY_EXISTS' });
      expect(f.message).toContain(name);
    }
    expect((await backendVolumeNames(stack.vbsSocket)).filter((n) => n === name)).toHaveLength(1);
  });

  it('maps any CSI name to a stable back-end id', async () => {
    const longName = 'Ω'.repeat(64); // 128 bytes of UTF-8
    const a = await createVolume(longName);
    expect(a.volume_id).toMatch(/^H_[0-9a-f]{40}$/);
    expect((await createVolume(longName)).volume_id).toBe(a.volume_id);
    const kube = unique();
    expect((await createVolume(kube)).volume_id).toBe(kube);
  });

  it('applies QoS and cache parameters, mutable_parameters taking precedence', async () => {
    const v = await createVolume(unique(), {
      parameters: { maxIOPS: '500', maxMBps: '40', qosLevel: 'low', cache: 'read' },
      mutable_parameters: { maxIOPS: '900' },
    });
    const record = await backendVolume(stack.vbsSocket, v.volume_id);
    expect(record).toMatchObject({
      max_iops: '900',
      max_mbps: '40',
      IOPRIORITY: '1',
      cache_policy: 'read',
      thin_flag: '1',
    });
    const thick = await createVolume(unique(), { parameters: { thin: 'false' } });
    expect((await backendVolume(stack.vbsSocket, thick.volume_id))?.thin_flag).toBe('0');
  });

  it('places volumes by topology and reports the hosts they are reachable from', async () => {
    const v = await createVolume(unique(), {
      accessibility_requirements: {
        requisite: [segment('host-b', { 'topology.kubernetes.io/zone': 'z1' })],
        preferred: [segment('host-b')],
      },
    });
    expect(v.accessible_topology.map((t) => t.segments[HOST_KEY])).toContain('host-b');
    // Segments without our key neither select nor exclude a pool.
    await createVolume(unique(), {
      accessibility_requirements: { requisite: [{ segments: { 'topology.kubernetes.io/zone': 'z9' } }], preferred: [] },
    });
    const f = await failure(
      ctl.CreateVolume({
        name: unique(),
        volume_capabilities: [mountCap()],
        accessibility_requirements: { requisite: [segment('host-nowhere')], preferred: [] },
      }),
    );
    expect(f.code).toBe(status.RESOURCE_EXHAUSTED);
    const unknownPool = await failure(
      ctl.CreateVolume({ name: unique(), volume_capabilities: [mountCap()], parameters: { pool: 'pool9' } }),
    );
    expect(unknownPool.code).toBe(status.INVALID_ARGUMENT);
    expect(unknownPool.message).toContain('parameters.pool');
  });

  it('creates from a snapshot (linked or full), honouring the size and the source', async () => {
    const source = await createVolume(unique(), { capacity_range: { required_bytes: String(32 * MiB) } });
    const snap = (await ctl.CreateSnapshot({ name: unique('snap'), source_volume_id: source.volume_id })).snapshot!;
    const src = { snapshot: { snapshot_id: snap.snapshot_id } };

    const linked = await ctl.CreateVolume({
      name: unique(),
      volume_capabilities: [mountCap()],
      volume_content_source: src,
    });
    expect(linked.volume?.capacity_bytes).toBe(String(32 * MiB));
    expect(linked.volume?.content_source?.snapshot?.snapshot_id).toBe(snap.snapshot_id);
    expect(await backendVolume(stack.vbsSocket, linked.volume!.volume_id)).toMatchObject({
      src_type: 'snapshot',
      src_name: snap.snapshot_id,
      clone_type: 'linked',
    });

    const full = await ctl.CreateVolume({
      name: unique(),
      volume_capabilities: [mountCap()],
      volume_content_source: src,
      parameters: { cloneMode: 'full' },
      capacity_range: { required_bytes: String(48 * MiB) },
    });
    expect(full.volume?.capacity_bytes).toBe(String(48 * MiB));
    expect((await backendVolume(stack.vbsSocket, full.volume!.volume_id))?.clone_type).toBe('full');

    // Smaller than the snapshot, asked for or as the limit.
    for (const capacity_range of [{ required_bytes: String(16 * MiB) }, { limit_bytes: String(16 * MiB) }]) {
      const smaller = await createRefused({ volume_content_source: src, capacity_range });
      expect(smaller.code, JSON.stringify(capacity_range)).toBe(status.OUT_OF_RANGE);
    }
    for (const id of ['snapshot-does-not-exist', '../../etc/passwd', 'x'.repeat(300)]) {
      const missing = await createRefused({ volume_content_source: { snapshot: { snapshot_id: id } } });
      expect(missing.code).toBe(status.NOT_FOUND);
    }
  });

  it('clones a volume and answers NOT_FOUND for a missing source volume', async () => {
    const source = await createVolume(unique(), { capacity_range: { required_bytes: String(24 * MiB) } });
    const clone = await ctl.CreateVolume({
      name: unique(),
      volume_capabilities: [blockCap()],
      volume_content_source: { volume: { volume_id: source.volume_id } },
    });
    expect(clone.volume?.content_source?.volume?.volume_id).toBe(source.volume_id);
    expect(clone.volume?.capacity_bytes).toBe(String(24 * MiB));
    expect(await backendVolume(stack.vbsSocket, clone.volume!.volume_id)).toMatchObject({
      src_type: 'volume',
      src_name: source.volume_id,
    });
    const missing = await failure(
      ctl.CreateVolume({
        name: unique(),
        volume_capabilities: [blockCap()],
        volume_content_source: { volume: { volume_id: 'pvc-missing' } },
      }),
    );
    expect(missing.code).toBe(status.NOT_FOUND);
  });

  it('imports an image for the imageSource parameter, checking its checksum', async () => {
    const data = Buffer.alloc(3 * MiB + 5, 0);
    data.write('sdshypervisor image payload', 1 * MiB);
    const image = join(stack.emulatorDataDir, 'images', 'base.raw');
    await writeFile(image, data);
    const sha256 = createHash('sha256').update(data).digest('hex');
    const name = unique();
    const request = {
      name,
      volume_capabilities: [blockCap()],
      parameters: { imageSource: image, imageChecksum: `sha256:${sha256}` },
    };
    const created = await ctl.CreateVolume(request);
    expect(created.volume?.capacity_bytes).toBe(String(4 * MiB)); // the image's size rounded up to whole MiB
    expect(await backendVolume(stack.vbsSocket, name)).toMatchObject({ src_type: 'image', status: '1' });
    expect(await ctl.CreateVolume(request)).toEqual(created);

    const wrongSum = await failure(
      ctl.CreateVolume({
        ...request,
        name: unique(),
        parameters: { imageSource: image, imageChecksum: `sha256:${'0'.repeat(64)}` },
      }),
    );
    expect(wrongSum.code).toBe(status.INVALID_ARGUMENT);
    expect(wrongSum.message).toMatch(/imageSource/);
    const outside = await failure(
      ctl.CreateVolume({ ...request, name: unique(), parameters: { imageSource: '/etc/hostname' } }),
    );
    expect(outside.code).toBe(status.INVALID_ARGUMENT);
    const names = await backendVolumeNames(stack.vbsSocket);
    expect(names.filter((n) => n === name)).toHaveLength(1);
    expect(names.length).toBe(new Set(names).size);
  });

  it('makes one volume of two concurrent calls with one name', async () => {
    for (let round = 0; round < 5; round++) {
      const name = unique();
      const request = { name, volume_capabilities: [mountCap()], capacity_range: { required_bytes: String(8 * MiB) } };
      const results = await Promise.all([settle(ctl.CreateVolume(request)), settle(ctl.CreateVolume(request))]);
      for (const r of results) if (!r.ok) expect(r.codeName).toBe('ABORTED');
      expect(results.some((r) => r.ok)).toBe(true);
      expect((await backendVolumeNames(stack.vbsSocket)).filter((n) => n === name)).toHaveLength(1);
      // The CO's retry then gets the volume.
      expect((await ctl.CreateVolume(request)).volume?.volume_id).toBe(name);
    }
  });

  it('answers ABORTED while another operation on the same volume is in flight', async () => {
    const existing = await createVolume();
    const name = unique();
    const thaw = stack.freezeEmulator();
    let pending: ReturnType<typeof settle> | undefined;
    let pendingOther: ReturnType<typeof settle> | undefined;
    try {
      pending = settle(
        ctl.CreateVolume({
          name,
          volume_capabilities: [mountCap()],
          capacity_range: { required_bytes: String(8 * MiB) },
        }),
      );
      pendingOther = settle(
        ctl.ControllerExpandVolume({
          volume_id: existing.volume_id,
          capacity_range: { required_bytes: String(32 * MiB) },
        }),
      );
      await new Promise((r) => setTimeout(r, 300));
      const second = await failure(ctl.CreateVolume({ name, volume_capabilities: [mountCap()] }));
      expect(second.code).toBe(status.ABORTED);
      expect(second.message).toBe(`an operation on volume ${name} is already in progress`);
      expect((await failure(ctl.DeleteVolume({ volume_id: name }))).code).toBe(status.ABORTED);
      expect(
        (
          await failure(
            ctl.ControllerPublishVolume({
              volume_id: existing.volume_id,
              node_id: 'host-a',
              volume_capability: mountCap(),
            }),
          )
        ).code,
      ).toBe(status.ABORTED);
    } finally {
      thaw();
    }
    expect((await pending!).ok).toBe(true);
    expect((await pendingOther!).ok).toBe(true);
    expect((await ctl.CreateVolume({ name, volume_capabilities: [mountCap()] })).volume?.volume_id).toBe(name);
  });
});

describe('DeleteVolume', () => {
  it('needs a volume_id, deletes, and is idempotent for unknown and impossible ids', async () => {
    expect((await failure(ctl.DeleteVolume({ volume_id: '' }))).code).toBe(status.INVALID_ARGUMENT);
    const v = await createVolume();
    await ctl.DeleteVolume({ volume_id: v.volume_id });
    expect(await backendVolume(stack.vbsSocket, v.volume_id)).toBeUndefined();
    await ctl.DeleteVolume({ volume_id: v.volume_id });
    await ctl.DeleteVolume({ volume_id: 'pvc-never-existed' });
    await ctl.DeleteVolume({ volume_id: '../../etc/passwd' });
    await ctl.DeleteVolume({ volume_id: 'x'.repeat(10_000) });
  });

  it('deletes a published (mapped, not attached) volume, and keeps its snapshots listed and usable', async () => {
    const v = await createVolume();
    await ctl.ControllerPublishVolume({ volume_id: v.volume_id, node_id: 'host-a', volume_capability: mountCap() });
    const snap = (await ctl.CreateSnapshot({ name: unique('snap'), source_volume_id: v.volume_id })).snapshot!;
    await ctl.DeleteVolume({ volume_id: v.volume_id });
    const listed = await ctl.ListSnapshots({ snapshot_id: snap.snapshot_id });
    expect(listed.entries.map((e) => e.snapshot?.source_volume_id)).toEqual([v.volume_id]);
    const restored = await ctl.CreateVolume({
      name: unique(),
      volume_capabilities: [mountCap()],
      volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } },
    });
    expect(restored.volume?.capacity_bytes).toBe(v.capacity_bytes);
  });
});

describe('ControllerPublishVolume / ControllerUnpublishVolume', () => {
  it('refuses missing fields with INVALID_ARGUMENT', async () => {
    const v = await createVolume();
    expect(
      (await failure(ctl.ControllerPublishVolume({ node_id: 'host-a', volume_capability: mountCap() }))).code,
    ).toBe(status.INVALID_ARGUMENT);
    expect(
      (await failure(ctl.ControllerPublishVolume({ volume_id: v.volume_id, volume_capability: mountCap() }))).code,
    ).toBe(status.INVALID_ARGUMENT);
    expect((await failure(ctl.ControllerPublishVolume({ volume_id: v.volume_id, node_id: 'host-a' }))).code).toBe(
      status.INVALID_ARGUMENT,
    );
    expect(
      (
        await failure(
          ctl.ControllerPublishVolume({
            volume_id: v.volume_id,
            node_id: 'host-a',
            volume_capability: mountCap('MULTI_NODE_MULTI_WRITER'),
          }),
        )
      ).code,
    ).toBe(status.INVALID_ARGUMENT);
    expect((await failure(ctl.ControllerUnpublishVolume({ node_id: 'host-a' }))).code).toBe(status.INVALID_ARGUMENT);
  });

  it('answers NOT_FOUND for an unknown volume or node', async () => {
    const v = await createVolume();
    for (const id of ['pvc-missing', '../x']) {
      expect(
        (
          await failure(
            ctl.ControllerPublishVolume({ volume_id: id, node_id: 'host-a', volume_capability: mountCap() }),
          )
        ).code,
      ).toBe(status.NOT_FOUND);
    }
    for (const node of ['host-unknown', 'bad node/id']) {
      expect(
        (
          await failure(
            ctl.ControllerPublishVolume({ volume_id: v.volume_id, node_id: node, volume_capability: mountCap() }),
          )
        ).code,
      ).toBe(status.NOT_FOUND);
    }
  });

  it('publishes idempotently, refuses a second host for single-node modes and an incompatible re-publish', async () => {
    const v = await createVolume();
    const req = { volume_id: v.volume_id, node_id: 'host-a', volume_capability: mountCap() };
    const first = await ctl.ControllerPublishVolume(req);
    expect(first.publish_context).toEqual({ 'sdshypervisor.io/access-mode': 'rw' });
    expect(await ctl.ControllerPublishVolume(req)).toEqual(first);
    const ro = await failure(ctl.ControllerPublishVolume({ ...req, readonly: true }));
    expect(ro.code).toBe(status.ALREADY_EXISTS);
    const elsewhere = await failure(ctl.ControllerPublishVolume({ ...req, node_id: 'host-b' }));
    expect(elsewhere.code).toBe(status.FAILED_PRECONDITION);
    expect(elsewhere.message).toContain('host-a');
    const got = await ctl.ControllerGetVolume({ volume_id: v.volume_id });
    expect(got.status?.published_node_ids).toEqual(['host-a']);
    await ctl.ControllerUnpublishVolume({ volume_id: v.volume_id, node_id: 'host-a' });
    await ctl.ControllerUnpublishVolume({ volume_id: v.volume_id, node_id: 'host-a' });
    expect((await ctl.ControllerGetVolume({ volume_id: v.volume_id })).status?.published_node_ids).toEqual([]);
    // Now host-b may have it, read-only.
    expect((await ctl.ControllerPublishVolume({ ...req, node_id: 'host-b', readonly: true })).publish_context).toEqual({
      'sdshypervisor.io/access-mode': 'ro',
    });
    expect((await backendVolume(stack.vbsSocket, v.volume_id))?.mapped_hosts).toBe('host-b');
  });

  it('publishes MULTI_NODE_READER_ONLY volumes read-only to several hosts and unpublishes from all', async () => {
    const v = await createVolume(unique(), { volume_capabilities: [mountCap('MULTI_NODE_READER_ONLY')] });
    for (const node of ['host-a', 'host-b', 'host-c']) {
      const res = await ctl.ControllerPublishVolume({
        volume_id: v.volume_id,
        node_id: node,
        volume_capability: mountCap('MULTI_NODE_READER_ONLY'),
        readonly: true,
      });
      expect(res.publish_context['sdshypervisor.io/access-mode']).toBe('ro');
    }
    const listed = (await ctl.ListVolumes({})).entries.find((e) => e.volume?.volume_id === v.volume_id);
    expect(listed?.status?.published_node_ids.sort()).toEqual(['host-a', 'host-b', 'host-c']);
    await ctl.ControllerUnpublishVolume({ volume_id: v.volume_id });
    expect((await ctl.ControllerGetVolume({ volume_id: v.volume_id })).status?.published_node_ids).toEqual([]);
  });

  it('treats unpublishing an unknown volume, an unknown node or an unpublished volume as done', async () => {
    const v = await createVolume();
    await ctl.ControllerUnpublishVolume({ volume_id: v.volume_id, node_id: 'host-a' });
    await ctl.ControllerUnpublishVolume({ volume_id: v.volume_id, node_id: 'host-unknown' });
    await ctl.ControllerUnpublishVolume({ volume_id: 'pvc-missing', node_id: 'host-a' });
    await ctl.ControllerUnpublishVolume({ volume_id: '../../x', node_id: 'host-a' });
  });
});

describe('ValidateVolumeCapabilities', () => {
  it('checks required fields and the volume', async () => {
    expect((await failure(ctl.ValidateVolumeCapabilities({ volume_capabilities: [mountCap()] }))).code).toBe(
      status.INVALID_ARGUMENT,
    );
    const v = await createVolume();
    expect((await failure(ctl.ValidateVolumeCapabilities({ volume_id: v.volume_id }))).code).toBe(
      status.INVALID_ARGUMENT,
    );
    expect(
      (await failure(ctl.ValidateVolumeCapabilities({ volume_id: 'pvc-missing', volume_capabilities: [mountCap()] })))
        .code,
    ).toBe(status.NOT_FOUND);
    expect(
      (
        await failure(
          ctl.ValidateVolumeCapabilities({
            volume_id: v.volume_id,
            volume_capabilities: [mountCap()],
            parameters: { colour: 'red' },
          }),
        )
      ).code,
    ).toBe(status.INVALID_ARGUMENT);
  });

  it('confirms supported capabilities and answers the same on repeats', async () => {
    const v = await createVolume(unique(), { parameters: { maxIOPS: '10' } });
    const request = {
      volume_id: v.volume_id,
      volume_capabilities: [
        mountCap(),
        blockCap('SINGLE_NODE_MULTI_WRITER'),
        mountCap('MULTI_NODE_READER_ONLY', 'xfs'),
      ],
      volume_context: { fsType: 'ext4' },
      parameters: { maxIOPS: '10' },
    };
    const res = await ctl.ValidateVolumeCapabilities(request);
    expect(res.confirmed?.volume_capabilities).toHaveLength(3);
    expect(res.confirmed?.parameters).toEqual({ maxIOPS: '10' });
    expect(res.confirmed?.volume_context).toEqual({ fsType: 'ext4' });
    expect(await ctl.ValidateVolumeCapabilities(request)).toEqual(res);
  });

  it('leaves unsupported capabilities or mismatched parameters unconfirmed, with a message', async () => {
    const v = await createVolume();
    for (const caps of [
      [mountCap('MULTI_NODE_MULTI_WRITER')],
      [mountCap(), blockCap('MULTI_NODE_SINGLE_WRITER')],
      [mountCap('SINGLE_NODE_WRITER', 'zfs')],
    ]) {
      const res = await ctl.ValidateVolumeCapabilities({ volume_id: v.volume_id, volume_capabilities: caps });
      expect(res.confirmed).toBeNull();
      expect(res.message).toMatch(/not supported/);
    }
    const mismatch = await ctl.ValidateVolumeCapabilities({
      volume_id: v.volume_id,
      volume_capabilities: [mountCap()],
      parameters: { thin: 'false' },
    });
    expect(mismatch.confirmed).toBeNull();
    expect(mismatch.message).toMatch(/thin/);
  });
});

describe('ListVolumes', () => {
  it('refuses a bad token with ABORTED and a negative max_entries with INVALID_ARGUMENT', async () => {
    for (const token of ['invalid-token', 'lv1.%%%', 'ls1.cHZj', 'lv1.Li4vZXRj']) {
      const f = await failure(ctl.ListVolumes({ starting_token: token }));
      expect({ token, code: f.codeName }).toEqual({ token, code: 'ABORTED' });
    }
    expect((await failure(ctl.ListVolumes({ max_entries: -1 }))).code).toBe(status.INVALID_ARGUMENT);
  });

  it('pages with next_token, empty at the end, across entries added and removed between pages', async () => {
    const all = async () => {
      const ids: string[] = [];
      let token = '';
      do {
        const page = await ctl.ListVolumes({ max_entries: 3, starting_token: token });
        expect(page.entries.length).toBeLessThanOrEqual(3);
        ids.push(...page.entries.map((e) => e.volume!.volume_id));
        token = page.next_token;
      } while (token !== '');
      return ids;
    };
    await createVolume();
    const before = await all();
    expect(new Set(before).size).toBe(before.length);
    expect(before.sort()).toEqual((await backendVolumeNames(stack.vbsSocket)).sort());
    const unlimited = await ctl.ListVolumes({});
    expect(unlimited.next_token).toBe('');
    expect(unlimited.entries.map((e) => e.volume!.volume_id).sort()).toEqual(before.sort());

    // Walk again, changing the set after the first page: a removed entry that was the marker does not break
    // the walk; entries added after the marker appear; nothing repeats.
    const first = await ctl.ListVolumes({ max_entries: 2 });
    const seen = first.entries.map((e) => e.volume!.volume_id);
    await ctl.DeleteVolume({ volume_id: seen[1]! });
    const added = (await createVolume(`zzzz-${randomUUID()}`)).volume_id;
    const rest: string[] = [];
    let token = first.next_token;
    while (token !== '') {
      const page = await ctl.ListVolumes({ max_entries: 2, starting_token: token });
      rest.push(...page.entries.map((e) => e.volume!.volume_id));
      token = page.next_token;
    }
    expect(rest).toContain(added);
    expect(rest.filter((id) => seen.includes(id))).toEqual([]);
    expect(new Set(rest).size).toBe(rest.length);
  });

  it('carries capacity, topology, published nodes and the volume condition', async () => {
    const v = await createVolume(unique(), { capacity_range: { required_bytes: String(12 * MiB) } });
    await ctl.ControllerPublishVolume({ volume_id: v.volume_id, node_id: 'host-c', volume_capability: mountCap() });
    const entry = (await ctl.ListVolumes({})).entries.find((e) => e.volume?.volume_id === v.volume_id)!;
    expect(entry.volume?.capacity_bytes).toBe(String(12 * MiB));
    expect(entry.volume?.accessible_topology.length).toBeGreaterThan(0);
    expect(entry.status?.published_node_ids).toEqual(['host-c']);
    expect(entry.status?.volume_condition).toEqual({ abnormal: false, message: 'volume is healthy' });
    // The back end's settings are ControllerGetVolume's to report, not a listing's (docs/features.md).
    expect(entry.volume?.volume_context).toEqual({});
    const got = await ctl.ControllerGetVolume({ volume_id: v.volume_id });
    expect(got.volume?.volume_context?.['sdshypervisor.io/pool']).toBe('pool0');
    expect(got.volume?.volume_context?.['sdshypervisor.io/thin']).toBe('true');
  });
});

describe('GetCapacity', () => {
  it('reports thin capacity with the over-subscription, thick capacity, and 0 where no pool is seen', async () => {
    const pools = (await vbsRequest(stack.vbsSocket, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 0 })).records('pool');
    const pool = pools.find((p) => p.stor_id === 'pool0')!;
    const thin = await ctl.GetCapacity({ parameters: { pool: 'pool0' } });
    expect(Number(thin.available_capacity)).toBe(Number(pool.thin_capacity_mb) * MiB);
    expect(Number(thin.available_capacity)).toBeGreaterThan(POOL_BYTES); // over-subscribed
    expect(thin.maximum_volume_size?.value).toBe(thin.available_capacity);
    expect(thin.minimum_volume_size?.value).toBe(String(MiB));
    const thick = await ctl.GetCapacity({ parameters: { thin: 'false' } });
    expect(Number(thick.available_capacity)).toBeLessThanOrEqual(POOL_BYTES);
    expect(Number(thick.available_capacity)).toBeGreaterThan(0);

    const v = await createVolume(unique(), { capacity_range: { required_bytes: String(100 * MiB) } });
    const after = await ctl.GetCapacity({ parameters: { pool: 'pool0' } });
    expect(Number(after.available_capacity)).toBe(Number(thin.available_capacity) - 100 * MiB);
    await ctl.DeleteVolume({ volume_id: v.volume_id });

    const here = await ctl.GetCapacity({ accessible_topology: segment('host-a') });
    expect(Number(here.available_capacity)).toBeGreaterThan(0);
    const nowhere = await ctl.GetCapacity({ accessible_topology: segment('host-nowhere') });
    expect(nowhere.available_capacity).toBe('0');
    expect((await failure(ctl.GetCapacity({ parameters: { speed: 'fast' } }))).message).toContain('"speed"');
  });
});

describe('snapshots', () => {
  it('CreateSnapshot checks fields, answers NOT_FOUND for a missing source, and is idempotent by name', async () => {
    const v = await createVolume();
    expect((await failure(ctl.CreateSnapshot({ source_volume_id: v.volume_id }))).code).toBe(status.INVALID_ARGUMENT);
    expect((await failure(ctl.CreateSnapshot({ name: unique('snap') }))).code).toBe(status.INVALID_ARGUMENT);
    expect(
      (
        await failure(
          ctl.CreateSnapshot({ name: unique('snap'), source_volume_id: v.volume_id, parameters: { retention: '1d' } }),
        )
      ).message,
    ).toContain('"retention"');
    expect((await failure(ctl.CreateSnapshot({ name: unique('snap'), source_volume_id: 'pvc-missing' }))).code).toBe(
      status.NOT_FOUND,
    );
    expect((await failure(ctl.CreateSnapshot({ name: unique('snap'), source_volume_id: '../x' }))).code).toBe(
      status.NOT_FOUND,
    );

    const name = unique('snap');
    const request = {
      name,
      source_volume_id: v.volume_id,
      parameters: { 'csi.storage.k8s.io/volumesnapshot/name': 'daily' },
    };
    const first = (await ctl.CreateSnapshot(request)).snapshot!;
    expect(first).toMatchObject({
      snapshot_id: name,
      source_volume_id: v.volume_id,
      size_bytes: v.capacity_bytes,
      ready_to_use: true,
      group_snapshot_id: '',
    });
    expect(Number(first.creation_time?.seconds)).toBeGreaterThan(1_600_000_000);
    expect((await ctl.CreateSnapshot(request)).snapshot).toEqual(first);
    const other = await createVolume();
    const clash = await failure(ctl.CreateSnapshot({ name, source_volume_id: other.volume_id }));
    expect(clash.code).toBe(status.ALREADY_EXISTS);
  });

  it('CreateSnapshot answers ABORTED while the same snapshot is being cut', async () => {
    const v = await createVolume();
    const name = unique('snap');
    const thaw = stack.freezeEmulator();
    let pending: ReturnType<typeof settle> | undefined;
    try {
      pending = settle(ctl.CreateSnapshot({ name, source_volume_id: v.volume_id }));
      await new Promise((r) => setTimeout(r, 300));
      const f = await failure(ctl.CreateSnapshot({ name, source_volume_id: v.volume_id }));
      expect(f.code).toBe(status.ABORTED);
      expect(f.message).toBe(`an operation on snapshot ${name} is already in progress`);
      expect((await failure(ctl.DeleteSnapshot({ snapshot_id: name }))).code).toBe(status.ABORTED);
    } finally {
      thaw();
    }
    expect((await pending!).ok).toBe(true);
  });

  it('DeleteSnapshot needs an id and is idempotent', async () => {
    expect((await failure(ctl.DeleteSnapshot({}))).code).toBe(status.INVALID_ARGUMENT);
    const v = await createVolume();
    const snap = (await ctl.CreateSnapshot({ name: unique('snap'), source_volume_id: v.volume_id })).snapshot!;
    await ctl.DeleteSnapshot({ snapshot_id: snap.snapshot_id });
    await ctl.DeleteSnapshot({ snapshot_id: snap.snapshot_id });
    await ctl.DeleteSnapshot({ snapshot_id: 'snap-never' });
    await ctl.DeleteSnapshot({ snapshot_id: '../../x' });
    expect((await failure(ctl.GetSnapshot({ snapshot_id: snap.snapshot_id }))).code).toBe(status.NOT_FOUND);
  });

  it('GetSnapshot checks its id and answers NOT_FOUND for an unknown one', async () => {
    expect((await failure(ctl.GetSnapshot({}))).code).toBe(status.INVALID_ARGUMENT);
    expect((await failure(ctl.GetSnapshot({ snapshot_id: 'snap-missing' }))).code).toBe(status.NOT_FOUND);
    expect((await failure(ctl.GetSnapshot({ snapshot_id: 'a\u0000b' }))).code).toBe(status.NOT_FOUND);
    const v = await createVolume();
    const snap = (await ctl.CreateSnapshot({ name: unique('snap'), source_volume_id: v.volume_id })).snapshot!;
    expect((await ctl.GetSnapshot({ snapshot_id: snap.snapshot_id })).snapshot).toEqual(snap);
  });

  it('ListSnapshots filters by snapshot and source, pages, and refuses bad tokens', async () => {
    const v1 = await createVolume();
    const v2 = await createVolume();
    const snaps: string[] = [];
    for (const v of [v1, v1, v1, v2])
      snaps.push(
        (await ctl.CreateSnapshot({ name: unique('snap'), source_volume_id: v.volume_id })).snapshot!.snapshot_id,
      );

    const byId = await ctl.ListSnapshots({ snapshot_id: snaps[3]! });
    expect(byId.entries.map((e) => e.snapshot?.snapshot_id)).toEqual([snaps[3]]);
    expect(byId.next_token).toBe('');
    expect((await ctl.ListSnapshots({ snapshot_id: 'snap-unknown' })).entries).toEqual([]);
    expect((await ctl.ListSnapshots({ snapshot_id: '../bad' })).entries).toEqual([]);
    expect((await ctl.ListSnapshots({ source_volume_id: 'pvc-unknown' })).entries).toEqual([]);
    expect((await ctl.ListSnapshots({ snapshot_id: snaps[3]!, source_volume_id: v1.volume_id })).entries).toEqual([]);

    const bySource = await ctl.ListSnapshots({ source_volume_id: v1.volume_id });
    expect(bySource.entries.map((e) => e.snapshot?.snapshot_id).sort()).toEqual(snaps.slice(0, 3).sort());

    const paged: string[] = [];
    let token = '';
    do {
      const page = await ctl.ListSnapshots({ source_volume_id: v1.volume_id, max_entries: 2, starting_token: token });
      expect(page.entries.length).toBeLessThanOrEqual(2);
      paged.push(...page.entries.map((e) => e.snapshot!.snapshot_id));
      token = page.next_token;
    } while (token !== '');
    expect(paged.sort()).toEqual(snaps.slice(0, 3).sort());

    const everything = (await ctl.ListSnapshots({})).entries.map((e) => e.snapshot!.snapshot_id);
    for (const s of snaps) expect(everything).toContain(s);
    for (const token of ['invalid-token', 'lv1.cHZj', 'ls1.!!']) {
      expect((await failure(ctl.ListSnapshots({ starting_token: token }))).code).toBe(status.ABORTED);
    }
    expect((await failure(ctl.ListSnapshots({ max_entries: -5 }))).code).toBe(status.INVALID_ARGUMENT);
  });
});

describe('ControllerExpandVolume', () => {
  it('checks fields and answers NOT_FOUND for an unknown volume', async () => {
    expect((await failure(ctl.ControllerExpandVolume({ capacity_range: { required_bytes: String(GiB) } }))).code).toBe(
      status.INVALID_ARGUMENT,
    );
    const v = await createVolume();
    expect((await failure(ctl.ControllerExpandVolume({ volume_id: v.volume_id }))).code).toBe(status.INVALID_ARGUMENT);
    expect(
      (
        await failure(
          ctl.ControllerExpandVolume({
            volume_id: v.volume_id,
            capacity_range: { required_bytes: String(GiB) },
            volume_capability: mountCap('MULTI_NODE_MULTI_WRITER'),
          }),
        )
      ).code,
    ).toBe(status.INVALID_ARGUMENT);
    expect(
      (
        await failure(
          ctl.ControllerExpandVolume({ volume_id: 'pvc-missing', capacity_range: { required_bytes: String(GiB) } }),
        )
      ).code,
    ).toBe(status.NOT_FOUND);
  });

  it('grows volumes, online too, and says whether the node must grow the filesystem', async () => {
    const v = await createVolume();
    await ctl.ControllerPublishVolume({ volume_id: v.volume_id, node_id: 'host-a', volume_capability: mountCap() });
    const grown = await ctl.ControllerExpandVolume({
      volume_id: v.volume_id,
      capacity_range: { required_bytes: String(40 * MiB + 1) },
      volume_capability: mountCap(),
    });
    expect(grown).toEqual({ capacity_bytes: String(41 * MiB), node_expansion_required: true });
    expect((await backendVolume(stack.vbsSocket, v.volume_id))?.vol_size).toBe('41');
    const block = await createVolume(unique(), { volume_capabilities: [blockCap()] });
    const b = await ctl.ControllerExpandVolume({
      volume_id: block.volume_id,
      capacity_range: { required_bytes: String(64 * MiB) },
      volume_capability: blockCap(),
    });
    expect(b).toEqual({ capacity_bytes: String(64 * MiB), node_expansion_required: false });
    // Already as large: OK with the current size, nothing changes.
    expect(
      await ctl.ControllerExpandVolume({
        volume_id: v.volume_id,
        capacity_range: { required_bytes: String(20 * MiB) },
      }),
    ).toEqual({ capacity_bytes: String(41 * MiB), node_expansion_required: true });
  });

  it('answers OUT_OF_RANGE for ranges it cannot honour', async () => {
    const v = await createVolume(unique(), { capacity_range: { required_bytes: String(32 * MiB) } });
    for (const range of [
      { required_bytes: String(64 * MiB), limit_bytes: String(48 * MiB) },
      { required_bytes: String(40 * MiB + 1), limit_bytes: String(40 * MiB + 2) },
      { limit_bytes: String(16 * MiB) },
      { required_bytes: String(POOL_BYTES * 4 + GiB) },
      { required_bytes: '9223372036854775807' },
    ]) {
      const f = await failure(ctl.ControllerExpandVolume({ volume_id: v.volume_id, capacity_range: range }));
      expect({ range, code: f.codeName }).toEqual({ range, code: 'OUT_OF_RANGE' });
    }
    expect((await backendVolume(stack.vbsSocket, v.volume_id))?.vol_size).toBe('32');
  });
});

describe('ControllerModifyVolume', () => {
  it('checks fields and keys, answers NOT_FOUND, applies only present keys and is idempotent', async () => {
    const v = await createVolume(unique(), { parameters: { maxIOPS: '100', maxMBps: '10', cache: 'read' } });
    expect((await failure(ctl.ControllerModifyVolume({ mutable_parameters: { maxIOPS: '1' } }))).code).toBe(
      status.INVALID_ARGUMENT,
    );
    expect((await failure(ctl.ControllerModifyVolume({ volume_id: v.volume_id }))).code).toBe(status.INVALID_ARGUMENT);
    const badKey = await failure(
      ctl.ControllerModifyVolume({ volume_id: v.volume_id, mutable_parameters: { thin: 'false' } }),
    );
    expect(badKey.code).toBe(status.INVALID_ARGUMENT);
    expect(badKey.message).toContain('"thin"');
    expect(
      (await failure(ctl.ControllerModifyVolume({ volume_id: v.volume_id, mutable_parameters: { maxMBps: '-3' } })))
        .message,
    ).toContain('maxMBps');
    expect(
      (await failure(ctl.ControllerModifyVolume({ volume_id: 'pvc-missing', mutable_parameters: { maxIOPS: '1' } })))
        .code,
    ).toBe(status.NOT_FOUND);

    await ctl.ControllerModifyVolume({
      volume_id: v.volume_id,
      mutable_parameters: { maxIOPS: '2000', qosLevel: 'high' },
    });
    await ctl.ControllerModifyVolume({
      volume_id: v.volume_id,
      mutable_parameters: { maxIOPS: '2000', qosLevel: 'high' },
    });
    expect(await backendVolume(stack.vbsSocket, v.volume_id)).toMatchObject({
      max_iops: '2000',
      IOPRIORITY: '3',
      max_mbps: '10',
      cache_policy: 'read',
    });
  });
});

describe('ControllerGetVolume', () => {
  it('checks its id, answers NOT_FOUND, and reports status and condition', async () => {
    expect((await failure(ctl.ControllerGetVolume({}))).code).toBe(status.INVALID_ARGUMENT);
    expect((await failure(ctl.ControllerGetVolume({ volume_id: 'pvc-missing' }))).code).toBe(status.NOT_FOUND);
    const v = await createVolume();
    const got = await ctl.ControllerGetVolume({ volume_id: v.volume_id });
    expect(got.volume).toMatchObject({
      volume_id: v.volume_id,
      capacity_bytes: v.capacity_bytes,
      accessible_topology: v.accessible_topology,
    });
    expect(got.status).toEqual({
      published_node_ids: [],
      volume_condition: { abnormal: false, message: 'volume is healthy' },
    });
  });

  it("reports an abnormal condition when the volume's file is gone behind the back end's back", async () => {
    const v = await createVolume();
    await ctl.ControllerPublishVolume({ volume_id: v.volume_id, node_id: 'host-b', volume_capability: mountCap() });
    // The emulator's data layout (emulator/README.md): <data>/pools/<pool>/volumes/<volume>. A query notices
    // a lost file at once; the next start's reconcile records the fault for good.
    await rm(join(stack.emulatorDataDir, 'pools', 'pool0', 'volumes', v.volume_id));
    const live = await ctl.ControllerGetVolume({ volume_id: v.volume_id });
    expect(live.status?.volume_condition?.abnormal).toBe(true);
    expect(live.status?.volume_condition?.message).toMatch(/missing/);
    await stack.stopEmulator();
    await stack.startEmulator();
    const got = await ctl.ControllerGetVolume({ volume_id: v.volume_id });
    expect(got.status?.volume_condition?.abnormal).toBe(true);
    expect(got.status?.volume_condition?.message).toMatch(/faulty/);
    expect(got.status?.published_node_ids).toEqual(['host-b']);
    const listed = (await ctl.ListVolumes({})).entries.find((e) => e.volume?.volume_id === v.volume_id);
    expect(listed?.status?.volume_condition?.abnormal).toBe(true);
    await ctl.ControllerUnpublishVolume({ volume_id: v.volume_id, node_id: 'host-b' });
    await ctl.DeleteVolume({ volume_id: v.volume_id });
    expect((await failure(ctl.ControllerGetVolume({ volume_id: v.volume_id }))).code).toBe(status.NOT_FOUND);
  });
});

describe('the whole run', () => {
  it('never answered INTERNAL or UNKNOWN: every failure above was a deliberate code', () => {
    const lines = internalAnswers(stack);
    expect(lines).toEqual([]);
  });
});
