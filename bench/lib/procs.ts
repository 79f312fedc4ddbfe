// The processes under test: the emulator daemon, and driver processes (--mode=controller|node|all) started
// from dist/src/main.js, each its own process so its RSS and CPU are its own. /proc readers for both.
import { DEPLOYED_NODE_ARGS } from '../../src/config/deployed-node-args.js';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, readFileSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createLogger } from '../../src/log/logger.js';
import { EmbeddedEmulator } from '../../src/server/embedded-emulator.js';
import { projectRoot } from '../../src/util/paths.js';

const run = promisify(execFile);

export const HOST_ID = 'bench-host';
/** the back end's second host (--data-host), for the multi-host section */
export const SECOND_HOST_ID = 'bench-host-2';

/** This process's environment without CSI/SDS settings, so nothing of the caller's leaks into a child. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(CSI_|SDS_|HUAWEISDSHYPERVISORCLI_PATH$|NODE_NAME$|KUBECONFIG$|LOG_LEVEL$|NODE_OPTIONS$|VITEST)/.test(k))
      continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** VmRSS of a process in MiB, or NaN when it is gone. */
export function rssMiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** user + system CPU time of a process in ms. */
export function cpuMs(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return NaN;
  }
}

/** Samples the RSS of some processes until stopped; keeps the peak of each. */
export class RssSampler {
  private readonly peaks = new Map<number, number>();
  private readonly timer: NodeJS.Timeout;
  constructor(pids: number[], everyMs = 25) {
    const sample = () => {
      for (const pid of pids) {
        const rss = rssMiB(pid);
        if (!Number.isNaN(rss)) this.peaks.set(pid, Math.max(this.peaks.get(pid) ?? 0, rss));
      }
    };
    sample();
    this.timer = setInterval(sample, everyMs);
  }
  stop(): Map<number, number> {
    clearInterval(this.timer);
    return this.peaks;
  }
}

export interface Emulator {
  pid: number;
  dataDir: string;
  vbsSocket: string;
  kvSocket: string;
  stop(): Promise<void>;
}

/** `nodeOptions`: NODE_OPTIONS for the emulator (e.g. --cpu-prof); `extraArgs`: more of its settings. */
export async function startEmulator(
  dir: string,
  poolSize: string,
  nodeOptions?: string,
  extraArgs: string[] = [],
): Promise<Emulator> {
  const dataDir = join(dir, 'emulator');
  const vbsSocket = join(dataDir, 'vbs.sock');
  const kvSocket = join(dataDir, 'kv.sock');
  const emulator = await EmbeddedEmulator.start({
    dataDir,
    log: createLogger({ level: 'silent' }),
    port: -1,
    extraArgs: [
      '--host-id',
      HOST_ID,
      '--control-socket',
      vbsSocket,
      '--kv-socket',
      kvSocket,
      '--data-host',
      SECOND_HOST_ID,
      '--pool',
      `pool0:${poolSize}`,
      '--log-level',
      'warn',
      ...extraArgs,
    ],
    env: cleanEnv(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}),
    output: 'inherit',
  });
  return {
    pid: emulator.pid,
    dataDir,
    vbsSocket,
    kvSocket,
    async stop() {
      const exit = await emulator.stop(20_000);
      if (exit.code !== 0) throw new Error(`the emulator exited with code ${exit.code} signal ${exit.signal}`);
    },
  };
}

export type DriverMode = 'controller' | 'node' | 'all';

export interface DriverOptions {
  mode: DriverMode;
  dir: string;
  /** a name for its socket and log file */
  name: string;
  /** the VBS socket (controller and node modes) */
  vbsSocket?: string;
  kvSocket?: string;
  /** node mode: the back-end host id (default HOST_ID) */
  hostId?: string;
  /** node mode: the sds_cli to run (default the emulator's) */
  sdsCli?: string;
  logLevel: string;
  /** node options before the script (--cpu-prof ...) */
  nodeArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** all mode: the embedded emulator's data directory */
  dataDir?: string;
  /** the driver's entry script (default dist/src/main.js) */
  entry?: string;
  /** serve /metrics and /healthz (on a free port), as deployed; default true */
  metrics?: boolean;
}

