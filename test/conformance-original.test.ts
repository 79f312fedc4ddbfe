// Conformance on the original protocol level: the real driver (--mode=all, --vbs-protocol=original,
// --vbs-pools) against the emulator in `--protocol original` (the 2014 product's nine requests, status-only
// records, a generic retcode=1 for every failure, sds_cli printing the original lines), over the real CSI
// socket, real loop devices and mounts. The back end is inspected only through its data directory (the
// original level has no list request), so every test can say that nothing is left behind.
import { randomUUID } from 'node:crypto';
import { mkdir, writeFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VolumeCapability } from '../src/generated/csi/v1/VolumeCapability.js';
import { ORIGINAL_CONTROLLER_CAPABILITIES } from '../src/controller/original.js';
import { failure, type ControllerApi, type NodeApi } from './support/csi-client.js';
import { startStack, type Stack } from './support/stack.js';
import { vbsRequest } from './support/vbs.js';
import { poolFiles } from './support/emulator-inventory.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const HOST_KEY = 'topology.sdshypervisor.io/host';
const mountCap: VolumeCapability = { mount: { fs_type: 'ext4' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };

let stack: Stack;
let ctl: ControllerApi;
let node: NodeApi;
const unique = (prefix = 'pvc') => `${prefix}-${randomUUID()}`;

/** Names of the volume and snapshot files in the emulator's pools: what exists on the back end. */
async function backendFiles(kind: 'volumes' | 'snapshots'): Promise<string[]> {
  const files = poolFiles(stack.emulatorDataDir);
  return files[kind].map((f) => f.slice(f.indexOf('/') + 1)).sort();
}

async function expectNothingLeft(): Promise<void> {
  expect(poolFiles(stack.emulatorDataDir)).toEqual({ volumes: [], snapshots: [], tmp: [] });
}

async function create(name = unique(), bytes = 16 * MiB, extra: Record<string, unknown> = {}) {
  const res = await ctl.CreateVolume({
    name,
    volume_capabilities: [mountCap],
    capacity_range: { required_bytes: String(bytes) },
    ...extra,
  });
  return res.volume!;
}

beforeAll(async () => {
  stack = await startStack({ mode: 'all', level: 'original', pools: ['pool0:4G'] });
  ctl = stack.csi.controller;
  node = stack.csi.node;
});

afterAll(async () => {
  await stack?.stop();
});

describe('the emulator answers as the product did', () => {
  it('refuses the extension requests with the generic failure and sends status-only records', async () => {
    expect((await vbsRequest(stack.vbsSocket, 'QUERY_CAPABILITY_REQ')).retcode).toBe(1);
    expect((await vbsRequest(stack.vbsSocket, 'QUERY_VOLUME_REQ', { vol_name: 'nothing-here' })).retcode).toBe(-900079);
  });
});

describe('capabilities and readiness on the original level', () => {
  it('advertises only what the original level can honour', async () => {
    const res = await ctl.ControllerGetCapabilities({});
    expect(res.capabilities.map((c) => c.rpc?.type).sort()).toEqual([...ORIGINAL_CONTROLLER_CAPABILITIES].sort());
    const plugin = await stack.csi.identity.GetPluginCapabilities({});
    const services = plugin.capabilities.map((c) => c.service?.type).filter(Boolean);
    expect(services).not.toContain('GROUP_CONTROLLER_SERVICE');
    expect(services).not.toContain('SNAPSHOT_METADATA_SERVICE');
    expect(services).toContain('CONTROLLER_SERVICE');
  });

  it('Probe is ready: a pool query answers', async () => {
    expect((await stack.csi.identity.Probe({})).ready?.value).toBe(true);
    expect(stack.driverLog()).toMatch(/"level":"original"/);
  });

  it('the calls that need list or record requests are UNIMPLEMENTED, not INTERNAL', async () => {
    expect((await failure(ctl.ListVolumes({}))).codeName).toBe('UNIMPLEMENTED');
    expect((await failure(ctl.ListSnapshots({}))).codeName).toBe('UNIMPLEMENTED');
    expect((await failure(ctl.ControllerGetVolume({ volume_id: 'pvc-x' }))).codeName).toBe('UNIMPLEMENTED');
  });

  it('GetCapacity answers the configured pool, also for a node topology the pool records cannot name', async () => {
    const all = await ctl.GetCapacity({ volume_capabilities: [mountCap] });
    expect(Number(all.available_capacity)).toBeGreaterThan(GiB);
    const onHost = await ctl.GetCapacity({
      volume_capabilities: [mountCap],
      accessible_topology: { segments: { [HOST_KEY]: stack.hostId } },
    });
    expect(onHost.available_capacity).toBe(all.available_capacity);
  });
});

describe('bad input gets what it gets on the extended level', () => {
  it('INVALID_ARGUMENT naming the field, nothing made', async () => {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['no name', { volume_capabilities: [mountCap] }, /name is required/],
      ['no capabilities', { name: unique() }, /volume_capabilities is required/],
      [
        'a capability without access mode',
        { name: unique(), volume_capabilities: [{ mount: {} }] },
        /access_mode is required/,
      ],
      [
        'a negative size',
        { name: unique(), volume_capabilities: [mountCap], capacity_range: { required_bytes: '-1' } },
        /must not be negative/,
      ],
      [
        'a snapshot source without id',
        { name: unique(), volume_capabilities: [mountCap], volume_content_source: { snapshot: {} } },
        /snapshot_id is required/,
      ],
      [
        'a restore without a size',
        {
          name: unique(),
          volume_capabilities: [mountCap],
          volume_content_source: { snapshot: { snapshot_id: 'snapshot-x' } },
        },
        /snapshot-x|capacity_range/,
      ],
    ];
    for (const [what, request, message] of cases) {
      const f = await failure(ctl.CreateVolume(request));
      expect({ what, code: f.codeName }).toEqual({
        what,
        code: what === 'a restore without a size' ? 'NOT_FOUND' : 'INVALID_ARGUMENT',
      });
      expect(f.message).toMatch(message);
    }
    const noSize = await failure(ctl.ControllerExpandVolume({ volume_id: 'pvc-x' }));
    expect(noSize.codeName).toBe('INVALID_ARGUMENT');
    expect(noSize.message).toMatch(/capacity_range/);
    await expectNothingLeft();
  });

  it('a restore from an existing snapshot without capacity_range is INVALID_ARGUMENT naming it (the size is not told)', async () => {
    const source = unique();
    await create(source);
    const { snapshot } = await ctl.CreateSnapshot({ name: unique('snapshot'), source_volume_id: source });
    const f = await failure(
      ctl.CreateVolume({
        name: unique(),
        volume_capabilities: [mountCap],
        volume_content_source: { snapshot: { snapshot_id: snapshot!.snapshot_id } },
      }),
    );
    expect(f.codeName).toBe('INVALID_ARGUMENT');
    expect(f.message).toMatch(/capacity_range\.required_bytes/);
    await ctl.DeleteSnapshot({ snapshot_id: snapshot!.snapshot_id });
    await ctl.DeleteVolume({ volume_id: source });
    await expectNothingLeft();
  });
});

