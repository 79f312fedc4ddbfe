// `npm run bench`: the performance harness. Drives the real driver processes (--mode=controller and
// --mode=node, each its own process) over their unix sockets with a real gRPC client, on the emulator
// daemon, and measures in the same run the floors every figure is read against: an empty RPC to the same
// server, the emulator's socket API alone, and the external programs the node service runs. Prints a table
// and writes JSON. A benchmark, not a test: it never fails on speed (only when something does not work).
//
//   node dist/bench/run.js [--quick] [--duration S] [--iterations N] [--only a,b] [--json PATH]
//                          [--concurrency 1,16,64] [--log-level info] [--cpu-prof DIR] [--keep]
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, realpath, rm, writeFile, chmod, readFile } from 'node:fs/promises';
import { cpus, hostname, tmpdir, totalmem, release } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { projectRoot } from '../src/util/paths.js';
import { RetCode } from '../src/protocol/vbs.js';
import { connectCsi, vbsCall, type Csi } from './lib/clients.js';
import { markdown } from './lib/markdown.js';
import {
  cleanEnv, cleanUpUnder, cpuMs, HOST_ID, RssSampler, rssMiB, sdsCliPath, spawnDriver, startEmulator,
  type Driver, type DriverMode, type DriverOptions, type Emulator,
} from './lib/procs.js';
import { FIGURE_HEADER, figureRows, fmt, load1, summarize, table, type Figure, type Summary } from './lib/stats.js';

const exec = promisify(execFile);
const GiB = 1024 ** 3;
const SECTIONS = ['floor', 'startup', 'create-delete', 'snapshot', 'stage', 'first-stage', 'snapshot-delta'] as const;
type Section = (typeof SECTIONS)[number];

// ---------------------------------------------------------------- options

