// Attach + stage on a second host of the same back end (the emulator's --data-host, reached through the
// host's front end, dist/emulator/host.js), next to the first host: ControllerPublish + NodeStage of a
// formatted volume, then NodeUnstage + ControllerUnpublish, the volume moving between the two hosts.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connectCsi } from '../lib/clients.js';
import { mountCap, now, type BenchContext } from '../lib/context.js';
import { waitProbeReady } from '../lib/probe.js';
import { HOST_ID, SECOND_HOST_ID, spawnDriver } from '../lib/procs.js';
import { summarize } from '../lib/stats.js';

export async function multiHost(b: BenchContext): Promise<void> {
  const { ctl, nodeCsi, emulator, dir, opt, add } = b;
  const info = join(emulator.dataDir, `emulator-${SECOND_HOST_ID}.json`);
  const front = spawn(
    process.execPath,
    [
      join(import.meta.dirname, '..', '..', 'emulator', 'host.js'),
      '--data-dir',
      emulator.dataDir,
      '--host-id',
      SECOND_HOST_ID,
    ],
    { stdio: 'ignore' },
  );
  const frontGone = new Promise<void>((r) => front.once('exit', () => r()));
  try {
    const deadline = now() + 30_000;
    while (!existsSync(info)) {
      if (now() > deadline || front.exitCode !== null) throw new Error('the second host front end did not start');
      await new Promise((r) => setTimeout(r, 20));
    }
    const sockets = JSON.parse(readFileSync(info, 'utf8')) as { controlSocket: string; kvSocket: string };
    const second = spawnDriver(
      b.driverBase('node', 'node-second-host', {
        vbsSocket: sockets.controlSocket,
        kvSocket: sockets.kvSocket,
        hostId: SECOND_HOST_ID,
      }),
    );
    try {
      await waitProbeReady(second);
      const secondCsi = connectCsi(second.socket);
      const cap = mountCap('ext4');
      const { volume } = await ctl.controller.CreateVolume({
        name: 'multi-host-move',
        capacity_range: { required_bytes: String(1024 ** 3) },
        volume_capabilities: [cap],
        parameters: {},
      });
      const id = volume!.volume_id;
      const times: Record<string, number[]> = { [HOST_ID]: [], [SECOND_HOST_ID]: [] };
      const csiOf = (h: string) => (h === HOST_ID ? nodeCsi : secondCsi);
      for (let i = 0; i < opt.iterations + 1; i++) {
        for (const host of [HOST_ID, SECOND_HOST_ID]) {
          const staging = join(dir, 'kubelet-multi', host, 'globalmount');
          const t0 = now();
          const { publish_context } = await ctl.controller.ControllerPublishVolume({
            volume_id: id,
            node_id: host,
            volume_capability: cap,
          });
          await csiOf(host).node.NodeStageVolume({
            volume_id: id,
            staging_target_path: staging,
            volume_capability: cap,
            publish_context,
            volume_context: {},
          });
          // The first round formats the volume: not counted.
          if (i > 0) times[host]!.push(now() - t0);
          await csiOf(host).node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
          await ctl.controller.ControllerUnpublishVolume({ volume_id: id, node_id: host });
        }
      }
      await ctl.controller.DeleteVolume({ volume_id: id });
      secondCsi.close();
      for (const [host, name] of [
        [HOST_ID, 'attach+stage-first-host'],
        [SECOND_HOST_ID, 'attach+stage-second-host'],
      ] as const) {
        const s = summarize(times[host]!);
        add({
          section: 'multi-host',
          name,
          value: s.p50,
          unit: 'ms',
          latency: s,
          note: 'ControllerPublish + NodeStage (ext4, formatted), the volume moving between the two hosts',
        });
      }
    } finally {
      await second.stop();
    }
  } finally {
    front.kill('SIGTERM');
    await frontGone;
  }
}