describe('settings no original request carries', () => {
  it('maxMBps and a cache policy are INVALID_ARGUMENT naming the key, not dropped; their neutral values pass', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ parameters: { maxMBps: '100' } }, /^parameters\.maxMBps: .*original protocol level/],
      [{ parameters: { cache: 'read' } }, /^parameters\.cache: .*original protocol level/],
      [{ mutable_parameters: { cache: 'readwrite' } }, /^mutable_parameters\.cache: /],
      [{ parameters: { cache: 'none' }, mutable_parameters: { maxMBps: '5' } }, /^mutable_parameters\.maxMBps: /],
    ];
    for (const [extra, message] of cases) {
      const f = await failure(create(unique(), 16 * MiB, extra));
      expect({ extra, code: f.codeName }).toEqual({ extra, code: 'INVALID_ARGUMENT' });
      expect(f.message).toMatch(message);
    }
    await expectNothingLeft();
    const name = unique();
    await create(name, 16 * MiB, { parameters: { cache: 'none', maxMBps: '0', maxIOPS: '100', qosLevel: 'high' } });
    await ctl.DeleteVolume({ volume_id: name });
    await expectNothingLeft();
  });
});

describe("what the original level cannot tell (docs/protocol-levels.md, 'A taken name')", () => {
  it('a CreateVolume repeated with another size or source answers the existing volume, sized from the request; nothing more is made', async () => {
    const name = unique();
    const other = unique();
    await create(name, 16 * MiB);
    await create(other, 16 * MiB);
    const bigger = await create(name, 32 * MiB);
    expect(bigger).toMatchObject({ volume_id: name, capacity_bytes: String(32 * MiB) });
    const asClone = await create(name, 16 * MiB, { volume_content_source: { volume: { volume_id: other } } });
    expect(asClone.volume_id).toBe(name);
    expect(asClone.content_source?.volume?.volume_id).toBe(other);
    expect(await backendFiles('volumes')).toEqual([name, other].sort());
    expect(await backendFiles('snapshots')).toEqual([]);
    await ctl.DeleteVolume({ volume_id: name });
    await ctl.DeleteVolume({ volume_id: other });
    await expectNothingLeft();
  });

  it('a CreateSnapshot repeated with another source volume answers the existing snapshot, its source from the request', async () => {
    const [a, b] = [unique(), unique()];
    await create(a);
    await create(b);
    const name = unique('snapshot');
    const first = (await ctl.CreateSnapshot({ name, source_volume_id: a })).snapshot!;
    const again = (await ctl.CreateSnapshot({ name, source_volume_id: b })).snapshot!;
    expect(again).toMatchObject({ snapshot_id: first.snapshot_id, source_volume_id: b, ready_to_use: true });
    expect(await backendFiles('snapshots')).toEqual([first.snapshot_id]);
    await ctl.DeleteSnapshot({ snapshot_id: first.snapshot_id });
    await ctl.DeleteVolume({ volume_id: a });
    await ctl.DeleteVolume({ volume_id: b });
    await expectNothingLeft();
  });
});