const { values: opt } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    duration: { type: 'string' },
    iterations: { type: 'string' },
    only: { type: 'string' },
    json: { type: 'string' },
    markdown: { type: 'string' },
    concurrency: { type: 'string' },
    'log-level': { type: 'string', default: 'info' },
    'cpu-prof': { type: 'string' },
    'node-option': { type: 'string', multiple: true },
    keep: { type: 'boolean', default: false },
    'no-metrics': { type: 'boolean', default: false },
    'delta-gib': { type: 'string' },
    settle: { type: 'string' },
    driver: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
  strict: true,
});
if (opt.help) {
  process.stdout.write(
    [
      'Usage: npm run bench -- [options]',
      '  --quick              a short run (seconds): small counts, for a smoke test',
      '  --duration S         seconds per create/delete concurrency level (default 5; quick 0.4)',
      '  --iterations N       snapshot and stage/publish cycles (default 40; quick 2)',
      `  --only a,b           sections: ${SECTIONS.join(', ')} (default all)`,
      '  --json PATH          where the JSON goes (default bench/results/<date>.json)',
      '  --markdown PATH      also write the run as a Markdown section (for docs/BENCHMARKS.md)',
      '  --concurrency 1,16,64  create/delete concurrency levels',
      '  --log-level L        the driver processes\' log level (default info, as deployed)',
      '  --cpu-prof DIR       run the driver processes with node --cpu-prof, profiles written to DIR',
      '  --node-option OPT    a node option for the driver processes (repeatable), e.g. --max-semi-space-size=2',
      '  --settle S           seconds after start before idle RSS is read (default 25; quick 1)',
      '  --driver PATH        the driver entry to measure (default dist/src/main.js; for A/B runs of two builds)',
      '  --no-metrics         run the drivers without their /metrics listener (deployed: on)',
      '  --delta-gib N        volume size of the snapshot-delta section (default 1; quick 0.25; npm run bench:delta: 10)',
      '  --keep               keep the temp directory (logs) after the run',
    ].join('\n') + '\n',
  );
  process.exit(0);
}
const quick = opt.quick!;
const durationMs = 1000 * Number(opt.duration ?? (quick ? 0.4 : 5));
const iterations = Number(opt.iterations ?? (quick ? 2 : 40));
const firstStageRepeats = quick ? 1 : 3;
const startupRepeats = quick ? 1 : 7;
const settleMs = 1000 * Number(opt.settle ?? (quick ? 1 : 25));
const levels = (opt.concurrency ?? '1,16,64').split(',').map(Number);
const only = new Set<Section>((opt.only ? opt.only.split(',') : [...SECTIONS]).map((s) => s.trim() as Section));
for (const s of only) if (!SECTIONS.includes(s)) throw new Error(`--only: unknown section ${s} (known: ${SECTIONS.join(', ')})`);
if (![durationMs, iterations, ...levels].every((n) => Number.isFinite(n) && n > 0)) throw new Error('--duration, --iterations and --concurrency must be positive numbers');
const nodeArgs = [...(opt['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${resolve(opt['cpu-prof'])}`] : []), ...(opt['node-option'] ?? [])];

// ---------------------------------------------------------------- helpers

const figures: Figure[] = [];
const notes: string[] = [];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();

function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)} load ${load1()}] ${line}\n`);
}

function add(f: Omit<Figure, 'load'>): Figure {
  const figure = { ...f, load: load1() };
  figures.push(figure);
  log(`${f.section}/${f.name}: ${fmt(f.value)} ${f.unit}${f.latency ? ` (p50 ${fmt(f.latency.p50)} ms, p99 ${fmt(f.latency.p99)} ms)` : ''}`);
  return figure;
}

function find(section: string, name: string): Figure | undefined {
  return figures.find((f) => f.section === section && f.name === name);
}

/** `concurrency` workers call `op` until `ms` have passed; ops counted and timed. */
async function closedLoop(concurrency: number, ms: number, op: (seq: number) => Promise<void>): Promise<{ ops: number; seconds: number; latencies: number[] }> {
  const latencies: number[] = [];
  let seq = 0;
  const start = now();
  const end = start + ms;
  let last = start;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (now() < end) {
        const t = now();
        await op(seq++);
        last = now();
        latencies.push(last - t);
      }
    }),
  );
  return { ops: latencies.length, seconds: (last - start) / 1000, latencies };
}

async function repeat(n: number, op: (i: number) => Promise<void>): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = now();
    await op(i);
    latencies.push(now() - t);
  }
  return latencies;
}

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t = now();
  const value = await fn();
  return [now() - t, value];
}

const mountCap = (fsType: string) => ({ mount: { fs_type: fsType, mount_flags: [] }, access_mode: { mode: 'SINGLE_NODE_WRITER' } });

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

async function waitProbeReady(driver: Driver, timeoutMs = 60_000): Promise<number> {
  const csi = connectCsi(driver.socket, { fastReconnect: true });
  try {
    const deadline = now() + timeoutMs;
    for (;;) {
      if (driver.child.exitCode !== null) throw new Error(`driver ${driver.socket} exited with ${driver.child.exitCode}: see ${driver.logFile}`);
      try {
        const probe = await csi.call<{ ready?: { value: boolean } }>('identity', 'Probe', {}, 1_000);
        if (probe.ready?.value) return now() - driver.spawnedAt;
      } catch {
        // not listening yet
      }
      if (now() > deadline) throw new Error(`driver ${driver.socket} not ready within ${timeoutMs} ms: see ${driver.logFile}`);
      await sleep(5);
    }
  } finally {
    csi.close();
  }
}

// ---------------------------------------------------------------- the run

const started = new Date();
const meta = { date: started.toISOString(), ...machine(), loadAtStart: load1(), options: { quick, durationMs, iterations, levels, only: [...only], logLevel: opt['log-level'], metrics: !opt['no-metrics'] } };
const dir = await realpath(await mkdtemp(join(tmpdir(), 'csi-bench-')));
log(`temp dir ${dir}; ${meta.cpu}, ${meta.cores} cores, node ${meta.node}`);

let emulator: Emulator | undefined;
let controller: Driver | undefined;
let node: Driver | undefined;
let ctl: Csi | undefined;
let nodeCsi: Csi | undefined;
const driverBase = (mode: DriverMode, name: string, extra: Partial<DriverOptions> = {}): DriverOptions => ({
  mode,
  dir,
  name,
  // all mode starts its own emulator, which must not be pointed at the shared one's sockets
  ...(mode === 'all' ? {} : { vbsSocket: emulator?.vbsSocket, kvSocket: emulator?.kvSocket }),
  logLevel: opt['log-level']!,
  nodeArgs,
  metrics: !opt['no-metrics'],
  ...(opt.driver ? { entry: resolve(opt.driver) } : {}),
  ...extra,
});

let failed: unknown;
try {
  emulator = await startEmulator(dir, '24G', process.env.BENCH_EMULATOR_NODE_OPTIONS);
  controller = spawnDriver(driverBase('controller', 'controller'));
  node = spawnDriver(driverBase('node', 'node'));
  await waitProbeReady(controller);
  await waitProbeReady(node);
  ctl = connectCsi(controller.socket);
  nodeCsi = connectCsi(node.socket);
  const readyAt = now();
  await sleep(1_000);
  add({ section: 'rss', name: 'controller-at-start', value: rssMiB(controller.pid), unit: 'MiB', note: '1 s after ready' });
  add({ section: 'rss', name: 'node-at-start', value: rssMiB(node.pid), unit: 'MiB', note: '1 s after ready' });
  // The start-up runs use their own processes; these two stay idle meanwhile.
  if (only.has('startup')) await startup();
  // Idle: V8's memory reducer gives back the young generation the start-up grew ~10-20 s after the
  // allocation stops; what an idle plugin holds is the RSS after that.
  await sleep(Math.max(0, readyAt + settleMs - now()));
  const settled = `idle ${Math.round((now() - readyAt) / 1000)} s after ready`;
  add({ section: 'rss', name: 'controller-idle', value: rssMiB(controller.pid), unit: 'MiB', note: settled });
  add({ section: 'rss', name: 'node-idle', value: rssMiB(node.pid), unit: 'MiB', note: settled });
  add({ section: 'rss', name: 'emulator-idle', value: rssMiB(emulator.pid), unit: 'MiB', note: 'the back end, not ours' });

  if (only.has('floor')) await floors();
  if (only.has('create-delete')) await createDelete();
  if (only.has('snapshot')) await snapshots();
  if (only.has('first-stage')) await firstStage();
  if (only.has('stage')) await stagePublish();
  if (only.has('snapshot-delta')) await snapshotDelta();
} catch (err) {
  failed = err;
} finally {
  ctl?.close();
  nodeCsi?.close();
  for (const d of [controller, node]) {
    const code = await d?.stop();
    if (d && code !== 0 && code !== null) notes.push(`driver ${d.socket} exited with ${code}`);
  }
  await emulator?.stop().catch((err: unknown) => notes.push(String(err)));
  const left = await cleanUpUnder(dir);
  if (left.length) notes.push(`left behind (now removed): ${left.join(', ')}`);
  if (!opt.keep) await rm(dir, { recursive: true, force: true });
  else log(`kept ${dir}`);
}

const targets = judgeTargets();
const result = { meta: { ...meta, loadAtEnd: load1(), seconds: Math.round((Date.now() - started.getTime()) / 100) / 10 }, figures, targets, notes };
const jsonPath = resolve(opt.json ?? join(projectRoot(), 'bench', 'results', `${started.toISOString().replace(/[:.]/g, '-')}.json`));
await mkdir(dirname(jsonPath), { recursive: true });
await writeFile(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
if (opt.markdown) await writeFile(resolve(opt.markdown), markdown(result.meta, figures, targets, notes));

process.stdout.write(`\nsdshypervisor-csi bench — ${meta.date} — ${meta.cpu}, ${meta.cores} cores, ${meta.ramGiB} GiB, kernel ${meta.kernel}, node ${meta.node}\n`);
process.stdout.write(`load at start ${meta.loadAtStart}, at end ${result.meta.loadAtEnd}; ${result.meta.seconds} s\n\n`);
process.stdout.write(`${table(FIGURE_HEADER, figureRows(figures))}\n\n`);
if (targets.length) {
  process.stdout.write(`${table(['target', 'wanted', 'measured', 'met'], targets.map((t) => [t.name, t.wanted, t.measured, t.met ? 'yes' : 'NO']))}\n\n`);
}
for (const n of notes) process.stdout.write(`note: ${n}\n`);
process.stdout.write(`JSON: ${jsonPath}\n`);
if (failed) {
  process.stderr.write(`bench failed: ${failed instanceof Error ? failed.stack : String(failed)}\n`);
  process.exit(1);
}
process.exit(0);

// ---------------------------------------------------------------- sections

/** The machine's own costs: an empty RPC, the socket API alone, and the programs the node service runs. */
async function floors(): Promise<void> {
  const floorMs = quick ? 150 : Math.max(300, durationMs / 2);
  // Node itself: what any Node process pays before our first line runs.
  const bareCpu: number[] = [];
  const nodeStart = await repeat(quick ? 3 : 10, async () => {
    const { stdout } = await exec(process.execPath, ['-e', 'const u = process.cpuUsage(); process.stdout.write(String((u.user + u.system) / 1000))']);
    bareCpu.push(Number(stdout));
  });
  add({ section: 'floor', name: 'node-start', value: summarize(nodeStart).p50, unit: 'ms', latency: summarize(nodeStart), note: 'a bare node process, spawn to exit' });
  add({ section: 'floor', name: 'node-start-cpu', value: summarize(bareCpu).p50, unit: 'ms CPU', latency: summarize(bareCpu), note: 'CPU a bare node process has used when its first line runs' });

  for (const c of levels) {
    // The empty RPC: GetPluginInfo on the controller's server (no back-end call).
    await closedLoop(c, quick ? 50 : 200, () => ctl!.call('identity', 'GetPluginInfo', {}).then(() => undefined));
    const rpc = await closedLoop(c, floorMs, () => ctl!.call('identity', 'GetPluginInfo', {}).then(() => undefined));
    add({ section: 'floor', name: `grpc-empty-c${c}`, value: rpc.ops / rpc.seconds, unit: 'ops/s', opsPerSec: rpc.ops / rpc.seconds, latency: summarize(rpc.latencies) });
    // The socket API alone: QUERY_CAPABILITY_REQ straight to the emulator.
    const sock = await closedLoop(c, floorMs, () => vbsCall(emulator!.vbsSocket, 'QUERY_CAPABILITY_REQ').then(() => undefined));
    add({ section: 'floor', name: `socket-api-c${c}`, value: sock.ops / sock.seconds, unit: 'ops/s', opsPerSec: sock.ops / sock.seconds, latency: summarize(sock.latencies) });
    // The back end's create+delete alone, as the driver does it (create, delete, poll until gone).
    const pairs = await closedLoop(c, floorMs * 2, async (seq) => {
      const name = `floor-${c}-${seq}`;
      const created = await vbsCall(emulator!.vbsSocket, 'CREATE_VOLUME_REQ', { vol_name: name, vol_size: 1024, pool_id: 'pool0', thin_flag: 1 });
      if (created.retcode !== 0) throw new Error(`floor create ${name}: ${created.retcode}`);
      const deleted = await vbsCall(emulator!.vbsSocket, 'DELETE_VOLUME_REQ', { vol_name: name });
      if (deleted.retcode !== 0) throw new Error(`floor delete ${name}: ${deleted.retcode}`);
      while ((await vbsCall(emulator!.vbsSocket, 'QUERY_VOLUME_REQ', { vol_name: name })).retcode !== RetCode.NOT_EXIST) await sleep(1);
    });
    add({
      section: 'floor', name: `emulator-pairs-c${c}`, value: pairs.ops / pairs.seconds, unit: 'pairs/s', opsPerSec: pairs.ops / pairs.seconds,
      latency: summarize(pairs.latencies), note: 'CREATE_VOLUME + DELETE_VOLUME + QUERY_VOLUME until gone, straight to the emulator',
    });
  }

  // Spawning: any program, the C sds_cli (one socket round trip), and a bind mount + unmount.
  const n = quick ? 5 : 30;
  const spawnTrue = await repeat(n, () => exec('/bin/true', []).then(() => undefined));
  add({ section: 'floor', name: 'spawn-true', value: summarize(spawnTrue).p50, unit: 'ms', latency: summarize(spawnTrue), note: 'execFile /bin/true from Node' });
  const floorVol = 'floor-querydev';
  await vbsCall(emulator!.vbsSocket, 'CREATE_VOLUME_REQ', { vol_name: floorVol, vol_size: 64, pool_id: 'pool0', thin_flag: 1 });
  const cliEnv = { ...process.env, SDS_KV_SOCKET: emulator!.kvSocket };
  const querydev = await repeat(n, () => exec(sdsCliPath(), ['-c', 'querydev', '-v', floorVol], { env: cliEnv }).then(() => undefined));
  add({ section: 'floor', name: 'sds-cli-querydev', value: summarize(querydev).p50, unit: 'ms', latency: summarize(querydev), note: 'spawn of the C sds_cli, one KV round trip' });
  await vbsCall(emulator!.vbsSocket, 'DELETE_VOLUME_REQ', { vol_name: floorVol });
  const [src, dst] = [join(dir, 'bind-src'), join(dir, 'bind-dst')];
  await mkdir(src, { recursive: true });
  await mkdir(dst, { recursive: true });
  const binds: number[] = [];
  const unbinds: number[] = [];
  for (let i = 0; i < n; i++) {
    binds.push((await timed(() => exec('mount', ['--bind', src, dst])))[0]);
    unbinds.push((await timed(() => exec('umount', [dst])))[0]);
  }
  add({ section: 'floor', name: 'mount-bind', value: summarize(binds).p50, unit: 'ms', latency: summarize(binds), note: 'mount --bind' });
  add({ section: 'floor', name: 'umount', value: summarize(unbinds).p50, unit: 'ms', latency: summarize(unbinds) });
}

/** Spawn to the first Probe answering ready=true, polled every 5 ms; each mode in fresh processes. */
async function startup(): Promise<void> {
  const nodeStart = find('floor', 'node-start');
  for (const mode of ['controller', 'node', 'all'] as const) {
    const dataDir = join(dir, 'all-mode-data');
    const runOnce = async (i: number): Promise<{ ms: number; rss: number; cpu: number }> => {
      const d = spawnDriver(driverBase(mode, `startup-${mode}-${i}`, mode === 'all' ? { dataDir, env: { SDS_POOLS: 'pool0:2G' } } : {}));
      try {
        const ms = await waitProbeReady(d);
        return { ms, rss: rssMiB(d.pid), cpu: cpuMs(d.pid) };
      } finally {
        const code = await d.stop();
        if (code !== 0) throw new Error(`startup ${mode}: the driver exited with ${code}; see ${d.logFile}`);
      }
    };
    // all mode: the first start makes the emulator's pool (mkfs); the figure is a start with the pool there
    // (--quick skips that warm-up run: its one all-mode start includes making the pool).
    if (mode === 'all' && !quick) await runOnce(-1);
    const runs: Array<{ ms: number; rss: number; cpu: number }> = [];
    for (let i = 0; i < startupRepeats; i++) runs.push(await runOnce(i));
    const s = summarize(runs.map((r) => r.ms));
    // CPU time to ready depends far less on the machine's load than the wall time does.
    const cpu = summarize(runs.map((r) => r.cpu));
    const bareCpu = find('floor', 'node-start-cpu');
    add({
      section: 'startup', name: `cpu-to-ready-${mode}`, value: cpu.p50, unit: 'ms CPU', latency: cpu,
      ...(bareCpu ? { floor: { name: 'node-start-cpu', value: bareCpu.value, unit: 'ms CPU' }, ratio: cpu.p50 / bareCpu.value } : {}),
      note: mode === 'all' ? 'the driver process only (not the emulator it starts)' : 'user + system CPU of the driver process when Probe first answers ready',
    });
    add({
      section: 'startup', name: `probe-ready-${mode}`, value: s.p50, unit: 'ms', latency: s,
      ...(nodeStart ? { floor: { name: 'node-start', value: nodeStart.value, unit: 'ms' }, ratio: s.p50 / nodeStart.value } : {}),
      note: `${mode === 'all' ? 'includes starting the emulator (pool already made); ' : ''}RSS at ready ${fmt(summarize(runs.map((r) => r.rss)).p50)} MiB`,
    });
  }
}

/** CreateVolume + DeleteVolume pairs at each concurrency, with the controller's peak RSS and CPU per pair. */
async function createDelete(): Promise<void> {
  const sampler = new RssSampler([controller!.pid, emulator!.pid]);
  const request = (name: string) => ({ name, capacity_range: { required_bytes: String(GiB) }, volume_capabilities: [mountCap('ext4')], parameters: {} });
  for (const c of levels) {
    const pair = async (name: string, timesOut?: { create: number[]; del: number[] }) => {
      const t0 = now();
      const { volume } = await ctl!.call<{ volume: { volume_id: string } }>('controller', 'CreateVolume', request(name));
      const t1 = now();
      await ctl!.call('controller', 'DeleteVolume', { volume_id: volume.volume_id });
      if (timesOut) {
        timesOut.create.push(t1 - t0);
        timesOut.del.push(now() - t1);
      }
    };
    await closedLoop(c, Math.min(500, durationMs / 4), (seq) => pair(`warm-${c}-${seq}`)); // JIT warm-up
    const parts = { create: [] as number[], del: [] as number[] };
    const cpu0 = { ctl: cpuMs(controller!.pid), emu: cpuMs(emulator!.pid), self: process.cpuUsage() };
    const loop = await closedLoop(c, durationMs, (seq) => pair(`cd-${c}-${seq}`, parts));
    const self = process.cpuUsage(cpu0.self);
    const perPair = (ms: number) => fmt(ms / loop.ops, 2);
    const rate = loop.ops / loop.seconds;
    const floor = find('floor', `emulator-pairs-c${c}`);
    const s = summarize(loop.latencies);
    add({
      section: 'create-delete', name: `pairs-c${c}`, value: rate, unit: 'pairs/s', opsPerSec: rate, latency: s,
      ...(floor ? { floor: { name: `emulator-pairs-c${c}`, value: floor.value, unit: 'pairs/s' }, ratio: floor.value / rate } : {}),
      note: `${loop.ops} pairs; CPU ms/pair: controller ${perPair(cpuMs(controller!.pid) - cpu0.ctl)}, emulator ${perPair(cpuMs(emulator!.pid) - cpu0.emu)}, ` +
        `bench client ${perPair((self.user + self.system) / 1000)}; CreateVolume p50 ${fmt(summarize(parts.create).p50)} ms, DeleteVolume p50 ${fmt(summarize(parts.del).p50)} ms; p99/p50 ${fmt(s.p99 / s.p50)}`,
    });
  }
  const peaks = sampler.stop();
  add({ section: 'rss', name: 'controller-under-load', value: peaks.get(controller!.pid) ?? NaN, unit: 'MiB', note: 'peak during create/delete' });
  add({ section: 'rss', name: 'emulator-under-load', value: peaks.get(emulator!.pid) ?? NaN, unit: 'MiB', note: 'peak during create/delete; the back end, not ours' });
}

/** A 1 GiB volume created and published (ControllerPublishVolume) to this node. */
async function publishedVolume(name: string, fsType: string): Promise<{ id: string; publishContext: Record<string, string> }> {
  const { volume } = await ctl!.call<{ volume: { volume_id: string } }>('controller', 'CreateVolume', {
    name, capacity_range: { required_bytes: String(GiB) }, volume_capabilities: [mountCap(fsType)], parameters: {},
  });
  const { publish_context } = await ctl!.call<{ publish_context: Record<string, string> }>('controller', 'ControllerPublishVolume', {
    volume_id: volume.volume_id, node_id: HOST_ID, volume_capability: mountCap(fsType),
  });
  return { id: volume.volume_id, publishContext: publish_context };
}

async function removeVolume(id: string): Promise<void> {
  await ctl!.call('controller', 'ControllerUnpublishVolume', { volume_id: id, node_id: HOST_ID });
  await ctl!.call('controller', 'DeleteVolume', { volume_id: id });
}

/** CreateSnapshot and a linked clone from it (of a 1 GiB ext4-formatted volume), against the emulator alone. */
async function snapshots(): Promise<void> {
  const src = await publishedVolume('snap-source', 'ext4');
  const staging = join(dir, 'snap-source-staging');
  await nodeCsi!.call('node', 'NodeStageVolume', { volume_id: src.id, staging_target_path: staging, volume_capability: mountCap('ext4'), publish_context: src.publishContext, volume_context: {} });
  await nodeCsi!.call('node', 'NodeUnstageVolume', { volume_id: src.id, staging_target_path: staging });
  const snap: number[] = [];
  const clone: number[] = [];
  const del: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const [ts, r] = await timed(() => ctl!.call<{ snapshot: { snapshot_id: string } }>('controller', 'CreateSnapshot', { source_volume_id: src.id, name: `snap-${i}`, parameters: {} }));
    const [tc, v] = await timed(() => ctl!.call<{ volume: { volume_id: string } }>('controller', 'CreateVolume', {
      name: `clone-${i}`, capacity_range: { required_bytes: String(GiB) }, volume_capabilities: [mountCap('ext4')], parameters: {},
      volume_content_source: { snapshot: { snapshot_id: r.snapshot.snapshot_id } },
    }));
    const [td] = await timed(async () => {
      await ctl!.call('controller', 'DeleteVolume', { volume_id: v.volume.volume_id });
      await ctl!.call('controller', 'DeleteSnapshot', { snapshot_id: r.snapshot.snapshot_id });
    });
    snap.push(ts);
    clone.push(tc);
    del.push(td);
  }
  // The floor: the same requests straight to the emulator.
  const rawSnap: number[] = [];
  const rawClone: number[] = [];
  const sock = emulator!.vbsSocket;
  const gone = async (type: string, key: string, name: string) => {
    while ((await vbsCall(sock, type, { [key]: name })).retcode !== RetCode.NOT_EXIST) await sleep(1);
  };
  for (let i = 0; i < iterations; i++) {
    const [ts, rs] = await timed(() => vbsCall(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: `raw-snap-${i}`, vol_name: src.id, smartflag: 1 }));
    const [tc, rc] = await timed(() => vbsCall(sock, 'CREATE_VOLUME_FROM_SNAPSHOT_REQ', { vol_name: `raw-clone-${i}`, vol_size: 1024, snap_name_src: `raw-snap-${i}`, vol_num: 1 }));
    if (rs.retcode !== 0 || rc.retcode !== 0) throw new Error(`raw snapshot/clone: ${rs.retcode}/${rc.retcode}`);
    await vbsCall(sock, 'DELETE_VOLUME_REQ', { vol_name: `raw-clone-${i}` });
    await gone('QUERY_VOLUME_REQ', 'vol_name', `raw-clone-${i}`);
    await vbsCall(sock, 'DELETE_SNAPSHOT_REQ', { snap_name: `raw-snap-${i}` });
    await gone('QUERY_SNAPSHOT_REQ', 'snap_name', `raw-snap-${i}`);
    rawSnap.push(ts);
    rawClone.push(tc);
  }
  const rs = summarize(rawSnap);
  const rc = summarize(rawClone);
  add({ section: 'floor', name: 'emulator-snapshot', value: rs.p50, unit: 'ms', latency: rs, note: 'CREATE_SNAPSHOT_REQ straight to the emulator' });
  add({ section: 'floor', name: 'emulator-clone', value: rc.p50, unit: 'ms', latency: rc, note: 'CREATE_VOLUME_FROM_SNAPSHOT_REQ straight to the emulator' });
  const s = summarize(snap);
  const c = summarize(clone);
  add({ section: 'snapshot', name: 'create-snapshot', value: s.p50, unit: 'ms', latency: s, floor: { name: 'emulator-snapshot', value: rs.p50, unit: 'ms' }, ratio: s.p50 / rs.p50 });
  add({ section: 'snapshot', name: 'linked-clone', value: c.p50, unit: 'ms', latency: c, floor: { name: 'emulator-clone', value: rc.p50, unit: 'ms' }, ratio: c.p50 / rc.p50, note: 'CreateVolume from the snapshot' });
  add({ section: 'snapshot', name: 'delete-clone+snapshot', value: summarize(del).p50, unit: 'ms', latency: summarize(del) });
  await removeVolume(src.id);
}

/** First NodeStageVolume of a blank 1 GiB volume (mkfs included), ext4 and xfs; floor: the same tools by hand. */
async function firstStage(): Promise<void> {
  const cliEnv = { ...process.env, SDS_KV_SOCKET: emulator!.kvSocket };
  for (const fsType of ['ext4', 'xfs'] as const) {
    const stage: number[] = [];
    for (let r = 0; r < firstStageRepeats; r++) {
      const v = await publishedVolume(`first-${fsType}-${r}`, fsType);
      const staging = join(dir, `first-${fsType}-${r}`);
      const [t] = await timed(() => nodeCsi!.call('node', 'NodeStageVolume', { volume_id: v.id, staging_target_path: staging, volume_capability: mountCap(fsType), publish_context: v.publishContext, volume_context: {} }));
      stage.push(t);
      await nodeCsi!.call('node', 'NodeUnstageVolume', { volume_id: v.id, staging_target_path: staging });
      await removeVolume(v.id);
    }
    // Floor: attach, mkfs (the driver's arguments) and mount, run by hand on a fresh volume.
    const floor: number[] = [];
    for (let r = 0; r < firstStageRepeats; r++) {
      const v = await publishedVolume(`first-floor-${fsType}-${r}`, fsType);
      const mnt = join(dir, `first-floor-${fsType}-${r}`);
      await mkdir(mnt, { recursive: true });
      const t0 = now();
      const { stdout } = await exec(sdsCliPath(), ['-c', 'attach', '-v', v.id], { env: cliEnv });
      const dev = /dev_addr=(\S+)/.exec(stdout)?.[1];
      if (!dev) throw new Error(`sds_cli attach printed no dev_addr: ${stdout}`);
      if (fsType === 'ext4') await exec('mkfs.ext4', ['-F', '-q', '-b', '4096', '-E', 'lazy_itable_init=1,lazy_journal_init=1', dev]);
      else await exec('mkfs.xfs', ['-q', '-s', 'size=4096', dev]);
      await exec('mount', ['-t', fsType, ...(fsType === 'xfs' ? ['-o', 'nouuid'] : []), dev, mnt]);
      floor.push(now() - t0);
      await exec('umount', [mnt]);
      await exec(sdsCliPath(), ['-c', 'detach', '-v', v.id], { env: cliEnv });
      await removeVolume(v.id);
    }
    const s = summarize(stage);
    const f = summarize(floor);
    add({ section: 'floor', name: `attach+mkfs+mount-${fsType}`, value: f.p50, unit: 'ms', latency: f, note: 'sds_cli attach, mkfs, mount by hand' });
    add({ section: 'first-stage', name: `${fsType}-1GiB`, value: s.p50, unit: 'ms', latency: s, floor: { name: `attach+mkfs+mount-${fsType}`, value: f.p50, unit: 'ms' }, ratio: s.p50 / f.p50 });
  }
}

/** Stage + publish + unpublish + unstage of an already-formatted volume, each call timed; and the programs each call runs. */
async function stagePublish(): Promise<void> {
  const fsType = 'ext4';
  const v = await publishedVolume('stage-cycle', fsType);
  const staging = join(dir, 'kubelet', 'globalmount');
  const target = join(dir, 'kubelet', 'pods', 'mount');
  const cap = mountCap(fsType);
  const stageReq = { volume_id: v.id, staging_target_path: staging, volume_capability: cap, publish_context: v.publishContext, volume_context: {} };
  const publishReq = { ...stageReq, target_path: target, readonly: false };
  await nodeCsi!.call('node', 'NodeStageVolume', stageReq); // formats
  await nodeCsi!.call('node', 'NodeUnstageVolume', { volume_id: v.id, staging_target_path: staging });

  const sampler = new RssSampler([node!.pid]);
  let nodeCpu0 = cpuMs(node!.pid);
  const t = { stage: [] as number[], publish: [] as number[], unpublish: [] as number[], unstage: [] as number[], stagePublish: [] as number[] };
  for (let i = 0; i < iterations + 2; i++) {
    const [a] = await timed(() => nodeCsi!.call('node', 'NodeStageVolume', stageReq));
    const [b] = await timed(() => nodeCsi!.call('node', 'NodePublishVolume', publishReq));
    const [c] = await timed(() => nodeCsi!.call('node', 'NodeUnpublishVolume', { volume_id: v.id, target_path: target }));
    const [d] = await timed(() => nodeCsi!.call('node', 'NodeUnstageVolume', { volume_id: v.id, staging_target_path: staging }));
    if (i < 2) {
      nodeCpu0 = cpuMs(node!.pid); // warm-up
      continue;
    }
    t.stage.push(a);
    t.publish.push(b);
    t.unpublish.push(c);
    t.unstage.push(d);
    t.stagePublish.push(a + b);
  }
  const peak = sampler.stop().get(node!.pid) ?? NaN;
  const nodeCpuPerCycle = (cpuMs(node!.pid) - nodeCpu0) / iterations;

  // Floor: the least the machine must do for the same: attach + mount (stage), bind (publish), and back.
  const cliEnv = { ...process.env, SDS_KV_SOCKET: emulator!.kvSocket };
  const f = { stage: [] as number[], publish: [] as number[], unpublish: [] as number[], unstage: [] as number[], stagePublish: [] as number[] };
  await mkdir(staging, { recursive: true });
  await mkdir(target, { recursive: true });
  for (let i = 0; i < iterations; i++) {
    const [a] = await timed(async () => {
      const { stdout } = await exec(sdsCliPath(), ['-c', 'attach', '-v', v.id], { env: cliEnv });
      const dev = /dev_addr=(\S+)/.exec(stdout)![1]!;
      await exec('mount', ['-t', fsType, dev, staging]);
    });
    const [b] = await timed(() => exec('mount', ['--bind', staging, target]));
    const [c] = await timed(() => exec('umount', [target]));
    const [d] = await timed(async () => {
      await exec('umount', [staging]);
      await exec(sdsCliPath(), ['-c', 'detach', '-v', v.id], { env: cliEnv });
    });
    f.stage.push(a);
    f.publish.push(b);
    f.unpublish.push(c);
    f.unstage.push(d);
    f.stagePublish.push(a + b);
  }
  for (const k of ['stage', 'publish', 'unpublish', 'unstage', 'stagePublish'] as const) {
    const floorName = `${k === 'stagePublish' ? 'stage+publish' : k}-by-hand`;
    const fs = summarize(f[k]);
    add({ section: 'floor', name: floorName, value: fs.p50, unit: 'ms', latency: fs, note: k === 'stage' ? 'sds_cli attach + mount' : k === 'publish' ? 'mount --bind' : k === 'unstage' ? 'umount + sds_cli detach' : undefined });
    const s = summarize(t[k]);
    add({
      section: 'stage', name: k === 'stagePublish' ? 'stage+publish' : `Node${k[0]!.toUpperCase()}${k.slice(1)}Volume`,
      value: s.p50, unit: 'ms', latency: s, floor: { name: floorName, value: fs.p50, unit: 'ms' }, ratio: s.p50 / fs.p50,
      ...(k === 'stagePublish' ? { note: `the node process's own CPU per stage+publish+unpublish+unstage: ${fmt(nodeCpuPerCycle)} ms (its children not counted)` } : {}),
    });
  }
  add({ section: 'rss', name: 'node-under-load', value: peak, unit: 'MiB', note: 'peak during the stage/publish cycles' });
  const counts = await countPrograms(v, fsType);
  notes.push(`programs run per call (formatted ${fsType} volume): ${counts}`);
  await removeVolume(v.id);
}

