// Faults on the control plane, driven through the driver as a CO would:
// - kill -9 of the emulator at a seeded random moment while CreateVolume (blank, thick, clones of volumes
//   and snapshots, linked and full), CreateSnapshot, ControllerExpandVolume, DeleteVolume and DeleteSnapshot
//   run; the emulator restarts on the same data directory, the same CSI calls are repeated until each one
//   succeeds (bounded), and then everything the CSI layer was told exists is on the back end with a file of
//   the right size, nothing else is, rows and files agree and nothing is left under construction;
// - the back end unreachable (killed, or nothing listening) → UNAVAILABLE from every back-end call, and the
//   same driver process recovers when it returns.
// Rounds and seed from the environment for the soak run (FAULT_ROUNDS, FAULT_SEED).
import { describe, expect, it } from 'vitest';
import type { VolumeCapability } from '../src/generated/csi/v1/VolumeCapability.js';
import { call } from './support/emulator.js';
import { settle, status, type ControllerApi } from './support/csi-client.js';
import { databaseRows, MiB, seededRandom, backendState, poolLoopDevices } from './support/backend-audit.js';
import { soakSettings } from './support/soak-settings.js';
import { internalAnswers, type Stack } from './support/stack.js';
import { stackForSuite } from './support/suite-stack.js';

