// Bad input, property-based: every field of every CSI request the driver reads (identity, controller, node,
// group controller, snapshot metadata), filled by fast-check with hostile values and sent over the real CSI
// socket of a spawned driver (--mode=all, real emulator, real sds_cli and mounts). Every answer must be a deliberate status — OK or a
// spec code such as INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE — never INTERNAL or UNKNOWN, never a hang
// (UNAVAILABLE, DEADLINE_EXCEEDED); a node path with a `..` component is always refused; and nothing
// outside the driver's own directories changes: a canary directory beside them, reachable only by climbing
// out with `..` or through a symlink, stays byte for byte as it was.
// Seeded (BADINPUT_SEED) and bounded (BADINPUT_RUNS per request type); fast-check prints the seed and the
// shrunk counterexample on failure.
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VolumeCapability } from '../src/generated/csi/v1/VolumeCapability.js';
import { isValidName } from '../src/protocol/vbs.js';
import { listEverything, MiB } from './support/backend-audit.js';
import {
  capability,
  capacityRange,
  hostileString,
  int32,
  int64,
  nodePath,
  parameters,
  stringMap,
  topology,
} from './support/csi-arbitraries.js';
import { settle } from './support/csi-client.js';
import { soakSettings } from './support/soak-settings.js';
import { internalAnswers, startStack, type Stack } from './support/stack.js';

const { SEED, RUNS } = soakSettings('BADINPUT', { SEED: 20_240_611, RUNS: 40 });
/** Deliberate answers. INTERNAL, UNKNOWN, UNAVAILABLE or DEADLINE_EXCEEDED to bad input is a defect. */
const CLEAN = new Set([
  'OK',
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'OUT_OF_RANGE',
  'ALREADY_EXISTS',
  'FAILED_PRECONDITION',
  'ABORTED',
  'RESOURCE_EXHAUSTED',
]);