describe('volumes', () => {
  it('create, a repeated create (the provisioner retrying), delete: one volume, then none', async () => {
    const name = unique();
    const first = await create(name);
    expect(first).toMatchObject({ volume_id: name, capacity_bytes: String(16 * MiB), accessible_topology: [] });
    const again = await create(name);
    expect(again.volume_id).toBe(name);
    expect(await backendFiles('volumes')).toEqual([name]);
    await ctl.DeleteVolume({ volume_id: name });
    await ctl.DeleteVolume({ volume_id: name });
    await expectNothingLeft();
  });

  it('a create with the node topology required succeeds (no host list to refuse it)', async () => {
    const name = unique();
    await create(name, 16 * MiB, {
      accessibility_requirements: { requisite: [{ segments: { [HOST_KEY]: stack.hostId } }], preferred: [] },
    });
    await ctl.DeleteVolume({ volume_id: name });
    await expectNothingLeft();
  });

  it('a full pool is RESOURCE_EXHAUSTED (told apart from the generic failure by a pool query), and nothing leaks', async () => {
    const big = unique();
    await create(big, 3 * GiB, { parameters: { thin: 'false' } });
    const second = unique();
    const f = await failure(create(second, 3 * GiB, { parameters: { thin: 'false' } }));
    expect(f.codeName).toBe('RESOURCE_EXHAUSTED');
    expect(f.message).toMatch(/pool0/);
    await ctl.DeleteVolume({ volume_id: big });
    await expectNothingLeft();
  });

  it('an unknown pool in the StorageClass is INVALID_ARGUMENT naming the parameter', async () => {
    const f = await failure(create(unique(), 16 * MiB, { parameters: { pool: 'no-such-pool' } }));
    expect(f.codeName).toBe('INVALID_ARGUMENT');
    expect(f.message).toMatch(/parameters\.pool/);
  });

  it('expand grows the volume to the asked size', async () => {
    const name = unique();
    await create(name);
    const res = await ctl.ControllerExpandVolume({
      volume_id: name,
      capacity_range: { required_bytes: String(32 * MiB) },
    });
    expect(res.capacity_bytes).toBe(String(32 * MiB));
    const limitOnly = await failure(
      ctl.ControllerExpandVolume({ volume_id: name, capacity_range: { limit_bytes: String(64 * MiB) } }),
    );
    expect(limitOnly.codeName).toBe('INVALID_ARGUMENT');
    expect(limitOnly.message).toMatch(/required_bytes/);
    const missing = await failure(
      ctl.ControllerExpandVolume({ volume_id: unique(), capacity_range: { required_bytes: String(32 * MiB) } }),
    );
    expect(missing.codeName).toBe('NOT_FOUND');
    await ctl.DeleteVolume({ volume_id: name });
    await expectNothingLeft();
  });

  it('ControllerPublish sends no mapping request: OK for a volume, NOT_FOUND for none; Unpublish OK', async () => {
    const name = unique();
    await create(name);
    const published = await ctl.ControllerPublishVolume({
      volume_id: name,
      node_id: stack.hostId,
      volume_capability: mountCap,
    });
    expect(published.publish_context).toBeDefined();
    await ctl.ControllerUnpublishVolume({ volume_id: name, node_id: stack.hostId });
    const f = await failure(
      ctl.ControllerPublishVolume({ volume_id: unique(), node_id: stack.hostId, volume_capability: mountCap }),
    );
    expect(f.codeName).toBe('NOT_FOUND');
    await ctl.DeleteVolume({ volume_id: name });
    await expectNothingLeft();
  });
});