/**
 * Which programs each node call runs: one cycle on a second node process whose PATH starts with shims that
 * log their name and exec the real tool (and whose sds_cli is such a shim).
 */
async function countPrograms(v: { id: string; publishContext: Record<string, string> }, fsType: string): Promise<string> {
  const shims = join(dir, 'shims');
  const logFile = join(dir, 'shims.log');
  await mkdir(shims, { recursive: true });
  const searchPath = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  const tools = ['blkid', 'mount', 'umount', 'findmnt', 'losetup', 'mkfs.ext4', 'mkfs.xfs', 'e2fsck', 'dumpe2fs', 'resize2fs', 'xfs_growfs', 'xfs_db', 'blockdev'];
  const shim = async (name: string, real: string) => {
    const path = join(shims, name);
    await writeFile(path, `#!/bin/sh\necho "${name} $*" >> '${logFile}'\nexec '${real}' "$@"\n`);
    await chmod(path, 0o755);
    return path;
  };
  for (const tool of tools) {
    const real = searchPath.map((d) => join(d, tool)).find((p) => existsSync(p));
    if (real) await shim(tool, real);
  }
  const cli = await shim('sds_cli', sdsCliPath());
  const counting = spawnDriver(driverBase('node', 'node-counting', { sdsCli: cli, nodeArgs: [], env: { PATH: `${shims}${delimiter}${process.env.PATH ?? ''}` } }));
  const csi = connectCsi(counting.socket);
  try {
    await waitProbeReady(counting);
    const staging = join(dir, 'kubelet', 'globalmount');
    const target = join(dir, 'kubelet', 'pods', 'mount');
    const stageReq = { volume_id: v.id, staging_target_path: staging, volume_capability: mountCap(fsType), publish_context: v.publishContext, volume_context: {} };
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['NodeStageVolume', () => csi.call('node', 'NodeStageVolume', stageReq)],
      ['NodePublishVolume', () => csi.call('node', 'NodePublishVolume', { ...stageReq, target_path: target, readonly: false })],
      ['NodeUnpublishVolume', () => csi.call('node', 'NodeUnpublishVolume', { volume_id: v.id, target_path: target })],
      ['NodeUnstageVolume', () => csi.call('node', 'NodeUnstageVolume', { volume_id: v.id, staging_target_path: staging })],
    ];
    const parts: string[] = [];
    let seen = 0;
    for (const [name, call] of calls) {
      await call();
      const lines = (existsSync(logFile) ? await readFile(logFile, 'utf8') : '').split('\n').filter(Boolean);
      const mine = lines.slice(seen).map((l) => l.split(' ').slice(0, 3).join(' ').replaceAll(`${dir}/`, ''));
      seen = lines.length;
      parts.push(`${name}: ${mine.length} (${mine.join('; ') || 'none'})`);
    }
    return parts.join(' | ');
  } finally {
    csi.close();
    await counting.stop();
  }
}