const mountCap: VolumeCapability = { mount: { fs_type: 'ext4' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
const FIXTURE_VOLUME = 'pvc-fuzz-ctl';
const FIXTURE_SNAPSHOT = 'snapshot-fuzz-ctl';
/** staged and published to this node for the whole file: NodePublish / stats / expand find it there */
const STAGED_VOLUME = 'pvc-fuzz-staged';
/** published to this node, never staged: NodeStage may stage it (and is then undone at once) */
const SPARE_VOLUME = 'pvc-fuzz-spare';
const SYMLINKS = ['link-to-canary', 'link-to-canary-file', 'link-dangling'];

let stack: Stack;
let kubelet: string;
let canary: string;
let stagingPath: string;
let canaryBefore: string[];
let topBefore: string[];
const codes: Record<string, Record<string, number>> = {};
const created = {
  volumes: new Set<string>(),
  snapshots: new Set<string>(),
  published: new Set<string>(),
  groups: new Map<string, string[]>(),
};

/** A fingerprint of a directory tree: every entry's path, type, mode, size, content hash or link target. */
function fingerprint(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    const st = lstatSync(path);
    const rel = `${prefix}${name}`;
    if (st.isSymbolicLink()) out.push(`${rel} -> ${readlinkSync(path)}`);
    else if (st.isDirectory())
      out.push(`${rel}/ ${st.mode.toString(8)} ${st.mtimeMs}`, ...fingerprint(path, `${rel}/`));
    else
      out.push(
        `${rel} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${createHash('sha256').update(readFileSync(path)).digest('hex')}`,
      );
  }
  return out;
}

function record(method: string, code: string): void {
  const m = (codes[method] ??= {});
  m[code] = (m[code] ?? 0) + 1;
}

/** Sends one request; the answer must be a deliberate one. Returns whether it succeeded. */
async function expectClean(method: string, send: () => Promise<unknown>, request: unknown): Promise<boolean> {
  const outcome = await settle(send());
  const code = outcome.ok ? 'OK' : outcome.codeName;
  record(method, code);
  if (!CLEAN.has(code)) {
    const shown = JSON.stringify(request, (_k, v: unknown) =>
      typeof v === 'string' && v.length > 200 ? `${v.slice(0, 200)}…(${v.length})` : v,
    );
    throw new Error(`${method} answered ${code}${outcome.ok ? '' : `: ${outcome.message}`}\nrequest: ${shown}`);
  }
  if (!outcome.ok && outcome.message.trim() === '') throw new Error(`${method} answered ${code} without a message`);
  return outcome.ok;
}

/** Every request `requests` makes, sent by `send`, is answered cleanly (expectClean). */
async function fuzzClean<R>(method: string, requests: fc.Arbitrary<R>, send: (req: R) => Promise<unknown>) {
  await fc.assert(
    fc.asyncProperty(requests, async (req) => {
      await expectClean(method, () => send(req), req);
    }),
    params(),
  );
}

/** A request that `undo` takes back (publish and unpublish, stage and unstage). */
interface Undoable<R, U> {
  method: string;
  send: (req: R) => Promise<unknown>;
  undoMethod: string;
  undoOf: (req: R) => U;
  sendUndo: (undo: U) => Promise<unknown>;
  /** What the two outcomes must say of the request (or note for cleanup). */
  check: (req: R, ok: boolean, undone: boolean) => void;
}

/** Every request `requests` makes is answered cleanly, and then its undo too (expectClean). */
async function fuzzWithUndo<R, U>(requests: fc.Arbitrary<R>, pair: Undoable<R, U>) {
  await fc.assert(
    fc.asyncProperty(requests, async (req) => {
      const ok = await expectClean(pair.method, () => pair.send(req), req);
      const undo = pair.undoOf(req);
      const undone = await expectClean(pair.undoMethod, () => pair.sendUndo(undo), undo);
      pair.check(req, ok, undone);
    }),
    params(),
  );
}

const hasDotDot = (path: string) => path.split('/').some((c) => c === '..' || c === '.');

/** The node's rule for a request and its undo: refused when one of its `paths` has a `..`; undone when done. */
function refusesDotDotAndUndoes<R>(paths: (req: R) => string[]) {
  return (req: R, ok: boolean, undone: boolean) => {
    if (paths(req).some(hasDotDot)) expect(ok).toBe(false);
    if (ok) expect(undone).toBe(true); // what was staged or published can be taken back
  };
}

beforeAll(async () => {
  stack = await startStack({
    mode: 'all',
    pools: ['pool0:4G'],
    extraHosts: ['host-b'],
    driverArgs: ['--log-level=warn'],
  });
  kubelet = join(stack.dir, 'kubelet');
  canary = join(stack.dir, 'canary');
  await mkdir(join(canary, 'emptydir'), { recursive: true });
  await writeFile(join(canary, 'keep'), 'must not change\n');
  await writeFile(join(canary, 'empty'), '');
  await mkdir(join(kubelet, 'pods'), { recursive: true });
  await symlink('../canary', join(kubelet, 'link-to-canary'));
  await symlink('../canary/empty', join(kubelet, 'link-to-canary-file'));
  await symlink('../nowhere', join(kubelet, 'link-dangling'));
  const ctl = stack.csi.controller;
  await ctl.CreateVolume({
    name: FIXTURE_VOLUME,
    volume_capabilities: [mountCap],
    capacity_range: { required_bytes: String(64 * MiB) },
  });
  await ctl.CreateSnapshot({ name: FIXTURE_SNAPSHOT, source_volume_id: FIXTURE_VOLUME });
  for (const name of [STAGED_VOLUME, SPARE_VOLUME]) {
    await ctl.CreateVolume({
      name,
      volume_capabilities: [mountCap],
      capacity_range: { required_bytes: String(64 * MiB) },
    });
    await ctl.ControllerPublishVolume({ volume_id: name, node_id: stack.hostId, volume_capability: mountCap });
  }
  stagingPath = join(kubelet, 'staged', 'globalmount');
  await mkdir(stagingPath, { recursive: true });
  await stack.csi.node.NodeStageVolume({
    volume_id: STAGED_VOLUME,
    staging_target_path: stagingPath,
    volume_capability: mountCap,
  });
  canaryBefore = fingerprint(canary);
  topBefore = readdirSync(stack.dir).sort();
});

afterAll(async () => {
  if (!stack) return;
  console.log(`[reliability] bad input (seed ${SEED}, ${RUNS} runs per request type): ${JSON.stringify(codes)}`);
  await stack.stop();
});

const params = (runs = RUNS) => ({ numRuns: runs, seed: SEED, endOnFailure: false });
const id = (...known: string[]) =>
  fc.oneof({ weight: 2, arbitrary: fc.constantFrom(...known) }, { weight: 3, arbitrary: hostileString(known) });
/** Mostly a plausible value, often a hostile one: bad input must be met deep inside the handlers too. */
const mostly = <T>(plausible: fc.Arbitrary<T>, hostile: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 3, arbitrary: plausible }, { weight: 1, arbitrary: hostile });
const someParameters = mostly(
  fc.constantFrom<Record<string, string>>(
    {},
    { thin: 'false' },
    { cloneMode: 'full' },
    { pool: 'pool0', fsType: 'xfs' },
    { maxIOPS: '100', qosLevel: 'high' },
  ),
  parameters,
);
const someCaps = mostly<VolumeCapability[]>(fc.constant([mountCap]), fc.array(capability, { maxLength: 3 }));
const someName = mostly(
  fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/).map((n) => `pvc-fuzz-new-${n}`),
  hostileString(),
);

