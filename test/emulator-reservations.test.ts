// The emulator's promises of thick space (emulator/reservations.ts): what a promise counts while its file
// grows, and the wait a refused create makes for allocations in flight (capacity.ts, waitOutAllocations).
import { closeSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { waitOutAllocations } from '../emulator/capacity.js';
import type { Ctx } from '../emulator/context.js';
import { VbsError } from '../emulator/errors.js';
import { ThickReservations } from '../emulator/reservations.js';
import { RetCode } from '../src/protocol/vbs.js';
import { makeTempDir, MiB } from './support/emulator.js';

const noSpace = () => new VbsError(RetCode.NO_SPACE, 'vol_size: pool pool0 has 11 MiB free, 98 MiB needed');

describe('thick reservations', () => {
  it('a promise counts what its file has not allocated yet, and nothing once released', () => {
    const dir = makeTempDir('emu-reserve-');
    try {
      const file = join(dir, 'vol');
      closeSync(openSync(file, 'w'));
      const r = new ThickReservations();
      const release = r.reserve('pool0', 8 * MiB, file);
      expect(r.get('pool0')).toBe(8 * MiB);
      expect(r.inFlight('pool0')).toBe(true);
      writeFileSync(file, Buffer.alloc(3 * MiB, 1));
      expect(r.get('pool0')).toBe(5 * MiB);
      release();
      expect(r.get('pool0')).toBe(0);
      expect(r.inFlight('pool0')).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a refusal for space waits for the next release in its pool; others and idle pools do not wait', async () => {
    const r = new ThickReservations();
    const ctx = { thickReserved: r } as unknown as Ctx;
    const release = r.reserve('pool0', 8 * MiB);
    r.reserve('pool1', 8 * MiB);
    let woke = false;
    const waiting = waitOutAllocations(ctx, 'pool0', noSpace()).then(() => (woke = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(woke).toBe(false);
    release();
    await waiting;
    expect(woke).toBe(true);
    // Nothing in flight in pool0 now: the refusal stands.
    await expect(waitOutAllocations(ctx, 'pool0', noSpace())).rejects.toThrow(/11 MiB free/);
    // Another error never waits, even with an allocation in flight (pool1).
    const other = new VbsError(RetCode.INVALID_PARAMETER, 'vol_size: not a number');
    await expect(waitOutAllocations(ctx, 'pool1', other)).rejects.toBe(other);
  });
});