describe('snapshots, restores and clones', () => {
  it('snapshot, restore, a repeated restore: the restore is not ALREADY_EXISTS, and all goes away', async () => {
    const source = unique();
    await create(source);
    const { snapshot } = await ctl.CreateSnapshot({ name: unique('snapshot'), source_volume_id: source });
    expect(snapshot).toMatchObject({ source_volume_id: source, ready_to_use: true });
    const again = await ctl.CreateSnapshot({ name: snapshot!.snapshot_id, source_volume_id: source });
    expect(again.snapshot!.snapshot_id).toBe(snapshot!.snapshot_id);
    const restored = unique();
    const from = { volume_content_source: { snapshot: { snapshot_id: snapshot!.snapshot_id } } };
    const first = await create(restored, 16 * MiB, from);
    expect(first.content_source?.snapshot?.snapshot_id).toBe(snapshot!.snapshot_id);
    const second = await create(restored, 16 * MiB, from);
    expect(second.volume_id).toBe(restored);
    expect(await backendFiles('volumes')).toEqual([source, restored].sort());
    await ctl.DeleteVolume({ volume_id: restored });
    await ctl.DeleteSnapshot({ snapshot_id: snapshot!.snapshot_id });
    await ctl.DeleteSnapshot({ snapshot_id: snapshot!.snapshot_id });
    await ctl.DeleteVolume({ volume_id: source });
    await expectNothingLeft();
  });

  it('a clone goes through a temporary snapshot; a repeat is success; nothing is left after the deletes', async () => {
    const source = unique();
    await create(source);
    const clone = unique();
    const from = { volume_content_source: { volume: { volume_id: source } } };
    const made = await create(clone, 16 * MiB, from);
    expect(made.content_source?.volume?.volume_id).toBe(source);
    expect((await create(clone, 16 * MiB, from)).volume_id).toBe(clone);
    expect(await backendFiles('volumes')).toEqual([source, clone].sort());
    await ctl.DeleteVolume({ volume_id: clone });
    await ctl.DeleteVolume({ volume_id: source });
    await expectNothingLeft();
  });

  it.each([
    [
      'a restore from a snapshot that does not exist is NOT_FOUND and makes nothing',
      { snapshot: { snapshot_id: 'snapshot-none' } },
    ],
    ['a clone of a volume that does not exist is NOT_FOUND', { volume: { volume_id: 'pvc-none' } }],
  ])('%s', async (_title, source) => {
    const f = await failure(create(unique(), 16 * MiB, { volume_content_source: source }));
    expect(f.codeName).toBe('NOT_FOUND');
    await expectNothingLeft();
  });
});

describe('the node data path on the original level (sds_cli as the product prints it)', () => {
  it('stage, publish, write, unpublish, unstage; a repeated unstage is OK (querydev answers ret_code=1)', async () => {
    const name = unique();
    const volume = await create(name, 64 * MiB);
    const { publish_context } = await ctl.ControllerPublishVolume({
      volume_id: name,
      node_id: stack.hostId,
      volume_capability: mountCap,
    });
    const dir = join(stack.dir, 'kubelet', name);
    const staging = join(dir, 'globalmount');
    const target = join(dir, 'pods', 'mount');
    await mkdir(join(dir, 'pods'), { recursive: true });
    const stageReq = {
      volume_id: name,
      staging_target_path: staging,
      volume_capability: mountCap,
      publish_context,
      volume_context: volume.volume_context,
    };
    await node.NodeStageVolume(stageReq);
    await node.NodeStageVolume(stageReq);
    await node.NodePublishVolume({
      volume_id: name,
      staging_target_path: staging,
      target_path: target,
      volume_capability: mountCap,
      publish_context,
      volume_context: volume.volume_context,
    });
    await writeFile(join(target, 'data'), 'original level');
    expect(await readFile(join(target, 'data'), 'utf8')).toBe('original level');
    await node.NodeUnpublishVolume({ volume_id: name, target_path: target });
    await node.NodeUnpublishVolume({ volume_id: name, target_path: target });
    await node.NodeUnstageVolume({ volume_id: name, staging_target_path: staging });
    await node.NodeUnstageVolume({ volume_id: name, staging_target_path: staging });
    await ctl.ControllerUnpublishVolume({ volume_id: name, node_id: stack.hostId });
    await ctl.DeleteVolume({ volume_id: name });
    await expectNothingLeft();
  });
});