describe(`bad input over the CSI socket (seed ${SEED})`, { timeout: 60_000 + RUNS * 2_000 }, () => {
  it('Identity: GetPluginInfo, GetPluginCapabilities, Probe ignore whatever else a request carries', async () => {
    const identity = stack.csi.identity;
    for (const [method, send] of [
      ['GetPluginInfo', () => identity.GetPluginInfo({})],
      ['GetPluginCapabilities', () => identity.GetPluginCapabilities({})],
      ['Probe', () => identity.Probe({})],
      ['ControllerGetCapabilities', () => stack.csi.controller.ControllerGetCapabilities({})],
      ['NodeGetCapabilities', () => stack.csi.node.NodeGetCapabilities({})],
      ['NodeGetInfo', () => stack.csi.node.NodeGetInfo({})],
    ] as const) {
      expect(await expectClean(method, send, {})).toBe(true);
    }
  });

  it('CreateVolume: name, capacity_range, volume_capabilities, parameters, secrets, content source, topology, mutable_parameters', async () => {
    const ctl = stack.csi.controller;
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          {
            name: someName,
            capacity_range: mostly(
              fc.constantFrom(
                { required_bytes: String(8 * MiB) },
                { required_bytes: String(MiB + 1), limit_bytes: String(4 * MiB) },
              ),
              capacityRange,
            ),
            volume_capabilities: someCaps,
            parameters: someParameters,
            secrets: stringMap,
            volume_content_source: fc.option(
              fc.oneof(
                fc.record({ snapshot: fc.record({ snapshot_id: id(FIXTURE_SNAPSHOT) }) }),
                fc.record({ volume: fc.record({ volume_id: id(FIXTURE_VOLUME) }) }),
              ),
              { nil: undefined },
            ),
            accessibility_requirements: fc.option(
              fc.record({
                requisite: fc.array(topology, { maxLength: 2 }),
                preferred: fc.array(topology, { maxLength: 2 }),
              }),
              { nil: undefined },
            ),
            mutable_parameters: mostly(
              fc.constant({}),
              fc.dictionary(
                fc.oneof(fc.constantFrom('maxIOPS', 'maxMBps', 'qosLevel', 'cache'), hostileString()),
                hostileString(),
                { maxKeys: 2 },
              ),
            ),
          },
          { requiredKeys: ['name', 'volume_capabilities', 'parameters'] },
        ),
        async (req) => {
          let volumeId: string | undefined;
          const ok = await expectClean(
            'CreateVolume',
            () => ctl.CreateVolume(req).then((r) => (volumeId = r.volume?.volume_id)),
            req,
          );
          if (ok) {
            expect(isValidName(volumeId ?? '')).toBe(true);
            created.volumes.add(volumeId!);
          }
        },
      ),
      params(),
    );
  });

  it('DeleteVolume, ControllerGetVolume, ValidateVolumeCapabilities, ControllerExpandVolume, ControllerModifyVolume', async () => {
    const ctl = stack.csi.controller;
    await fuzzClean(
      'DeleteVolume',
      fc.record({ volume_id: hostileString(['pvc-nothing-here']), secrets: stringMap }),
      (req) => ctl.DeleteVolume(req),
    );
    await fuzzClean('ControllerGetVolume', fc.record({ volume_id: id(FIXTURE_VOLUME) }), (req) =>
      ctl.ControllerGetVolume(req),
    );
    await fuzzClean(
      'ValidateVolumeCapabilities',
      fc.record({
        volume_id: id(FIXTURE_VOLUME),
        volume_context: stringMap,
        volume_capabilities: someCaps,
        parameters: someParameters,
        mutable_parameters: mostly(fc.constant({}), stringMap),
        secrets: stringMap,
      }),
      (req) => ctl.ValidateVolumeCapabilities(req),
    );
    await fuzzClean(
      'ControllerExpandVolume',
      fc.record(
        {
          volume_id: id(FIXTURE_VOLUME),
          capacity_range: capacityRange,
          volume_capability: fc.option(capability, { nil: undefined }),
          secrets: stringMap,
        },
        { requiredKeys: ['volume_id'] },
      ),
      (req) => ctl.ControllerExpandVolume(req),
    );
    await fuzzClean(
      'ControllerModifyVolume',
      fc.record({
        volume_id: id(FIXTURE_VOLUME),
        mutable_parameters: fc.dictionary(
          mostly(fc.constantFrom('maxIOPS', 'maxMBps', 'qosLevel', 'cache'), hostileString()),
          mostly(fc.constantFrom('0', '100', 'high', 'read', '-5', '1e3', '99999999999'), hostileString()),
          { maxKeys: 3 },
        ),
        secrets: stringMap,
      }),
      (req) => ctl.ControllerModifyVolume(req),
    );
  });

  it('ControllerPublishVolume and ControllerUnpublishVolume: volume_id, node_id, capability, readonly, context', async () => {
    const ctl = stack.csi.controller;
    await fuzzWithUndo(
      fc.record(
        {
          volume_id: id(FIXTURE_VOLUME),
          node_id: id('host-a', 'host-b'),
          volume_capability: mostly(fc.constant(mountCap), fc.option(capability, { nil: undefined })),
          readonly: fc.boolean(),
          secrets: stringMap,
          volume_context: stringMap,
        },
        { requiredKeys: ['volume_id', 'node_id', 'readonly'] },
      ),
      {
        method: 'ControllerPublishVolume',
        send: (req) => ctl.ControllerPublishVolume(req),
        undoMethod: 'ControllerUnpublishVolume',
        undoOf: (req) => ({ volume_id: req.volume_id, node_id: req.node_id }),
        sendUndo: (undo) => ctl.ControllerUnpublishVolume(undo),
        check: (req, ok) => {
          if (ok) created.published.add(`${req.volume_id}\u0000${req.node_id}`);
        },
      },
    );
  });

  it('ListVolumes, ListSnapshots, GetCapacity, GetSnapshot: paging tokens, limits, filters, topology', async () => {
    const ctl = stack.csi.controller;
    await fuzzClean(
      'ListVolumes',
      fc.record({ max_entries: int32, starting_token: hostileString(['lv1.cHZjLWZ1enotY3Rs', 'lv1.', 'ls1.cHZj']) }),
      (req) => ctl.ListVolumes(req),
    );
    await fuzzClean(
      'ListSnapshots',
      fc.record({
        max_entries: int32,
        starting_token: hostileString(['ls1.c25hcHNob3Q', 'lv1.cHZj']),
        source_volume_id: id(FIXTURE_VOLUME),
        snapshot_id: id(FIXTURE_SNAPSHOT),
        secrets: stringMap,
      }),
      (req) => ctl.ListSnapshots(req),
    );
    await fuzzClean(
      'GetCapacity',
      fc.record(
        {
          volume_capabilities: someCaps,
          parameters: someParameters,
          accessible_topology: fc.option(topology, { nil: undefined }),
          mutable_parameters: stringMap,
        },
        { requiredKeys: ['volume_capabilities', 'parameters'] },
      ),
      (req) => ctl.GetCapacity(req),
    );
    await fuzzClean('GetSnapshot', fc.record({ snapshot_id: id(FIXTURE_SNAPSHOT), secrets: stringMap }), (req) =>
      ctl.GetSnapshot(req),
    );
  });

  it('CreateSnapshot and DeleteSnapshot: name, source_volume_id, parameters, snapshot_id', async () => {
    const ctl = stack.csi.controller;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          source_volume_id: id(FIXTURE_VOLUME),
          name: mostly(
            fc.stringMatching(/^[a-z0-9]{1,12}$/).map((n) => `snapshot-fuzz-${n}`),
            hostileString([FIXTURE_SNAPSHOT]),
          ),
          parameters: mostly(fc.constant({}), parameters),
          secrets: stringMap,
        }),
        async (req) => {
          let snapshotId: string | undefined;
          if (
            await expectClean(
              'CreateSnapshot',
              () => ctl.CreateSnapshot(req).then((r) => (snapshotId = r.snapshot?.snapshot_id)),
              req,
            )
          ) {
            expect(isValidName(snapshotId ?? '')).toBe(true);
            if (snapshotId !== FIXTURE_SNAPSHOT) created.snapshots.add(snapshotId!);
          }
        },
      ),
      params(),
    );
    await fuzzClean(
      'DeleteSnapshot',
      fc.record({ snapshot_id: hostileString(['snapshot-nothing-here']), secrets: stringMap }),
      (req) => ctl.DeleteSnapshot(req),
    );
  });

  it('NodeStageVolume and NodeUnstageVolume: volume_id, staging_target_path, capability, contexts; a `..` path is always refused', async () => {
    const node = stack.csi.node;
    await fuzzWithUndo(
      fc.record(
        {
          volume_id: mostly(fc.constant(SPARE_VOLUME), id(SPARE_VOLUME)),
          staging_target_path: fc.oneof(
            fc.constant(join(kubelet, 'spare', 'globalmount')),
            nodePath(kubelet, SYMLINKS),
          ),
          volume_capability: mostly(fc.constant(mountCap), capability),
          publish_context: mostly(
            fc.constant({}),
            fc.oneof(fc.constant({ 'sdshypervisor.io/access-mode': 'ro' }), stringMap),
          ),
          volume_context: mostly(fc.constant({}), fc.oneof(fc.constant({ fsType: 'xfs' }), stringMap)),
          secrets: stringMap,
        },
        { requiredKeys: ['volume_id', 'staging_target_path'] },
      ),
      {
        method: 'NodeStageVolume',
        send: (req) => node.NodeStageVolume(req),
        undoMethod: 'NodeUnstageVolume',
        undoOf: (req) => ({ volume_id: req.volume_id, staging_target_path: req.staging_target_path }),
        sendUndo: (undo) => node.NodeUnstageVolume(undo),
        check: refusesDotDotAndUndoes((req) => [req.staging_target_path]),
      },
    );
  });

  it('NodePublishVolume and NodeUnpublishVolume: target_path, staging_target_path, capability, readonly; a `..` path is always refused', async () => {
    const node = stack.csi.node;
    await fuzzWithUndo(
      fc.record(
        {
          volume_id: mostly(fc.constant(STAGED_VOLUME), id(STAGED_VOLUME)),
          staging_target_path: fc.oneof(
            { weight: 3, arbitrary: fc.constant(stagingPath) },
            { weight: 1, arbitrary: nodePath(kubelet, SYMLINKS) },
          ),
          target_path: nodePath(kubelet, SYMLINKS),
          volume_capability: mostly(fc.constant(mountCap), capability),
          readonly: fc.boolean(),
          publish_context: stringMap,
          volume_context: stringMap,
          secrets: stringMap,
        },
        { requiredKeys: ['volume_id', 'staging_target_path', 'target_path', 'readonly'] },
      ),
      {
        method: 'NodePublishVolume',
        send: (req) => node.NodePublishVolume(req),
        undoMethod: 'NodeUnpublishVolume',
        undoOf: (req) => ({ volume_id: req.volume_id, target_path: req.target_path }),
        sendUndo: (undo) => node.NodeUnpublishVolume(undo),
        check: refusesDotDotAndUndoes((req) => [req.target_path, req.staging_target_path]),
      },
    );
  });

  it('NodeGetVolumeStats and NodeExpandVolume: volume_path, staging path, capacity_range, capability', async () => {
    const node = stack.csi.node;
    const paths = fc.oneof(
      { weight: 1, arbitrary: fc.constant(stagingPath) },
      { weight: 3, arbitrary: nodePath(kubelet, SYMLINKS) },
    );
    await fuzzClean(
      'NodeGetVolumeStats',
      fc.record({
        volume_id: id(STAGED_VOLUME),
        volume_path: paths,
        staging_target_path: fc.oneof(fc.constant(''), paths),
      }),
      (req) => node.NodeGetVolumeStats(req),
    );
    await fuzzClean(
      'NodeExpandVolume',
      fc.record(
        {
          volume_id: id(STAGED_VOLUME),
          volume_path: paths,
          // Sizes the staged volume already has, sizes no volume can have, and garbage. (A size in between is
          // no bad input: it waits for ControllerExpandVolume to grow the device — tested in node-service.)
          capacity_range: fc.option(
            fc.record(
              {
                required_bytes: fc
                  .oneof(
                    fc.bigInt({ min: -(2n ** 63n), max: 64n * 2n ** 20n }),
                    fc.bigInt({ min: 2n ** 46n + 1n, max: 2n ** 63n - 1n }),
                  )
                  .map(String),
                limit_bytes: int64,
              },
              { requiredKeys: [] },
            ),
            { nil: undefined },
          ),
          staging_target_path: fc.oneof(fc.constant(''), paths),
          volume_capability: fc.option(capability, { nil: undefined }),
          secrets: stringMap,
        },
        { requiredKeys: ['volume_id', 'volume_path'] },
      ),
      (req) => node.NodeExpandVolume(req),
    );
  });

  it('GroupController: CreateVolumeGroupSnapshot, GetVolumeGroupSnapshot, DeleteVolumeGroupSnapshot', async () => {
    const group = stack.csi.groupController;
    expect(
      await expectClean('GroupControllerGetCapabilities', () => group.GroupControllerGetCapabilities({}), {}),
    ).toBe(true);
    const ids = fc.array(id(FIXTURE_VOLUME, SPARE_VOLUME), { maxLength: 3 });
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          name: mostly(
            fc.stringMatching(/^[a-z0-9]{1,12}$/).map((n) => `groupsnapshot-fuzz-${n}`),
            hostileString(),
          ),
          source_volume_ids: mostly<string[]>(fc.constant([FIXTURE_VOLUME]), ids),
          parameters: mostly(fc.constant({}), parameters),
          secrets: stringMap,
        }),
        async (req) => {
          let made: { id: string; members: string[] } | undefined;
          const ok = await expectClean(
            'CreateVolumeGroupSnapshot',
            () =>
              group.CreateVolumeGroupSnapshot(req).then((r) => {
                made = {
                  id: r.group_snapshot!.group_snapshot_id,
                  members: r.group_snapshot!.snapshots.map((m) => m.snapshot_id),
                };
              }),
            req,
          );
          if (ok) created.groups.set(made!.id, made!.members);
        },
      ),
      params(),
    );
    const groupIds = () =>
      fc.oneof(
        fc.constantFrom(...(created.groups.size > 0 ? [...created.groups.keys()] : ['groupsnapshot-none'])),
        hostileString(),
      );
    await fuzzClean(
      'GetVolumeGroupSnapshot',
      fc.record({
        group_snapshot_id: groupIds(),
        snapshot_ids: fc.array(id(FIXTURE_SNAPSHOT), { maxLength: 3 }),
        secrets: stringMap,
      }),
      (req) => group.GetVolumeGroupSnapshot(req),
    );
    await fuzzClean(
      'DeleteVolumeGroupSnapshot',
      fc.record({
        group_snapshot_id: hostileString(['groupsnapshot-nothing-here']),
        snapshot_ids: fc.array(hostileString(), { maxLength: 3 }),
        secrets: stringMap,
      }),
      (req) => group.DeleteVolumeGroupSnapshot(req),
    );
  });

  it('SnapshotMetadata: GetMetadataAllocated and GetMetadataDelta (streams): ids, offsets, page sizes', async () => {
    const meta = stack.csi.snapshotMetadata;
    await fuzzClean(
      'GetMetadataAllocated',
      fc.record({
        snapshot_id: id(FIXTURE_SNAPSHOT),
        starting_offset: int64,
        max_results: int32,
        secrets: stringMap,
      }),
      (req) => meta.GetMetadataAllocated(req),
    );
    await fuzzClean(
      'GetMetadataDelta',
      fc.record({
        base_snapshot_id: id(FIXTURE_SNAPSHOT),
        target_snapshot_id: id(FIXTURE_SNAPSHOT),
        starting_offset: int64,
        max_results: int32,
        secrets: stringMap,
      }),
      (req) => meta.GetMetadataDelta(req),
    );
  });

  it('afterwards: the canary beside the data is untouched, nothing new sits beside it, and the back end holds only what succeeded', async () => {
    expect(fingerprint(canary)).toEqual(canaryBefore);
    expect(readdirSync(stack.dir).sort()).toEqual(topBefore);
    // The emulator's own directory: only its files, every volume file a valid name.
    const data = stack.emulatorDataDir;
    expect(
      readdirSync(data).filter(
        (n) => !/^(emulator\.(db|db-wal|db-shm|json)|vbs\.sock|kv\.sock|images|luns|pools)$/.test(n),
      ),
    ).toEqual([]);
    for (const sub of ['volumes', 'snapshots']) {
      for (const n of readdirSync(join(data, 'pools', 'pool0', sub))) expect(isValidName(n), `${sub}/${n}`).toBe(true);
    }
    expect(readdirSync(join(data, 'pools', 'pool0', '.tmp'))).toEqual([]);

    // Undo what succeeded; then only the fixtures remain.
    const ctl = stack.csi.controller;
    const node = stack.csi.node;
    for (const [group, members] of created.groups)
      await stack.csi.groupController.DeleteVolumeGroupSnapshot({ group_snapshot_id: group, snapshot_ids: members });
    for (const snapshot of created.snapshots) await ctl.DeleteSnapshot({ snapshot_id: snapshot });
    for (const volume of created.volumes) await ctl.DeleteVolume({ volume_id: volume });
    const { volumes, snapshots } = await listEverything(stack.vbsSocket);
    expect(volumes.map((v) => v.vol_name).sort()).toEqual([FIXTURE_VOLUME, STAGED_VOLUME, SPARE_VOLUME].sort());
    expect(snapshots.map((s) => s.snap_name)).toEqual([FIXTURE_SNAPSHOT]);
    await node.NodeUnstageVolume({ volume_id: STAGED_VOLUME, staging_target_path: stagingPath });
    for (const name of [STAGED_VOLUME, SPARE_VOLUME])
      await ctl.ControllerUnpublishVolume({ volume_id: name, node_id: stack.hostId });
    await ctl.DeleteSnapshot({ snapshot_id: FIXTURE_SNAPSHOT });
    for (const name of [FIXTURE_VOLUME, STAGED_VOLUME, SPARE_VOLUME]) await ctl.DeleteVolume({ volume_id: name });
    expect(await listEverything(stack.vbsSocket)).toEqual({ volumes: [], snapshots: [] });
  });

  it('never answered INTERNAL or UNKNOWN', () => {
    const bad = internalAnswers(stack);
    expect(bad.map((l) => (l.length > 400 ? `${l.slice(0, 400)}…` : l))).toEqual([]);
  });
});
