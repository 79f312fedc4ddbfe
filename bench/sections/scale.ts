// The back end at scale (issue 19): an emulator and a controller of their own, filled with `scaleVolumes`
// thin volumes (100,000 of 16 MiB, the pool over-subscribed up to 100×; --quick 2,000) straight through the
// socket API, then what grows with the count:
// a CreateVolume+DeleteVolume pair through the controller at that count, a full ListVolumes pass in pages of
// 500, and an emulator restart (time to ready, RSS after its reconcile, next to its RSS before).
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { mountCap, now, sleep, timed, type BenchContext } from '../lib/context.js';
import { waitProbeReady } from '../lib/probe.js';
import { rssMiB, spawnDriver, startEmulator, type Emulator } from '../lib/procs.js';
import { connectCsi, createThinVolume, listVolumesPage } from '../lib/clients.js';
import { summarize } from '../lib/stats.js';

const FILL_CONCURRENCY = 16;
const PAGE = 500;
// 100,000 thin volumes of 16 MiB provision 1.5 TiB of the 24 GiB pool
const POOL_ARGS = ['--max-oversubscription', '100'];

/** Creates `count` thin 16 MiB volumes named scale-0… through the socket API; their rate, volumes/s. */
async function fill(socket: string, count: number): Promise<number> {
  let next = 0;
  const t0 = now();
  await Promise.all(
    Array.from({ length: FILL_CONCURRENCY }, async () => {
      while (next < count) {
        await createThinVolume(socket, `scale-${next++}`, 16);
      }
    }),
  );
  return count / ((now() - t0) / 1000);
}

/**
 * Starts the scale emulator; its time to ready is from the spawn to the moment it wrote emulator.json (the
 * file's mtime), not to when the starter's poll, which backs off to 200 ms (src/server/embedded-emulator.ts),
 * next looked. `polledMs` is the starter's own time, for comparison.
 */
async function startTimed(dir: string): Promise<{ readyMs: number; polledMs: number; emulator: Emulator }> {
  const spawnedAt = Date.now();
  const [polledMs, emulator] = await timed(() => startEmulator(join(dir, 'scale'), '24G', undefined, POOL_ARGS));
  const writtenAt = statSync(join(emulator.dataDir, 'emulator.json')).mtimeMs;
  return { readyMs: Math.max(0, writtenAt - spawnedAt), polledMs, emulator };
}

export async function scale(b: BenchContext): Promise<void> {
  const { opt, add, dir } = b;
  const count = opt.scaleVolumes;
  // The first start, on an empty data directory: the floor of the restart below.
  const empty = await startTimed(dir);
  let emulator: Emulator | undefined = empty.emulator;
  const controller = spawnDriver(
    b.driverBase('controller', 'controller-scale', { vbsSocket: emulator.vbsSocket, kvSocket: emulator.kvSocket }),
  );
  const csi = connectCsi(controller.socket);
  try {
    await waitProbeReady(controller);
    add({ section: 'scale', name: 'volumes', value: count, unit: 'volumes', note: 'the fill of this section' });
    add({
      section: 'scale',
      name: 'start-empty-ready',
      value: empty.readyMs,
      unit: 'ms',
      note: `emulator, no volumes; spawn to emulator.json written (polled: ${empty.polledMs.toFixed(0)} ms)`,
    });
    const rate = await fill(emulator.vbsSocket, count);
    add({ section: 'scale', name: 'fill', value: rate, unit: 'volumes/s', note: `${count} thin volumes, c=16` });

    // One pair at a time at this count: does a call's cost grow with the volumes already there?
    const pairs: number[] = [];
    const until = now() + opt.durationMs;
    for (let i = 0; now() < until || pairs.length < 5; i++) {
      const [ms] = await timed(async () => {
        const { volume } = await csi.controller.CreateVolume({
          name: `scale-pair-${i}`,
          capacity_range: { required_bytes: String(1024 ** 3) },
          volume_capabilities: [mountCap('ext4')],
          parameters: {},
        });
        await csi.controller.DeleteVolume({ volume_id: volume!.volume_id });
      });
      pairs.push(ms);
    }
    const pair = summarize(pairs);
    add({ section: 'scale', name: 'pair-c1', value: pair.p50, unit: 'ms', latency: pair, note: `at ${count} volumes` });

    // A full listing, as the external-provisioner's and a backup tool's resync does it.
    const pages: number[] = [];
    let listed = 0;
    let token = '';
    const [listMs] = await timed(async () => {
      do {
        const [ms, page] = await timed(() => csi.controller.ListVolumes({ max_entries: PAGE, starting_token: token }));
        pages.push(ms);
        listed += page.entries.length;
        token = page.next_token;
      } while (token !== '');
    });
    if (listed < count) throw new Error(`ListVolumes listed ${listed} of ${count} volumes`);
    add({
      section: 'scale',
      name: 'list-all',
      value: listMs,
      unit: 'ms',
      latency: summarize(pages),
      note: `${listed} volumes in ${pages.length} pages of ${PAGE} (latency: a page)`,
    });

    // The same pass straight to the back end: the floor under the driver's listing.
    const rawPages: number[] = [];
    let rawListed = 0;
    let marker = '';
    const [rawMs] = await timed(async () => {
      do {
        const [ms, page] = await timed(() => listVolumesPage(emulator!.vbsSocket, marker, PAGE));
        rawPages.push(ms);
        rawListed += page.count;
        marker = page.nextMarker;
      } while (marker !== '');
    });
    add({
      section: 'scale',
      name: 'list-all-backend',
      value: rawMs,
      unit: 'ms',
      latency: summarize(rawPages),
      note: `LIST_VOLUMES_REQ straight to the emulator: ${rawListed} volumes in ${rawPages.length} pages (latency: a page)`,
    });

    // Restart: the back end reopens its store and reconciles every volume before it answers.
    const before = rssMiB(emulator.pid);
    await emulator.stop();
    emulator = undefined;
    const restart = await startTimed(dir);
    emulator = restart.emulator;
    add({
      section: 'scale',
      name: 'restart-ready',
      value: restart.readyMs,
      unit: 'ms',
      note: `${count} volumes; spawn to emulator.json written (polled: ${restart.polledMs.toFixed(0)} ms)`,
    });
    await sleep(2_000);
    add({
      section: 'scale',
      name: 'restart-rss',
      value: rssMiB(emulator.pid),
      unit: 'MiB',
      note: `emulator 2 s after ready; ${before.toFixed(1)} MiB before the restart`,
    });
  } finally {
    csi.close();
    await controller.stop();
    await emulator?.stop();
  }
}