/**
 * Changed-block tracking: bench/snapshot-delta.ts (its own emulator, every pool type) at a size that fits a
 * run; its figures join the table. `npm run bench:delta` runs it at its full 10 GiB.
 */
async function snapshotDelta(): Promise<void> {
  const sizeGiB = Number(opt['delta-gib'] ?? (quick ? 0.25 : 1));
  const script = join(projectRoot(), 'dist', 'bench', 'snapshot-delta.js');
  const { stdout } = await exec(process.execPath, [script, '--size-gib', String(sizeGiB), '--json'], { env: cleanEnv(), maxBuffer: 64 * 1024 * 1024 });
  const report = JSON.parse(stdout.trim().split('\n').pop()!) as {
    results: Array<{ pool: string; method: string; deltaSeconds: number; pages: number; extents: number; deltaBytes: number; writtenBytes: number; exact: boolean; allocatedSeconds: number; allocatedBytes: number }>;
  };
  const MiB = 1024 * 1024;
  for (const r of report.results) {
    add({
      section: 'snapshot-delta', name: `${r.pool}-${sizeGiB}GiB`, value: r.deltaSeconds * 1000, unit: 'ms',
      note: `${r.method}: ${r.pages} page(s), ${r.extents} ranges, ${fmt(r.deltaBytes / MiB)} MiB listed of ${fmt(r.writtenBytes / MiB)} MiB rewritten (1 % of 4 KiB blocks), ` +
        `exact: ${r.exact ? 'yes' : 'NO'}; the allocated map of the whole snapshot: ${fmt(r.allocatedSeconds * 1000)} ms`,
    });
    if (!r.exact) notes.push(`snapshot-delta on ${r.pool}: the listed delta is not exactly the rewritten blocks`);
  }
}

