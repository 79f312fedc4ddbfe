// The node tests' stand-in connector keeps the real connector's contract when the kernel detaches lazily: a
// device someone still holds at detach time is only marked autoclear and vanishes at its last close, so it is
// never handed out again as the volume's device (that made a stage see a formatted volume as blank).
import { closeSync, openSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backingFileOf } from '../emulator/loopdev.js';
import { LoopConnector } from './support/loop-connector.js';
import { LoopFixtures, sh } from './support/loop-fixtures.js';

const MiB = 1024 * 1024;

describe('LoopConnector', () => {
  let fx: LoopFixtures;
  beforeAll(async () => {
    fx = await LoopFixtures.create('loop-connector');
  });
  afterAll(async () => {
    await fx.cleanup();
  });

  it('after a detach of a held device, attach gives a new device that stays bound', async () => {
    const connector = new LoopConnector(fx);
    const file = await connector.create('held', 16 * MiB);
    const first = await connector.attach('held');
    sh('dd', ['if=/dev/urandom', `of=${first}`, 'bs=4096', 'count=1', 'oflag=direct', 'status=none']);
    const held = openSync(first, 'r'); // a concurrent reader (blkid, a closing mount) holds the device
    let second: string;
    try {
      const detaching = connector.detach('held');
      // The stand-in waits for the unbind, which cannot come while the device is held: attach meanwhile.
      await new Promise((r) => setTimeout(r, 200));
      second = await connector.attach('held');
      expect(second).not.toBe(first);
      closeSync(held);
      await detaching;
    } catch (err) {
      closeSync(held);
      throw err;
    }
    expect(backingFileOf(second)).toBe(file);
    expect(await connector.queryDevice('held')).toBe(second);
    const onDevice = sh('dd', [`if=${second}`, 'bs=4096', 'count=1', 'iflag=direct', 'status=none']);
    const inFile = sh('dd', [`if=${file}`, 'bs=4096', 'count=1', 'status=none']);
    expect(onDevice.length).toBeGreaterThan(0);
    expect(onDevice).toBe(inFile);
    await connector.detach('held');
    expect(await connector.queryDevice('held')).toBeUndefined();
  });
});