// KILL_WINDOW_MS: the kill lands this long (at most) after the round's calls were sent.
const { ROUNDS, SEED, KILL_WINDOW_MS } = soakSettings('FAULT', { ROUNDS: 20, SEED: 4711, KILL_WINDOW_MS: 40 });
const MAX_RETRIES = 100;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const mountCap: VolumeCapability = { mount: { fs_type: 'ext4' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };

/** What the CSI layer has been told exists once every call of a round has succeeded. */
interface Model {
  volumes: Map<string, number>;
  snapshots: Map<string, { source: string; bytes: number }>;
}

type Op =
  | { kind: 'create'; name: string; bytes: number; thin: boolean }
  | { kind: 'clone-volume'; name: string; source: string; bytes: number; mode: 'linked' | 'full' }
  | { kind: 'clone-snapshot'; name: string; source: string; bytes: number; mode: 'linked' | 'full' }
  | { kind: 'snapshot'; name: string; source: string }
  | { kind: 'extend'; name: string; bytes: number }
  | { kind: 'delete-volume'; name: string }
  | { kind: 'delete-snapshot'; name: string };

function describeOp(op: Op): string {
  return JSON.stringify(op);
}

function send(ctl: ControllerApi, op: Op): Promise<unknown> {
  const opts = { timeoutMs: 30_000 };
  switch (op.kind) {
    case 'create':
      return ctl.CreateVolume(
        {
          name: op.name,
          capacity_range: { required_bytes: String(op.bytes) },
          volume_capabilities: [mountCap],
          parameters: { thin: String(op.thin) },
        },
        opts,
      );
    case 'clone-volume':
    case 'clone-snapshot':
      return ctl.CreateVolume(
        {
          name: op.name,
          capacity_range: { required_bytes: String(op.bytes) },
          volume_capabilities: [mountCap],
          parameters: { cloneMode: op.mode },
          volume_content_source:
            op.kind === 'clone-volume'
              ? { volume: { volume_id: op.source } }
              : { snapshot: { snapshot_id: op.source } },
        },
        opts,
      );
    case 'snapshot':
      return ctl.CreateSnapshot({ name: op.name, source_volume_id: op.source }, opts);
    case 'extend':
      return ctl.ControllerExpandVolume(
        { volume_id: op.name, capacity_range: { required_bytes: String(op.bytes) }, volume_capability: mountCap },
        opts,
      );
    case 'delete-volume':
      return ctl.DeleteVolume({ volume_id: op.name }, opts);
    case 'delete-snapshot':
      return ctl.DeleteSnapshot({ snapshot_id: op.name }, opts);
  }
}

/** What the model holds once `op` has succeeded. */
function apply(model: Model, op: Op): void {
  switch (op.kind) {
    case 'create':
    case 'clone-volume':
    case 'clone-snapshot':
    case 'extend':
      model.volumes.set(op.name, op.bytes);
      break;
    case 'snapshot':
      model.snapshots.set(op.name, { source: op.source, bytes: model.volumes.get(op.source)! });
      break;
    case 'delete-volume':
      model.volumes.delete(op.name);
      break;
    case 'delete-snapshot':
      model.snapshots.delete(op.name);
      break;
  }
}

/**
 * A round's calls. Within a round a name is either read (a source) or changed (extended, deleted), never
 * both, so the end state does not depend on the order the calls happen to run in.
 */
function planRound(model: Model, round: number, rand: () => number): Op[] {
  const pick = <T>(list: T[]): T | undefined =>
    list.length === 0 ? undefined : list[Math.floor(rand() * list.length)];
  const size = (min: number, max: number) => (min + Math.floor(rand() * (max - min + 1))) * MiB;
  const read = new Set<string>();
  const changed = new Set<string>();
  const free = (names: Iterable<string>) => [...names].filter((n) => !read.has(n) && !changed.has(n));
  const readable = (names: Iterable<string>) => [...names].filter((n) => !changed.has(n));
  const ops: Op[] = [];
  const count = 5 + Math.floor(rand() * 5);
  let seq = 0;
  const fresh = (prefix: string) => `${prefix}-r${round}-${seq++}`;
  /** Plans a clone of a readable source among `sources`, at least its size; false when there is none. */
  const clone = <T>(
    kind: 'clone-volume' | 'clone-snapshot',
    prefix: string,
    sources: Map<string, T>,
    bytesOf: (source: T) => number,
  ): boolean => {
    const source = pick(readable(sources.keys()));
    if (!source) return false;
    read.add(source);
    const bytes = bytesOf(sources.get(source)!) + size(0, 16);
    ops.push({ kind, name: fresh(prefix), source, bytes, mode: rand() < 0.5 ? 'linked' : 'full' });
    return true;
  };
  for (let i = 0; i < count; i++) {
    const crowded = model.volumes.size > 14;
    const r = rand();
    if (crowded && rand() < 0.6) {
      const target = pick(free(model.volumes.keys()));
      if (target) {
        changed.add(target);
        ops.push({ kind: 'delete-volume', name: target });
        continue;
      }
    }
    if (r < (crowded ? 0.05 : 0.25)) {
      ops.push({ kind: 'create', name: fresh('pvc'), bytes: size(8, 64), thin: rand() < 0.7 });
      continue;
    }
    if (r < 0.4 && clone('clone-volume', 'pvc-clone', model.volumes, (bytes) => bytes)) continue;
    if (r < 0.55 && clone('clone-snapshot', 'pvc-restore', model.snapshots, (snapshot) => snapshot.bytes)) continue;
    if (r < 0.7) {
      const source = pick(readable(model.volumes.keys()));
      if (source && model.snapshots.size < 12) {
        read.add(source);
        ops.push({ kind: 'snapshot', name: fresh('snapshot'), source });
        continue;
      }
    }
    if (r < 0.8) {
      const target = pick(free(model.volumes.keys()));
      if (target) {
        changed.add(target);
        ops.push({ kind: 'extend', name: target, bytes: model.volumes.get(target)! + size(8, 32) });
        continue;
      }
    }
    if (r < 0.93 || crowded) {
      const target = pick(free(model.volumes.keys()));
      if (target) {
        changed.add(target);
        ops.push({ kind: 'delete-volume', name: target });
        continue;
      }
    }
    const target = pick(free(model.snapshots.keys()));
    if (target) {
      changed.add(target);
      ops.push({ kind: 'delete-snapshot', name: target });
    }
  }
  return ops;
}

/** Codes a call may answer while the back end is down or restarting, or while a first attempt still runs. */
const TRANSIENT = new Set(['UNAVAILABLE', 'ABORTED', 'DEADLINE_EXCEEDED']);

/** Repeats one call until it succeeds; anything but a transient failure ends the test. Returns the attempts. */
async function converge(ctl: ControllerApi, op: Op): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const outcome = await settle(send(ctl, op));
    if (outcome.ok) return attempt;
    if (!TRANSIENT.has(outcome.codeName))
      throw new Error(`${describeOp(op)} failed for good: ${outcome.codeName} ${outcome.message}`);
    if (attempt >= MAX_RETRIES)
      throw new Error(`${describeOp(op)} still ${outcome.codeName} after ${attempt} attempts: ${outcome.message}`);
    await sleep(Math.min(20 * attempt, 200));
  }
}

