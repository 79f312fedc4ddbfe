// CreateSnapshot and a linked clone from it, next to the same requests sent straight to the emulator.
import { join } from 'node:path';
import { RetCode } from '../../src/protocol/vbs.js';
import { rawVbsCall } from '../../src/sds/raw.js';
import { mountCap, sleep, timed, type BenchContext } from '../lib/context.js';
import { latencyFigure, summarize } from '../lib/stats.js';
import { publishedVolume, removeVolume } from './volumes.js';

const GiB = 1024 ** 3;

/** CreateSnapshot and a linked clone from it (of a 1 GiB ext4-formatted volume), against the emulator alone. */
export async function snapshots(b: BenchContext): Promise<void> {
  const { ctl, nodeCsi, emulator, dir, opt, add } = b;
  const src = await publishedVolume(b, 'snap-source', 'ext4');
  const staging = join(dir, 'snap-source-staging');
  await nodeCsi.node.NodeStageVolume({
    volume_id: src.id,
    staging_target_path: staging,
    volume_capability: mountCap('ext4'),
    publish_context: src.publishContext,
    volume_context: {},
  });
  await nodeCsi.node.NodeUnstageVolume({ volume_id: src.id, staging_target_path: staging });
  const snap: number[] = [];
  const clone: number[] = [];
  const del: number[] = [];
  for (let i = 0; i < opt.iterations; i++) {
    const [ts, r] = await timed(() =>
      ctl.controller.CreateSnapshot({
        source_volume_id: src.id,
        name: `snap-${i}`,
        parameters: {},
      }),
    );
    const [tc, v] = await timed(() =>
      ctl.controller.CreateVolume({
        name: `clone-${i}`,
        capacity_range: { required_bytes: String(GiB) },
        volume_capabilities: [mountCap('ext4')],
        parameters: {},
        volume_content_source: { snapshot: { snapshot_id: r.snapshot!.snapshot_id } },
      }),
    );
    const [td] = await timed(async () => {
      await ctl.controller.DeleteVolume({ volume_id: v.volume!.volume_id });
      await ctl.controller.DeleteSnapshot({ snapshot_id: r.snapshot!.snapshot_id });
    });
    snap.push(ts);
    clone.push(tc);
    del.push(td);
  }
  // The floor: the same requests straight to the emulator.
  const rawSnap: number[] = [];
  const rawClone: number[] = [];
  const sock = emulator.vbsSocket;
  const gone = async (type: string, key: string, name: string) => {
    while ((await rawVbsCall(sock, type, { [key]: name })).retcode !== RetCode.NOT_EXIST) await sleep(1);
  };
  for (let i = 0; i < opt.iterations; i++) {
    const [ts, rs] = await timed(() =>
      rawVbsCall(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: `raw-snap-${i}`, vol_name: src.id, smartflag: 1 }),
    );
    const [tc, rc] = await timed(() =>
      rawVbsCall(sock, 'CREATE_VOLUME_FROM_SNAPSHOT_REQ', {
        vol_name: `raw-clone-${i}`,
        vol_size: 1024,
        snap_name_src: `raw-snap-${i}`,
        vol_num: 1,
      }),
    );
    if (rs.retcode !== 0 || rc.retcode !== 0) throw new Error(`raw snapshot/clone: ${rs.retcode}/${rc.retcode}`);
    await rawVbsCall(sock, 'DELETE_VOLUME_REQ', { vol_name: `raw-clone-${i}` });
    await gone('QUERY_VOLUME_REQ', 'vol_name', `raw-clone-${i}`);
    await rawVbsCall(sock, 'DELETE_SNAPSHOT_REQ', { snap_name: `raw-snap-${i}` });
    await gone('QUERY_SNAPSHOT_REQ', 'snap_name', `raw-snap-${i}`);
    rawSnap.push(ts);
    rawClone.push(tc);
  }
  const rs = summarize(rawSnap);
  const rc = summarize(rawClone);
  add(latencyFigure('floor', 'emulator-snapshot', rs, { note: 'CREATE_SNAPSHOT_REQ straight to the emulator' }));
  add(
    latencyFigure('floor', 'emulator-clone', rc, { note: 'CREATE_VOLUME_FROM_SNAPSHOT_REQ straight to the emulator' }),
  );
  const s = summarize(snap);
  const c = summarize(clone);
  add(
    latencyFigure('snapshot', 'create-snapshot', s, {
      floor: { name: 'emulator-snapshot', value: rs.p50, unit: 'ms' },
      ratio: s.p50 / rs.p50,
    }),
  );
  add(
    latencyFigure('snapshot', 'linked-clone', c, {
      floor: { name: 'emulator-clone', value: rc.p50, unit: 'ms' },
      ratio: c.p50 / rc.p50,
      note: 'CreateVolume from the snapshot',
    }),
  );
  add(latencyFigure('snapshot', 'delete-clone+snapshot', summarize(del)));
  await removeVolume(b, src.id);
}
