// What every bench section is handed: the options, the temp directory, the processes under test with their
// clients, and the report the figures go into. Built once by bench/run.ts; sections keep no state of their own.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { VolumeCapability } from '../../src/generated/csi/v1/VolumeCapability.js';
import type { Csi } from './clients.js';
import type { Driver, DriverMode, DriverOptions, Emulator } from './procs.js';
import { fmt, load1, type Figure } from './stats.js';

export const SECTIONS = [
  'floor',
  'startup',
  'create-delete',
  'snapshot',
  'stage',
  'first-stage',
  'snapshot-delta',
  'multi-host',
  'scale',
] as const;
export type Section = (typeof SECTIONS)[number];

export interface BenchOptions {
  quick: boolean;
  durationMs: number;
  iterations: number;
  firstStageRepeats: number;
  startupRepeats: number;
  settleMs: number;
  levels: number[];
  only: Set<Section>;
  deltaGiB: number;
  /** volumes the scale section fills its back end with */
  scaleVolumes: number;
  logLevel: string;
  nodeArgs: string[];
  metrics: boolean;
  driverEntry?: string;
  keep: boolean;
  jsonPath?: string;
  markdownPath?: string;
}

const USAGE = [
  'Usage: npm run bench -- [options]',
  '  --quick              a short run (seconds): small counts, for a smoke test',
  '  --duration S         seconds per create/delete concurrency level (default 5; quick 0.4)',
  '  --iterations N       snapshot and stage/publish cycles (default 40; quick 2)',
  `  --only a,b           sections: ${SECTIONS.join(', ')} (default all)`,
  '  --json PATH          where the JSON goes (default bench/results/<date>.json)',
  '  --markdown PATH      also write the run as a Markdown section (for docs/BENCHMARKS.md)',
  '  --concurrency 1,16,64  create/delete concurrency levels',
  "  --log-level L        the driver processes' log level (default info, as deployed)",
  '  --cpu-prof DIR       run the driver processes with node --cpu-prof, profiles written to DIR',
  '  --node-option OPT    a node option for the driver processes (repeatable), e.g. --max-semi-space-size=2',
  '  --settle S           seconds after start before idle RSS is read (default 25; quick 1)',
  '  --driver PATH        the driver entry to measure (default dist/src/main.js; for A/B runs of two builds)',
  '  --no-metrics         run the drivers without their /metrics listener (deployed: on)',
  '  --delta-gib N        volume size of the snapshot-delta section (default 1; quick 0.25; npm run bench:delta: 10)',
  '  --scale-volumes N    volumes of the scale section (default 100000; quick 2000)',
  '  --keep               keep the temp directory (logs) after the run',
].join('\n');

/** The command line as options; `help` when --help was asked for (the usage is then printed). */
export function parseBenchOptions(args: string[]): BenchOptions | 'help' {
  const { values: opt } = parseArgs({
    args,
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
      'scale-volumes': { type: 'string' },
      settle: { type: 'string' },
      driver: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (opt.help) {
    process.stdout.write(`${USAGE}\n`);
    return 'help';
  }
  const quick = opt.quick;
  const durationMs = 1000 * Number(opt.duration ?? (quick ? 0.4 : 5));
  const iterations = Number(opt.iterations ?? (quick ? 2 : 40));
  const levels = (opt.concurrency ?? '1,16,64').split(',').map(Number);
  const only = new Set((opt.only ? opt.only.split(',') : [...SECTIONS]).map((s) => s.trim()));
  for (const s of only) {
    if (!(SECTIONS as readonly string[]).includes(s))
      throw new Error(`--only: unknown section ${s} (known: ${SECTIONS.join(', ')})`);
  }
  const scaleVolumes = Number(opt['scale-volumes'] ?? (quick ? 2000 : 100_000));
  if (![durationMs, iterations, scaleVolumes, ...levels].every((n) => Number.isFinite(n) && n > 0)) {
    throw new Error('--duration, --iterations, --scale-volumes and --concurrency must be positive numbers');
  }
  return {
    quick,
    durationMs,
    iterations,
    firstStageRepeats: quick ? 1 : 3,
    startupRepeats: quick ? 1 : 7,
    settleMs: 1000 * Number(opt.settle ?? (quick ? 1 : 25)),
    levels,
    only: only as Set<Section>,
    deltaGiB: Number(opt['delta-gib'] ?? (quick ? 0.25 : 1)),
    scaleVolumes,
    logLevel: opt['log-level'],
    nodeArgs: [
      ...(opt['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${resolve(opt['cpu-prof'])}`] : []),
      ...(opt['node-option'] ?? []),
    ],
    metrics: !opt['no-metrics'],
    ...(opt.driver ? { driverEntry: resolve(opt.driver) } : {}),
    keep: opt.keep,
    ...(opt.json ? { jsonPath: resolve(opt.json) } : {}),
    ...(opt.markdown ? { markdownPath: resolve(opt.markdown) } : {}),
  };
}

export function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)} load ${load1()}] ${line}\n`);
}

/** The figures and notes of one run. */
export class Report {
  readonly figures: Figure[] = [];
  readonly notes: string[] = [];

  readonly add = (f: Omit<Figure, 'load'>): Figure => {
    const figure = { ...f, load: load1() };
    this.figures.push(figure);
    const latency = f.latency ? ` (p50 ${fmt(f.latency.p50)} ms, p99 ${fmt(f.latency.p99)} ms)` : '';
    log(`${f.section}/${f.name}: ${fmt(f.value)} ${f.unit}${latency}`);
    return figure;
  };

  readonly find = (section: string, name: string): Figure | undefined =>
    this.figures.find((f) => f.section === section && f.name === name);
}

export interface BenchContext {
  opt: BenchOptions;
  dir: string;
  emulator: Emulator;
  controller: Driver;
  node: Driver;
  /** the controller's and the node's CSI clients */
  ctl: Csi;
  nodeCsi: Csi;
  add: Report['add'];
  find: Report['find'];
  notes: string[];
  /** options of a driver process of this run (`all` mode starts its own emulator) */
  driverBase(mode: DriverMode, name: string, extra?: Partial<DriverOptions>): DriverOptions;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const now = () => performance.now();

/** `concurrency` workers call `op` until `ms` have passed; ops counted and timed. */
export async function closedLoop(
  concurrency: number,
  ms: number,
  op: (seq: number) => Promise<void>,
): Promise<{ ops: number; seconds: number; latencies: number[] }> {
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

export async function repeat(n: number, op: (i: number) => Promise<void>): Promise<number[]> {
  const latencies: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = now();
    await op(i);
    latencies.push(now() - t);
  }
  return latencies;
}

export async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t = now();
  const value = await fn();
  return [now() - t, value];
}

export const mountCap = (fsType: string): VolumeCapability => ({
  mount: { fs_type: fsType, mount_flags: [] },
  access_mode: { mode: 'SINGLE_NODE_WRITER' },
});