export interface Driver {
  child: ChildProcess;
  pid: number;
  socket: string;
  logFile: string;
  /** when spawn() was called (performance.now()) */
  spawnedAt: number;
  exited: Promise<number | null>;
  stop(): Promise<number | null>;
}

export const sdsCliPath = () => join(projectRoot(), 'emulator', 'bin', 'sds_cli');

/** Starts a driver process; its pino log goes to a file (as a container's stderr goes to a log, not to us). */
export function spawnDriver(o: DriverOptions): Driver {
  const entry = o.entry ?? join(projectRoot(), 'dist', 'src', 'main.js');
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run npm run build`);
  const socket = join(o.dir, `${o.name}.sock`);
  const logFile = join(o.dir, `${o.name}.log`);
  const args = [
    ...DEPLOYED_NODE_ARGS,
    ...(o.nodeArgs ?? []),
    entry,
    `--mode=${o.mode}`,
    '--endpoint',
    `unix://${socket}`,
    `--metrics-address=${o.metrics === false ? '' : '127.0.0.1:0'}`,
    `--log-level=${o.logLevel}`,
    '--shutdown-grace-ms=5000',
  ];
  if (o.mode === 'all') args.push('--emulator=true', '--data-dir', o.dataDir!);
  else args.push('--emulator=false', '--vbs-url', `unix://${o.vbsSocket!}`);
  if (o.mode === 'node') args.push('--host-id', o.hostId ?? HOST_ID, '--sds-cli', o.sdsCli ?? sdsCliPath());
  const env = cleanEnv({ ...(o.kvSocket ? { SDS_KV_SOCKET: o.kvSocket } : {}), ...o.env });
  const fd = openSync(logFile, 'a');
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', fd, fd], env });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    pid: child.pid!,
    socket,
    logFile,
    spawnedAt,
    exited,
    stop: () => stopChild(child, exited, 30_000),
  };
}

/** SIGTERM (unless it has exited), SIGKILL if it has not exited `killAfterMs` later; resolves with `exited`. */
async function stopChild<T>(child: ChildProcess, exited: Promise<T>, killAfterMs: number): Promise<T> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Mounts under `dir` and loop devices backed by files under it: ours, so removed (and reported). */
export async function cleanUpUnder(dir: string): Promise<string[]> {
  const left: string[] = [];
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4]?.replace(/\\040/g, ' '))
    .filter((m): m is string => !!m && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) {
    left.push(`mount ${m}`);
    await run('umount', ['-l', m]).catch(() => undefined);
  }
  const { stdout } = await run('losetup', ['--list', '--noheadings', '--raw', '--output', 'NAME,BACK-FILE']).catch(
    () => ({ stdout: '' }),
  );
  for (const line of stdout.split('\n')) {
    const space = line.indexOf(' ');
    if (space === -1) continue;
    const backing = line.slice(space + 1).trim();
    if (backing === dir || backing.startsWith(`${dir}/`)) {
      left.push(`loop device ${line.slice(0, space)}`);
      await run('losetup', ['-d', line.slice(0, space)]).catch(() => undefined);
    }
  }
  return left;
}

/** The idle-memory floor's process (bench/floors/csi-idle.ts), serving, with the node plugin's flags. */
export interface IdleFloor {
  pid: number;
  socket: string;
  stop(): Promise<void>;
}

/** Starts bench/floors/csi-idle.ts under the node plugin's flags (the deployed ones and --no-opt, main.ts). */
export async function startCsiIdleFloor(dir: string): Promise<IdleFloor> {
  const socket = join(dir, 'csi-idle-floor.sock');
  const child = spawn(
    process.execPath,
    [...DEPLOYED_NODE_ARGS, '--no-opt', join(projectRoot(), 'dist', 'bench', 'floors', 'csi-idle.js'), socket],
    { stdio: ['ignore', 'pipe', 'inherit'], env: cleanEnv() },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('ready\n')) resolve();
    });
    void exited.then(() => reject(new Error(`the idle floor process exited before it served (${out})`)));
  });
  return {
    pid: child.pid!,
    socket,
    stop: () => stopChild(child, exited, 10_000),
  };
}
