// `npm run bench`: the performance harness. Drives the real driver processes (--mode=controller and
// --mode=node, each its own process) over their unix sockets with a real gRPC client, on the emulator
// daemon, and measures in the same run the floors every figure is read against: an empty RPC to the same
// server, the emulator's socket API alone, and the external programs the node service runs. Prints a table
// and writes JSON. A benchmark, not a test: it never fails on speed (only when something does not work).
//
//   node dist/bench/run.js [--quick] [--duration S] [--iterations N] [--only a,b] [--json PATH]
//                          [--concurrency 1,16,64] [--log-level info] [--cpu-prof DIR] [--keep]
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { cpus, hostname, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { projectRoot } from '../src/util/paths.js';
import { connectCsi, type Csi } from './lib/clients.js';
import { log, now, parseBenchOptions, Report, sleep, type BenchContext, type BenchOptions } from './lib/context.js';
import { markdown } from './lib/markdown.js';
import { waitProbeReady } from './lib/probe.js';
import {
  cleanUpUnder,
  rssMiB,
  spawnDriver,
  startCsiIdleFloor,
  startEmulator,
  type IdleFloor,
  type Driver,
  type DriverMode,
  type DriverOptions,
  type Emulator,
} from './lib/procs.js';
import { FIGURE_HEADER, figureRows, load1, table } from './lib/stats.js';
import { judgeTargets } from './lib/targets.js';
import { createDelete } from './sections/create-delete.js';
import { snapshotDelta } from './sections/delta.js';
import { floors } from './sections/floor.js';
import { snapshots } from './sections/snapshots.js';
import { firstStage, stagePublish } from './sections/stage.js';
import { startup } from './sections/startup.js';
import { multiHost } from './sections/multi-host.js';
import { scale } from './sections/scale.js';

const GiB = 1024 ** 3;

function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  return {
    host: hostname(),
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    ramGiB: Math.round((totalmem() / GiB) * 10) / 10,
    kernel: release(),
    node: process.version,
  };
}

/** The sections of `opt.only`, in order, with the processes they measure; figures go into `report`. */
async function measure(opt: BenchOptions, dir: string, report: Report): Promise<void> {
  let emulator: Emulator | undefined;
  let controller: Driver | undefined;
  let node: Driver | undefined;
  let ctl: Csi | undefined;
  let nodeCsi: Csi | undefined;
  let idleFloor: IdleFloor | undefined;
  const driverBase = (mode: DriverMode, name: string, extra: Partial<DriverOptions> = {}): DriverOptions => ({
    mode,
    dir,
    name,
    // all mode starts its own emulator, which must not be pointed at the shared one's sockets
    ...(mode === 'all' ? {} : { vbsSocket: emulator?.vbsSocket, kvSocket: emulator?.kvSocket }),
    logLevel: opt.logLevel,
    nodeArgs: opt.nodeArgs,
    metrics: opt.metrics,
    ...(opt.driverEntry ? { entry: opt.driverEntry } : {}),
    ...extra,
  });
  const { add, notes } = report;
  try {
    emulator = await startEmulator(dir, '24G', process.env.BENCH_EMULATOR_NODE_OPTIONS);
    controller = spawnDriver(driverBase('controller', 'controller'));
    node = spawnDriver(driverBase('node', 'node'));
    await waitProbeReady(controller);
    await waitProbeReady(node);
    // The least any node plugin in Node holds idle, started beside them and read when they are.
    idleFloor = await startCsiIdleFloor(dir);
    const floorCsi = connectCsi(idleFloor.socket);
    await floorCsi.identity.Probe({});
    floorCsi.close();
    ctl = connectCsi(controller.socket);
    nodeCsi = connectCsi(node.socket);
    const b: BenchContext = {
      opt,
      dir,
      emulator,
      controller,
      node,
      ctl,
      nodeCsi,
      add,
      find: report.find,
      notes,
      driverBase,
    };
    const readyAt = now();
    await sleep(1_000);
    add({
      section: 'rss',
      name: 'controller-at-start',
      value: rssMiB(controller.pid),
      unit: 'MiB',
      note: '1 s after ready',
    });
    add({ section: 'rss', name: 'node-at-start', value: rssMiB(node.pid), unit: 'MiB', note: '1 s after ready' });
    // The start-up runs use their own processes; these two stay idle meanwhile.
    if (opt.only.has('startup')) await startup(b);
    // Idle: V8's memory reducer gives back the young generation the start-up grew ~10-20 s after the
    // allocation stops; what an idle plugin holds is the RSS after that.
    await sleep(Math.max(0, readyAt + opt.settleMs - now()));
    const settled = `idle ${Math.round((now() - readyAt) / 1000)} s after ready`;
    add({ section: 'rss', name: 'controller-idle', value: rssMiB(controller.pid), unit: 'MiB', note: settled });
    add({ section: 'rss', name: 'node-idle', value: rssMiB(node.pid), unit: 'MiB', note: settled });
    add({
      section: 'floor',
      name: 'node-idle-least',
      value: rssMiB(idleFloor.pid),
      unit: 'MiB',
      note: `bench/floors/csi-idle.ts: a grpc-js server with the CSI proto answering Probe, nothing else, under the node plugin's flags; ${settled}`,
    });
    await idleFloor.stop();
    idleFloor = undefined;
    add({
      section: 'rss',
      name: 'emulator-idle',
      value: rssMiB(emulator.pid),
      unit: 'MiB',
      note: 'the back end, not ours',
    });

    if (opt.only.has('floor')) await floors(b);
    if (opt.only.has('create-delete')) await createDelete(b);
    if (opt.only.has('snapshot')) await snapshots(b);
    if (opt.only.has('first-stage')) await firstStage(b);
    if (opt.only.has('stage')) await stagePublish(b);
    if (opt.only.has('snapshot-delta')) await snapshotDelta(b);
    if (opt.only.has('multi-host')) await multiHost(b);
    if (opt.only.has('scale')) await scale(b);
  } finally {
    await idleFloor?.stop();
    ctl?.close();
    nodeCsi?.close();
    for (const d of [controller, node]) {
      const code = await d?.stop();
      if (d && code !== 0 && code !== null) notes.push(`driver ${d.socket} exited with ${code}`);
    }
    await emulator?.stop().catch((err: unknown) => notes.push(String(err)));
    const left = await cleanUpUnder(dir);
    if (left.length) notes.push(`left behind (now removed): ${left.join(', ')}`);
  }
}