/** The back end and the CSI layer both show exactly the model; rows and files agree. */
async function audit(stack: Stack, model: Model, where: string): Promise<void> {
  const { records, problems } = await backendState(stack);
  expect(problems, where).toEqual([]);
  const volumes = Object.fromEntries(records.volumes.map((v) => [v.vol_name!, Number(v.vol_size) * MiB]));
  expect(volumes, where).toEqual(Object.fromEntries(model.volumes));
  const snapshots = Object.fromEntries(
    records.snapshots.map((s) => [s.snap_name!, { source: s.vol_name!, bytes: Number(s.vol_size) * MiB }]),
  );
  expect(snapshots, where).toEqual(Object.fromEntries(model.snapshots));
  const ctl = stack.csi.controller;
  const listed = (await ctl.ListVolumes({})).entries.map((e) => [
    e.volume!.volume_id,
    Number(e.volume!.capacity_bytes),
  ]);
  expect(Object.fromEntries(listed), where).toEqual(Object.fromEntries(model.volumes));
  const snaps = (await ctl.ListSnapshots({})).entries.map((e) => e.snapshot!.snapshot_id).sort();
  expect(snaps, where).toEqual([...model.snapshots.keys()].sort());
  expect(await poolLoopDevices(stack.emulatorDataDir), where).toEqual([]);
  // The pool's count of provisioned space (kept in memory, rebuilt at start) matches the volumes.
  const pool = (await call(stack.vbsSocket, 'QUERY_POOLS_CAPABILITY_REQ')).record('pool0');
  expect(Number(pool.provisioned_mb), where).toBe([...model.volumes.values()].reduce((a, b) => a + b, 0) / MiB);
}

/** The repair counts of the emulator's last start-up ("reconciled" log line). */
function lastReconcile(log: string): Record<string, number> | undefined {
  const lines = log.split('\n').filter((l) => l.includes('"msg":"reconciled"'));
  if (lines.length === 0) return undefined;
  const entry = JSON.parse(lines[lines.length - 1]!) as Record<string, unknown>;
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(entry))
    if (typeof v === 'number' && !['level', 'time', 'pid'].includes(k)) out[k] = v;
  return out;
}