describe('negotiation end to end', () => {
  it('a driver left to auto finds the original level (QUERY_CAPABILITY_REQ refused) and advertises it', async () => {
    const auto = await startStack({ mode: 'controller', level: 'auto', pools: ['pool0:1G'] });
    try {
      const caps = await auto.csi.controller.ControllerGetCapabilities({});
      expect(caps.capabilities.map((c) => c.rpc?.type).sort()).toEqual([...ORIGINAL_CONTROLLER_CAPABILITIES].sort());
      expect(auto.driverLog()).toMatch(/"level":"original","how":"refused"/);
      expect((await auto.csi.identity.Probe({})).ready?.value).toBe(true);
    } finally {
      await auto.stop();
    }
  });
});

describe('the node on the original level, bad ids', () => {
  it('NodeUnstage of a volume the back end never had: NOT_FOUND, as on the extended level', async () => {
    const staging = join(stack.dir, 'kubelet', 'never', 'globalmount');
    await mkdir(staging, { recursive: true });
    const f = await failure(node.NodeUnstageVolume({ volume_id: 'pvc-never-was', staging_target_path: staging }));
    expect(f.codeName).toBe('NOT_FOUND');
  });

  it("NodeStage of a volume the back end never had: NOT_FOUND (told apart from the CLI's generic failure)", async () => {
    const staging = join(stack.dir, 'kubelet', 'never-staged', 'globalmount');
    await mkdir(staging, { recursive: true });
    const f = await failure(
      node.NodeStageVolume({
        volume_id: 'pvc-never-was',
        staging_target_path: staging,
        volume_capability: mountCap,
        publish_context: {},
        volume_context: {},
      }),
    );
    expect(f.codeName).toBe('NOT_FOUND');
    await expectNothingLeft();
  });
});

describe('pools on the original level', () => {
  it('--vbs-pools are the default pools; a StorageClass pool outside them is asked for by id and used', async () => {
    const two = await startStack({
      mode: 'controller',
      level: 'original',
      pools: ['pool0:2G', 'pool1:2G'],
      driverArgs: ['--vbs-pools', 'pool0'],
    });
    try {
      const c = two.csi.controller;
      const cap = await c.GetCapacity({ volume_capabilities: [mountCap], parameters: { pool: 'pool1' } });
      expect(Number(cap.available_capacity)).toBeGreaterThan(0);
      const name = unique();
      await c.CreateVolume({
        name,
        volume_capabilities: [mountCap],
        capacity_range: { required_bytes: String(16 * MiB) },
        parameters: { pool: 'pool1' },
      });
      expect(poolFiles(two.emulatorDataDir).volumes).toEqual([`pool1/${name}`]);
      const other = unique();
      await c.CreateVolume({
        name: other,
        volume_capabilities: [mountCap],
        capacity_range: { required_bytes: String(16 * MiB) },
      });
      expect(poolFiles(two.emulatorDataDir).volumes).toContain(`pool0/${other}`);
      const f = await failure(
        c.CreateVolume({ name: unique(), volume_capabilities: [mountCap], parameters: { pool: 'pool9' } }),
      );
      expect(f.codeName).toBe('INVALID_ARGUMENT');
      await c.DeleteVolume({ volume_id: name });
      await c.DeleteVolume({ volume_id: other });
      expect(poolFiles(two.emulatorDataDir)).toEqual({ volumes: [], snapshots: [], tmp: [] });
    } finally {
      await two.stop();
    }
  });
});
