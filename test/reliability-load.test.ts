// Load: many concurrent CreateVolume calls over fewer names, then as many concurrent DeleteVolume calls,
// through the real gRPC socket of a spawned driver on the real emulator. Every call must be OK or ABORTED
// (CSI's "operation pending"), never anything else; the back end must then hold exactly one volume per
// name, and after the deletes nothing at all: no record, no file, no row, no loop device.
// Counts come from the environment for the soak run (LOAD_CALLS, LOAD_NAMES; seed LOAD_SEED).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CreateVolumeResponse__Output } from '../src/generated/csi/v1/CreateVolumeResponse.js';
import { settle } from './support/csi-client.js';
import { databaseRows, MiB, seededRandom, backendState, poolLoopDevices } from './support/backend-audit.js';
import { soakSettings } from './support/soak-settings.js';
import { internalAnswers, startStack, type Stack } from './support/stack.js';

// SPREAD_MS: calls start at seeded random moments within this window, so some meet a held lock and some a
// finished volume.
const { CALLS, NAMES, SEED, SPREAD_MS } = soakSettings('LOAD', {
  CALLS: 1000,
  NAMES: 200,
  SEED: 9001,
  SPREAD_MS: 2000,
});
// ext4's minimum (CreateVolume rounds a filesystem volume up to it).
const SIZE = 8 * MiB;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function shuffled<T>(items: T[], rand: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function tally(codes: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of codes) out[c] = (out[c] ?? 0) + 1;
  return out;
}

/**
 * CALLS calls of `call`, each name NAMES-many times in a seeded shuffle; half start at once, half at seeded
 * moments within SPREAD_MS. Asserts every call ended OK or ABORTED.
 */
async function storm<T>(names: string[], seed: number, call: (name: string) => Promise<T>) {
  const rand = seededRandom(seed);
  const order = shuffled(
    Array.from({ length: CALLS }, (_, i) => names[i % names.length]!),
    rand,
  );
  const delays = order.map((_, i) => (i % 2 === 0 ? 0 : Math.floor(rand() * SPREAD_MS)));
  const started = Date.now();
  const results = await Promise.all(
    order.map(async (name, i) => ({ name, outcome: await settle(sleep(delays[i]!).then(() => call(name))) })),
  );
  const wallMs = Date.now() - started;
  const codes = tally(results.map((r) => (r.outcome.ok ? 'OK' : r.outcome.codeName)));
  const unexpected = results.filter((r) => !r.outcome.ok && r.outcome.codeName !== 'ABORTED');
  expect(
    unexpected.slice(0, 5).map((r) => (r.outcome.ok ? '' : `${r.name}: ${r.outcome.codeName} ${r.outcome.message}`)),
  ).toEqual([]);
  return { results, wallMs, codes };
}

let stack: Stack;

beforeAll(async () => {
  // 4 GiB × the default over-subscription of 4 holds 2,048 volumes of 8 MiB.
  stack = await startStack({ pools: ['pool0:4G'], driverArgs: ['--log-level=warn'] });
});
afterAll(async () => {
  await stack?.stop();
});

describe(`load: ${CALLS} concurrent CreateVolume over ${NAMES} names, then ${CALLS} concurrent DeleteVolume (seed ${SEED})`, () => {
  const names = Array.from({ length: NAMES }, (_, i) => `pvc-load-${String(i).padStart(5, '0')}`);
  const figures: Record<string, unknown> = { calls: CALLS, names: NAMES, spreadMs: SPREAD_MS, seed: SEED };

  it(
    'creates exactly one volume per name; each call OK or ABORTED; every OK for a name describes the same volume',
    async () => {
      const ctl = stack.csi.controller;
      const { results, wallMs, codes } = await storm(names, SEED, (name) =>
        ctl.CreateVolume(
          {
            name,
            capacity_range: { required_bytes: String(SIZE) },
            volume_capabilities: [{ mount: { fs_type: 'ext4' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
            parameters: { thin: 'true' },
          },
          { timeoutMs: 120_000 },
        ),
      );
      figures.create = { wallMs, codes };
      console.log(`[reliability] load create: ${JSON.stringify(figures)}`);

      const volumeOf = new Map<string, CreateVolumeResponse__Output['volume']>();
      for (const r of results) {
        if (!r.outcome.ok) continue;
        const v = r.outcome.value.volume;
        expect(v?.volume_id).toBe(r.name);
        expect(v?.capacity_bytes).toBe(String(SIZE));
        const first = volumeOf.get(r.name);
        if (first) expect(v).toEqual(first);
        else volumeOf.set(r.name, v);
      }
      // The first call for a name takes its lock, so every name got at least one OK.
      expect(volumeOf.size).toBe(NAMES);

      const { records, files, problems } = await backendState(stack, 97); // an odd page size: paging too
      expect(records.volumes.map((v) => v.vol_name).sort()).toEqual(names);
      expect(records.volumes.every((v) => v.vol_size === String(SIZE / MiB))).toBe(true);
      expect(problems).toEqual([]);
      expect(files.volumes.size).toBe(NAMES);
    },
    60_000 + CALLS * 50,
  );

  it(
    'deletes them all; each call OK or ABORTED; no record, no file, no loop device, and (stopped) no row is left',
    async () => {
      const ctl = stack.csi.controller;
      const { results, wallMs, codes } = await storm(names, SEED + 1, (name) =>
        ctl.DeleteVolume({ volume_id: name }, { timeoutMs: 120_000 }),
      );
      figures.delete = { wallMs, codes };
      console.log(`[reliability] load delete: ${JSON.stringify(figures)}`);

      expect(new Set(results.filter((r) => r.outcome.ok).map((r) => r.name)).size).toBe(NAMES);

      const { records, files } = await backendState(stack);
      expect(records).toEqual({ volumes: [], snapshots: [] });
      expect([...files.volumes.keys(), ...files.snapshots.keys(), ...files.tmp]).toEqual([]);
      expect(await poolLoopDevices(stack.emulatorDataDir)).toEqual([]);
      expect((await ctl.ListVolumes({})).entries).toEqual([]);

      await stack.stopEmulator();
      expect(databaseRows(stack.emulatorDataDir)).toEqual({ volumes: [], snapshots: [], attachments: 0 });
    },
    60_000 + CALLS * 50,
  );

  it('never answered INTERNAL or UNKNOWN', () => {
    expect(internalAnswers(stack)).toEqual([]);
  });
});