describe(`kill -9 of the emulator during controller calls: ${ROUNDS} seeded rounds (seed ${SEED})`, () => {
  let stack: Stack;
  stackForSuite(
    { pools: ['pool0:4G'], emulatorArgs: ['--log-level', 'info'], driverArgs: ['--vbs-timeout-ms=10000'] },
    (started) => (stack = started),
  );

  it(
    'every repeated call converges, and afterwards the back end holds exactly what the CSI layer was told',
    async () => {
      const rand = seededRandom(SEED);
      const ctl = stack.csi.controller;
      const model: Model = { volumes: new Map(), snapshots: new Map() };
      // A starting population, without faults.
      for (let i = 0; i < 6; i++) {
        const op: Op = { kind: 'create', name: `pvc-base-${i}`, bytes: (16 + 8 * i) * MiB, thin: i % 3 !== 0 };
        await send(ctl, op);
        apply(model, op);
      }
      for (const [i, source] of ['pvc-base-0', 'pvc-base-1'].entries()) {
        const op: Op = { kind: 'snapshot', name: `snapshot-base-${i}`, source };
        await send(ctl, op);
        apply(model, op);
      }
      await audit(stack, model, 'before the first round');

      const figures = {
        rounds: ROUNDS,
        seed: SEED,
        calls: 0,
        interrupted: 0,
        retries: 0,
        kinds: {} as Record<string, number>,
        firstCodes: {} as Record<string, number>,
        repairs: {} as Record<string, number>,
      };
      for (let round = 0; round < ROUNDS; round++) {
        const ops = planRound(model, round, rand);
        const killAfter = Math.floor(rand() * KILL_WINDOW_MS);
        const where = `round ${round} (seed ${SEED}, kill after ${killAfter} ms): ${ops.map(describeOp).join(' ')}`;
        const first = ops.map((op) => settle(send(ctl, op)));
        await sleep(killAfter);
        await stack.killEmulator();
        const outcomes = await Promise.all(first);
        for (const o of outcomes) {
          const code = o.ok ? 'OK' : o.codeName;
          figures.firstCodes[code] = (figures.firstCodes[code] ?? 0) + 1;
          if (!o.ok && !TRANSIENT.has(o.codeName))
            throw new Error(`${where}: a first attempt answered ${o.codeName}: ${o.message}`);
        }
        figures.interrupted += outcomes.filter((o) => !o.ok).length;
        await stack.startEmulator();
        const repairs = lastReconcile(stack.emulatorLog());
        for (const [k, v] of Object.entries(repairs ?? {})) figures.repairs[k] = (figures.repairs[k] ?? 0) + v;
        // The same calls again, every one of them, until each succeeds.
        const attempts = await Promise.all(
          ops.map((op) =>
            converge(ctl, op).catch((err: Error) => Promise.reject(new Error(`${where}: ${err.message}`))),
          ),
        );
        figures.retries += attempts.reduce((a, b) => a + b, 0);
        for (const op of ops) {
          apply(model, op);
          figures.kinds[op.kind] = (figures.kinds[op.kind] ?? 0) + 1;
        }
        figures.calls += ops.length;
        await audit(stack, model, where);
      }
      console.log(`[reliability] emulator kill -9: ${JSON.stringify(figures)}`);
      // The kills did land inside calls, not only between them.
      expect(figures.interrupted).toBeGreaterThan(0);

      // The rows themselves, read once the daemon has let go of its database.
      await stack.stopEmulator();
      const rows = databaseRows(stack.emulatorDataDir);
      expect(rows.volumes).toEqual(
        [...model.volumes]
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([name, bytes]) => ({ name, state: 'available', size_mb: bytes / MiB })),
      );
      expect(rows.snapshots).toEqual(
        [...model.snapshots]
          .sort(([a], [b]) => (a < b ? -1 : 1))
          .map(([name, s]) => ({ name, state: 'available', size_mb: s.bytes / MiB })),
      );
      expect(rows.attachments).toBe(0);
      await stack.startEmulator();
    },
    60_000 + ROUNDS * 10_000,
  );

  it('never answered INTERNAL or UNKNOWN', () => {
    expect(internalAnswers(stack)).toEqual([]);
  });
});