/** One run: measure, write the JSON (and Markdown), print the table. The exit code. */
async function main(): Promise<number> {
  const opt = parseBenchOptions(process.argv.slice(2));
  if (opt === 'help') return 0;
  const started = new Date();
  const meta = {
    date: started.toISOString(),
    ...machine(),
    loadAtStart: load1(),
    options: {
      quick: opt.quick,
      durationMs: opt.durationMs,
      iterations: opt.iterations,
      levels: opt.levels,
      only: [...opt.only],
      logLevel: opt.logLevel,
      metrics: opt.metrics,
    },
  };
  const dir = await realpath(await mkdtemp(join(tmpdir(), 'csi-bench-')));
  log(`temp dir ${dir}; ${meta.cpu}, ${meta.cores} cores, node ${meta.node}`);
  const report = new Report();
  let failed: unknown;
  try {
    await measure(opt, dir, report);
  } catch (err) {
    failed = err;
  } finally {
    if (!opt.keep) await rm(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  }

  const { figures, notes } = report;
  const targets = judgeTargets(report.find);
  const seconds = Math.round((Date.now() - started.getTime()) / 100) / 10;
  const result = { meta: { ...meta, loadAtEnd: load1(), seconds }, figures, targets, notes };
  const jsonPath =
    opt.jsonPath ?? join(projectRoot(), 'bench', 'results', `${started.toISOString().replace(/[:.]/g, '-')}.json`);
  await mkdir(dirname(jsonPath), { recursive: true });
  await writeFile(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
  if (opt.markdownPath) await writeFile(opt.markdownPath, markdown(result.meta, figures, targets, notes));

  const out = (s: string) => process.stdout.write(s);
  out(
    `\nsdshypervisor-csi bench — ${meta.date} — ${meta.cpu}, ${meta.cores} cores, ${meta.ramGiB} GiB, kernel ${meta.kernel}, node ${meta.node}\n`,
  );
  out(`load at start ${meta.loadAtStart}, at end ${result.meta.loadAtEnd}; ${seconds} s\n\n`);
  out(`${table(FIGURE_HEADER, figureRows(figures))}\n\n`);
  if (targets.length) {
    const rows = targets.map((t) => [t.name, t.wanted, t.measured, t.met ? 'yes' : 'NO']);
    out(`${table(['target', 'wanted', 'measured', 'met'], rows)}\n\n`);
  }
  for (const n of notes) out(`note: ${n}\n`);
  out(`JSON: ${jsonPath}\n`);
  if (failed) {
    process.stderr.write(`bench failed: ${failed instanceof Error ? failed.stack : String(failed)}\n`);
    return 1;
  }
  return 0;
}

// The drivers' gRPC channels and timers may still hold the loop: the exit code ends the run.
process.exit(await main());
