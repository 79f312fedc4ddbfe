// Space accounting of the emulator's pools (issue #15, items 11 and 12): concurrent thick creates get
// exactly what sequential ones would (a promise of space counts only what its file has not allocated yet),
// and an import that runs out of space fails as NO_SPACE (error_code of the job), which the driver answers
// as RESOURCE_EXHAUSTED (controller-images-unit.test.ts), never as a bad argument.
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RetCode } from '../src/protocol/vbs.js';
import { jobFromRecord } from '../src/sds/records.js';
import { call, makeTempDir, MiB, sleep, waitGone, waitJob } from './support/emulator.js';
import { daemonForSuite } from './support/emulator-suite.js';
import { failure, status } from './support/csi-client.js';
import { blockCap } from './support/features.js';
import { startStack } from './support/stack.js';

describe('pool space under concurrency', () => {
  let sock: string;
  let images: string;

  const freeMb = async (): Promise<number> =>
    Number(
      (await call(sock, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 1, pool_id: 'pool0' })).record('pool0')
        .usable_capacity_mb,
    );

  daemonForSuite(
    () => {
      const dir = makeTempDir('emu-thick-');
      images = join(dir, 'images');
      mkdirSync(images, { mode: 0o755 });
      return { dir, args: ['--pool', 'pool0:1G', '--image-dir', images] };
    },
    (started) => (sock = started.info.controlSocket),
  );

  it('five concurrent thick creates fit wherever five sequential ones do, and a sixth does not', async () => {
    // Leave a little over 5 × 90 MiB free, as in the report (501 MiB).
    const filler = (await freeMb()) - 501;
    expect(
      (await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'filler', vol_size: filler, thin_flag: 0 })).retcode,
    ).toBe(0);
    for (let round = 0; round < 3; round++) {
      // XFS may give back a deleted file's blocks a moment after the unlink: start each round once they are back.
      let free = await freeMb();
      for (let i = 0; i < 200 && free < 490; i++) {
        await sleep(50);
        free = await freeMb();
      }
      // Five volumes that just fit (10 MiB to spare); the sixth then cannot.
      const size = Math.floor((free - 10) / 5);
      const names = [0, 1, 2, 3, 4].map((i) => `thick-${round}-${i}`);
      const answers = await Promise.all(
        names.map((n) => call(sock, 'CREATE_VOLUME_REQ', { vol_name: n, vol_size: size, thin_flag: 0 })),
      );
      expect(
        answers.map((a) => [a.retcode, a.get('ret_desc')]),
        `round ${round}, ${free} MiB free, 5 × ${size} MiB`,
      ).toEqual(names.map(() => [0, undefined]));
      const sixth = await call(sock, 'CREATE_VOLUME_REQ', {
        vol_name: `thick-${round}-5`,
        vol_size: size,
        thin_flag: 0,
      });
      expect(sixth.retcode).toBe(RetCode.NO_SPACE);
      for (const n of names) {
        expect((await call(sock, 'DELETE_VOLUME_REQ', { vol_name: n })).retcode).toBe(0);
        await waitGone(sock, 'QUERY_VOLUME_REQ', { vol_name: n });
      }
    }
    expect((await call(sock, 'DELETE_VOLUME_REQ', { vol_name: 'filler' })).retcode).toBe(0);
    await waitGone(sock, 'QUERY_VOLUME_REQ', { vol_name: 'filler' });
  });

  it('an import into a full pool fails as NO_SPACE and leaves no volume', async () => {
    // 48 MiB of data into a pool with about 16 MiB free: the thin import runs out while it writes.
    const image = join(images, 'big.raw');
    writeFileSync(image, randomBytes(48 * MiB));
    // Fillers until about 16 MiB are free (space of the last test's deletes may still be coming back).
    for (let i = 0; i < 5 && (await freeMb()) > 24; i++) {
      expect(
        (
          await call(sock, 'CREATE_VOLUME_REQ', {
            vol_name: `filler2-${i}`,
            vol_size: (await freeMb()) - 16,
            thin_flag: 0,
          })
        ).retcode,
      ).toBe(0);
    }
    expect(await freeMb()).toBeLessThanOrEqual(24);
    const a = await call(sock, 'IMPORT_IMAGE_REQ', { vol_name: 'too-big', image_url: image, vol_size: 64 });
    expect(a.retcode, a.text).toBe(0);
    const job = await waitJob(sock, a.get('job_id')!);
    expect(job).toMatchObject({ status: 'failed', error_code: String(RetCode.NO_SPACE) });
    expect(job.error).toMatch(/ENOSPC|no space/i);
    expect(jobFromRecord(job)).toMatchObject({ state: 'failed', outOfSpace: true });
    expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'too-big' })).retcode).toBe(RetCode.NOT_EXIST);
    // A thick import is refused up front when its space is not there.
    const b = await call(sock, 'IMPORT_IMAGE_REQ', {
      vol_name: 'too-big-thick',
      image_url: image,
      vol_size: 64,
      thin_flag: 0,
    });
    expect(b.retcode).toBe(RetCode.NO_SPACE);
  });
});

describe('a full pool through the driver', () => {
  it('CreateVolume from an image that does not fit the pool answers RESOURCE_EXHAUSTED and leaves no volume', async () => {
    const stack = await startStack({ mode: 'controller', pools: ['pool0:1G'] });
    try {
      const free = async () =>
        Number(
          (await call(stack.vbsSocket, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 1, pool_id: 'pool0' })).record('pool0')
            .usable_capacity_mb,
        );
      const image = join(stack.emulatorDataDir, 'images', 'big.raw');
      writeFileSync(image, randomBytes(48 * MiB));
      const ctl = stack.csi.controller;
      await ctl.CreateVolume({
        name: 'pvc-filler',
        volume_capabilities: [blockCap()],
        parameters: { thin: 'false' },
        capacity_range: { required_bytes: String(((await free()) - 16) * MiB) },
      });
      const f = await failure(
        ctl.CreateVolume({
          name: 'pvc-too-big',
          volume_capabilities: [blockCap()],
          parameters: { imageSource: image },
          capacity_range: { required_bytes: String(64 * MiB) },
        }),
      );
      expect([f.code, f.message]).toEqual([status.RESOURCE_EXHAUSTED, expect.stringMatching(/could not be imported/)]);
      // Volume ids are the CO's names: the filler is there, the failed import's volume is not.
      expect((await call(stack.vbsSocket, 'QUERY_VOLUME_REQ', { vol_name: 'pvc-filler' })).retcode).toBe(0);
      expect((await call(stack.vbsSocket, 'QUERY_VOLUME_REQ', { vol_name: 'pvc-too-big' })).retcode).toBe(
        RetCode.NOT_EXIST,
      );
    } finally {
      await stack.stop();
    }
  });
});