describe('the back end unreachable', () => {
  let stack: Stack;
  stackForSuite({ pools: ['pool0:2G'], mode: 'all' }, (started) => (stack = started));

  it('killed: every back-end call answers UNAVAILABLE (or its spec code), Probe says not ready; it comes back without a driver restart', async () => {
    const ctl = stack.csi.controller;
    const node = stack.csi.node;
    const { volume } = await ctl.CreateVolume({
      name: 'pvc-before',
      volume_capabilities: [mountCap],
      capacity_range: { required_bytes: String(16 * MiB) },
    });
    const { snapshot } = await ctl.CreateSnapshot({ name: 'snapshot-before', source_volume_id: volume!.volume_id });
    const driverPid = stack.driverProcess()!.pid;
    await stack.killEmulator();

    expect((await stack.csi.identity.Probe({}, { timeoutMs: 10_000 })).ready?.value).toBe(false);
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['CreateVolume', () => ctl.CreateVolume({ name: 'pvc-while-down', volume_capabilities: [mountCap] })],
      ['DeleteVolume', () => ctl.DeleteVolume({ volume_id: volume!.volume_id })],
      [
        'ControllerPublishVolume',
        () =>
          ctl.ControllerPublishVolume({
            volume_id: volume!.volume_id,
            node_id: stack.hostId,
            volume_capability: mountCap,
          }),
      ],
      [
        'ControllerUnpublishVolume',
        () => ctl.ControllerUnpublishVolume({ volume_id: volume!.volume_id, node_id: stack.hostId }),
      ],
      [
        'ValidateVolumeCapabilities',
        () => ctl.ValidateVolumeCapabilities({ volume_id: volume!.volume_id, volume_capabilities: [mountCap] }),
      ],
      ['ListVolumes', () => ctl.ListVolumes({})],
      ['GetCapacity', () => ctl.GetCapacity({})],
      [
        'CreateSnapshot',
        () => ctl.CreateSnapshot({ name: 'snapshot-while-down', source_volume_id: volume!.volume_id }),
      ],
      ['DeleteSnapshot', () => ctl.DeleteSnapshot({ snapshot_id: snapshot!.snapshot_id })],
      ['ListSnapshots', () => ctl.ListSnapshots({})],
      ['GetSnapshot', () => ctl.GetSnapshot({ snapshot_id: snapshot!.snapshot_id })],
      [
        'ControllerExpandVolume',
        () =>
          ctl.ControllerExpandVolume({
            volume_id: volume!.volume_id,
            capacity_range: { required_bytes: String(32 * MiB) },
          }),
      ],
      ['ControllerGetVolume', () => ctl.ControllerGetVolume({ volume_id: volume!.volume_id })],
      [
        'ControllerModifyVolume',
        () => ctl.ControllerModifyVolume({ volume_id: volume!.volume_id, mutable_parameters: { maxIOPS: '100' } }),
      ],
      // The data plane: sds_cli cannot reach the VBS's KV socket either.
      [
        'NodeStageVolume',
        () =>
          node.NodeStageVolume({
            volume_id: volume!.volume_id,
            staging_target_path: `${stack.dir}/staging`,
            volume_capability: mountCap,
          }),
      ],
      [
        'NodeUnstageVolume',
        () => node.NodeUnstageVolume({ volume_id: volume!.volume_id, staging_target_path: `${stack.dir}/staging` }),
      ],
    ];
    const codes: Record<string, string> = {};
    for (const [method, call] of calls) {
      const outcome = await settle(call());
      codes[method] = outcome.ok ? 'OK' : outcome.codeName;
    }
    expect(codes).toEqual(Object.fromEntries(calls.map(([m]) => [m, 'UNAVAILABLE'])));

    await stack.startEmulator();
    expect(stack.driverProcess()!.pid).toBe(driverPid);
    expect((await stack.csi.identity.Probe({})).ready?.value).toBe(true);
    expect((await ctl.ControllerGetVolume({ volume_id: volume!.volume_id })).volume?.volume_id).toBe(volume!.volume_id);
    await ctl.CreateVolume({
      name: 'pvc-while-down',
      volume_capabilities: [mountCap],
      capacity_range: { required_bytes: String(16 * MiB) },
    });
    await ctl.DeleteSnapshot({ snapshot_id: snapshot!.snapshot_id });
    await ctl.DeleteVolume({ volume_id: 'pvc-while-down' });
    await ctl.DeleteVolume({ volume_id: volume!.volume_id });
    expect((await ctl.ListVolumes({})).entries).toEqual([]);
  });

  it('nothing listening at its address at all: UNAVAILABLE, not INTERNAL', async () => {
    await stack.stopDriver();
    // A TCP port nobody listens on (bound then closed) and a socket path that does not exist.
    const net = await import('node:net');
    const port = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as import('node:net').AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    for (const url of [`tcp://127.0.0.1:${port}`, `unix://${stack.dir}/no-such.sock`]) {
      await stack.startDriver([`--vbs-url=${url}`], 'serving');
      expect((await stack.csi.identity.Probe({})).ready?.value).toBe(false);
      const outcome = await settle(
        stack.csi.controller.CreateVolume({ name: 'pvc-nowhere', volume_capabilities: [mountCap] }),
      );
      expect(outcome.ok ? 'OK' : outcome.code, url).toBe(status.UNAVAILABLE);
      await stack.stopDriver();
    }
    await stack.startDriver();
  });

  it('never answered INTERNAL or UNKNOWN', () => {
    expect(internalAnswers(stack)).toEqual([]);
  });
});
