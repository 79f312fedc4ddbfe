// The machine's own costs, measured in the same run as every figure read against them.
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { rawVbsCall } from '../../src/sds/raw.js';
import { createThinVolume, deleteVolumeUntilGone } from '../lib/clients.js';
import { closedLoop, repeat, timed, type BenchContext } from '../lib/context.js';
import { sdsCliPath } from '../lib/procs.js';
import { summarize, type Figure } from '../lib/stats.js';

type LoopRun = Awaited<ReturnType<typeof closedLoop>>;

const exec = promisify(execFile);

/** The machine's own costs: an empty RPC, the socket API alone, and the programs the node service runs. */
export async function floors(b: BenchContext): Promise<void> {
  const { ctl, emulator, dir, opt, add } = b;
  const floorMs = opt.quick ? 150 : Math.max(300, opt.durationMs / 2);
  // Node itself: what any Node process pays before our first line runs.
  const bareCpu: number[] = [];
  const nodeStart = await repeat(opt.quick ? 3 : 10, async () => {
    const { stdout } = await exec(process.execPath, [
      '-e',
      'const u = process.cpuUsage(); process.stdout.write(String((u.user + u.system) / 1000))',
    ]);
    bareCpu.push(Number(stdout));
  });
  add({
    section: 'floor',
    name: 'node-start',
    value: summarize(nodeStart).p50,
    unit: 'ms',
    latency: summarize(nodeStart),
    note: 'a bare node process, spawn to exit',
  });
  add({
    section: 'floor',
    name: 'node-start-cpu',
    value: summarize(bareCpu).p50,
    unit: 'ms CPU',
    latency: summarize(bareCpu),
    note: 'CPU a bare node process has used when its first line runs',
  });

  for (const c of opt.levels) {
    // The empty RPC: GetPluginInfo on the controller's server (no back-end call).
    await closedLoop(c, opt.quick ? 50 : 200, () => ctl.identity.GetPluginInfo({}).then(() => undefined));
    const rpc = await closedLoop(c, floorMs, () => ctl.identity.GetPluginInfo({}).then(() => undefined));
    add(throughput(`grpc-empty-c${c}`, rpc, 'ops/s'));
    // The socket API alone: QUERY_CAPABILITY_REQ straight to the emulator.
    const sock = await closedLoop(c, floorMs, () =>
      rawVbsCall(emulator.vbsSocket, 'QUERY_CAPABILITY_REQ').then(() => undefined),
    );
    add(throughput(`socket-api-c${c}`, sock, 'ops/s'));
    // The back end's create+delete alone, as the driver does it (create, delete, poll until gone).
    const pairs = await closedLoop(c, floorMs * 2, async (seq) => {
      const name = `floor-${c}-${seq}`;
      await createThinVolume(emulator.vbsSocket, name, 1024);
      await deleteVolumeUntilGone(emulator.vbsSocket, name);
    });
    add(
      throughput(
        `emulator-pairs-c${c}`,
        pairs,
        'pairs/s',
        'CREATE_VOLUME + DELETE_VOLUME + QUERY_VOLUME until gone, straight to the emulator',
      ),
    );
    add(stackPairs(c, rpc.ops / rpc.seconds, pairs.ops / pairs.seconds));
  }

  // Spawning: any program, the C sds_cli (one socket round trip), and a bind mount + unmount.
  const n = opt.quick ? 5 : 30;
  const spawnTrue = await repeat(n, () => exec('/bin/true', []).then(() => undefined));
  add({
    section: 'floor',
    name: 'spawn-true',
    value: summarize(spawnTrue).p50,
    unit: 'ms',
    latency: summarize(spawnTrue),
    note: 'execFile /bin/true from Node',
  });
  const floorVol = 'floor-querydev';
  await createThinVolume(emulator.vbsSocket, floorVol, 64);
  const cliEnv = { ...process.env, SDS_KV_SOCKET: emulator.kvSocket };
  const querydev = await repeat(n, () =>
    exec(sdsCliPath(), ['-c', 'querydev', '-v', floorVol], { env: cliEnv }).then(() => undefined),
  );
  add({
    section: 'floor',
    name: 'sds-cli-querydev',
    value: summarize(querydev).p50,
    unit: 'ms',
    latency: summarize(querydev),
    note: 'spawn of the C sds_cli, one KV round trip',
  });
  await rawVbsCall(emulator.vbsSocket, 'DELETE_VOLUME_REQ', { vol_name: floorVol });
  const [src, dst] = [join(dir, 'bind-src'), join(dir, 'bind-dst')];
  await mkdir(src, { recursive: true });
  await mkdir(dst, { recursive: true });
  const binds: number[] = [];
  const unbinds: number[] = [];
  for (let i = 0; i < n; i++) {
    binds.push((await timed(() => exec('mount', ['--bind', src, dst])))[0]);
    unbinds.push((await timed(() => exec('umount', [dst])))[0]);
  }
  add({
    section: 'floor',
    name: 'mount-bind',
    value: summarize(binds).p50,
    unit: 'ms',
    latency: summarize(binds),
    note: 'mount --bind',
  });
  add({ section: 'floor', name: 'umount', value: summarize(unbinds).p50, unit: 'ms', latency: summarize(unbinds) });
}

/** A closed loop's figure: operations a second, with their latencies. */
function throughput(name: string, run: LoopRun, unit: string, note?: string): Omit<Figure, 'load'> {
  const perSec = run.ops / run.seconds;
  return {
    section: 'floor',
    name,
    value: perSec,
    unit,
    opsPerSec: perSec,
    latency: summarize(run.latencies),
    ...(note === undefined ? {} : { note }),
  };
}

/**
 * The most any driver could do in front of this emulator at concurrency c: a pair is two gRPC calls (an empty
 * RPC's time at c) and the emulator's own pair, one after another on the same 2 cores. Their times add:
 * 1 ÷ (2 ÷ empty RPCs/s + 1 ÷ emulator pairs/s). Its ratio to the emulator alone is the least any driver that
 * speaks gRPC can reach, whatever its own work costs.
 */
function stackPairs(c: number, emptyRpcsPerSec: number, emulatorPairsPerSec: number): Omit<Figure, 'load'> {
  const rate = 1 / (2 / emptyRpcsPerSec + 1 / emulatorPairsPerSec);
  return {
    section: 'floor',
    name: `stack-pairs-c${c}`,
    value: rate,
    unit: 'pairs/s',
    opsPerSec: rate,
    floor: { name: `emulator-pairs-c${c}`, value: emulatorPairsPerSec, unit: 'pairs/s' },
    ratio: emulatorPairsPerSec / rate,
    note: `two empty RPCs and the emulator's pair, one after another: 1 ÷ (2 ÷ grpc-empty-c${c} + 1 ÷ emulator-pairs-c${c})`,
  };
}