function judgeTargets(): Array<{ name: string; wanted: string; measured: string; met: boolean }> {
  const out: Array<{ name: string; wanted: string; measured: string; met: boolean }> = [];
  const c16 = find('create-delete', 'pairs-c16');
  if (c16) {
    out.push({ name: 'CreateVolume+DeleteVolume at concurrency 16', wanted: '≥ 800 pairs/s', measured: `${fmt(c16.value)} pairs/s`, met: c16.value >= 800 });
    const ratio = c16.latency!.p99 / c16.latency!.p50;
    out.push({ name: '… its p99 ÷ p50', wanted: '≤ 3', measured: fmt(ratio), met: ratio <= 3 });
  }
  const idle = find('rss', 'node-idle');
  if (idle) out.push({ name: 'node plugin idle RSS', wanted: '≤ 70 MiB', measured: `${fmt(idle.value)} MiB (${idle.note ?? ''})`, met: idle.value <= 70 });
  for (const mode of ['controller', 'node'] as const) {
    const p = find('startup', `probe-ready-${mode}`);
    if (p) out.push({ name: `Probe ready after start (--mode=${mode})`, wanted: '≤ 400 ms', measured: `${fmt(p.value)} ms`, met: p.value <= 400 });
  }
  const sp = find('stage', 'stage+publish');
  if (sp) out.push({ name: 'stage+publish of a formatted volume, p50', wanted: '≤ 60 ms', measured: `${fmt(sp.value)} ms`, met: sp.value <= 60 });
  return out;
}

export type { Summary };
