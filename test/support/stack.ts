// The real stack for conformance and end-to-end tests: the emulator daemon and the driver as separate
// processes (the built JS under dist/), talking over their real sockets, and real gRPC clients for the CSI
// services. Each stack lives in its own mkdtemp directory; stop() shuts everything down and fails the test
// if a loop device or mount under that directory is left behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { createLogger } from '../../src/log/logger.js';
import { EmbeddedEmulator } from '../../src/server/embedded-emulator.js';
import { projectRoot } from '../../src/util/paths.js';
import { connectCsi, type CsiClients } from './csi-client.js';
import { cleanupLeaks, processesUnder, settledLeaks } from './leaks.js';

export type DriverMode = 'controller' | 'node' | 'all';

export interface StackOptions {
  /** driver mode; default controller */
  mode?: DriverMode;
  /** the emulator's own host id; default host-a */
  hostId?: string;
  /** more host ids the back end knows */
  extraHosts?: string[];
  /** emulator pools as name[:size][:path]; default one pool0 of 4 GiB */
  pools?: string[];
  /** socket-API token, required by the emulator and given to the driver */
  token?: string;
  /** more driver arguments */
  driverArgs?: string[];
  /** more driver environment */
  driverEnv?: NodeJS.ProcessEnv;
  /** more emulator arguments */
  emulatorArgs?: string[];
  /** start the driver (default true); false for tests that start it themselves */
  startDriver?: boolean;
  /**
   * The socket-API level under test (default extended). `original`: the emulator runs `--protocol original`
   * and the driver `--vbs-protocol original --vbs-pools <the pools>`; `auto`: original emulator, driver left
   * to negotiate (with the pools).
   */
  level?: StackLevel;
}

export type StackLevel = 'original' | 'extended' | 'auto';

export interface Stack {
  /** the temp directory holding everything */
  dir: string;
  emulatorDataDir: string;
  vbsSocket: string;
  kvSocket: string;
  csiSocket: string;
  hostId: string;
  sdsCli: string;
  csi: CsiClients;
  /** what the driver process wrote to stderr (its pino log) */
  driverLog(): string;
  emulatorLog(): string;
  /** SIGSTOPs the emulator so back-end calls hang (and the driver holds its locks); returns the thaw. */
  freezeEmulator(): () => void;
  stopEmulator(): Promise<void>;
  /** SIGKILLs the emulator, as a crash would (its pool stays mounted until the next start takes it over). */
  killEmulator(): Promise<void>;
  emulatorPid(): number | undefined;
  startEmulator(): Promise<void>;
  /** starts the driver and waits until Probe says ready (or, with `until: 'serving'`, until Probe answers at all) */
  startDriver(extraArgs?: string[], until?: 'ready' | 'serving'): Promise<void>;
  /** SIGTERM to the driver; resolves with its exit code */
  stopDriver(): Promise<number | null>;
  /** kill -9 of the driver; resolves when it has exited. startDriver() restarts it. */
  killDriver(): Promise<void>;
  driverProcess(): ChildProcess | undefined;
  /** resolves with the driver's exit code when it exits */
  driverExited(): Promise<number | null>;
  stop(): Promise<void>;
}

/** Environment for children without this process's CSI/SDS settings, so nothing leaks into a test. */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(CSI_|SDS_|HUAWEISDSHYPERVISORCLI_PATH$|NODE_NAME$|KUBECONFIG$|LOG_LEVEL$|VITEST|NODE_OPTIONS$)/.test(k))
      continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

function tail(text: string, lines = 40): string {
  return text.split('\n').slice(-lines).join('\n');
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const root = projectRoot();
  const driverEntry = join(root, 'dist', 'src', 'main.js');
  if (!existsSync(driverEntry)) throw new Error(`${driverEntry} is missing: run npm run build before the tests`);
  // realpath: /proc/mounts and losetup report resolved paths.
  const dir = await realpath(await mkdtemp(join(tmpdir(), 'csi-stack-')));
  const emulatorDataDir = join(dir, 'emulator');
  await mkdir(emulatorDataDir, { recursive: true });
  const hostId = options.hostId ?? 'host-a';
  const vbsSocket = join(emulatorDataDir, 'vbs.sock');
  const kvSocket = join(emulatorDataDir, 'kv.sock');
  const csiSocket = join(dir, 'csi', 'csi.sock');
  const sdsCli = join(root, 'emulator', 'bin', 'sds_cli');
  const log = createLogger({ level: 'silent' });

  const emulatorArgs = [
    '--host-id',
    hostId,
    '--control-socket',
    vbsSocket,
    '--kv-socket',
    kvSocket,
    '--log-level',
    'warn',
  ];
  for (const h of options.extraHosts ?? []) emulatorArgs.push('--extra-host', h);
  const pools = options.pools ?? ['pool0:4G'];
  for (const p of pools) emulatorArgs.push('--pool', p);
  const level = options.level ?? 'extended';
  if (level !== 'extended') emulatorArgs.push('--protocol', 'original');
  const levelArgs =
    level === 'extended'
      ? []
      : [
          ...(level === 'original' ? ['--vbs-protocol', 'original'] : []),
          '--vbs-pools',
          pools.map((p) => p.split(':')[0]!).join(','),
        ];
  if (options.token !== undefined) {
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, options.token, { mode: 0o600 });
    emulatorArgs.push('--token-file', tokenFile);
  }
  emulatorArgs.push(...(options.emulatorArgs ?? []));

  let emulator: EmbeddedEmulator | undefined;
  let emulatorOutput = '';
  let driver: ChildProcess | undefined;
  let driverExit: Promise<number | null> | undefined;
  let driverOutput = '';
  let csi: CsiClients | undefined;

  async function startEmulator(): Promise<void> {
    emulator = await EmbeddedEmulator.start({
      dataDir: emulatorDataDir,
      log,
      port: -1,
      extraArgs: emulatorArgs,
      env: cleanEnv(),
      output: 'pipe',
    });
    const collect = (chunk: Buffer) => (emulatorOutput = (emulatorOutput + chunk.toString()).slice(-200_000));
    emulator.streams.stdout?.on('data', collect);
    emulator.streams.stderr?.on('data', collect);
  }

  let frozen: number | undefined;
  function freezeEmulator(): () => void {
    const pid = emulator!.pid;
    process.kill(pid, 'SIGSTOP');
    frozen = pid;
    return () => {
      if (frozen === pid) process.kill(pid, 'SIGCONT');
      frozen = undefined;
    };
  }

  async function stopEmulator(): Promise<void> {
    if (!emulator) return;
    if (frozen !== undefined) process.kill(frozen, 'SIGCONT');
    frozen = undefined;
    const exit = await emulator.stop(15_000);
    emulator = undefined;
    if (exit.code !== 0)
      throw new Error(`the emulator exited with code ${exit.code} signal ${exit.signal}:\n${tail(emulatorOutput)}`);
  }

  async function killEmulator(): Promise<void> {
    if (!emulator) return;
    const dying = emulator;
    emulator = undefined;
    frozen = undefined; // SIGKILL ends a stopped process too
    process.kill(dying.pid, 'SIGKILL');
    await dying.exited;
  }

  async function startDriver(extraArgs: string[] = [], until: 'ready' | 'serving' = 'ready'): Promise<void> {
    const mode = options.mode ?? 'controller';
    const args = [
      driverEntry,
      `--mode=${mode}`,
      '--emulator=false',
      '--vbs-url',
      `unix://${vbsSocket}`,
      '--endpoint',
      `unix://${csiSocket}`,
      '--metrics-address=',
      '--log-level=info',
      '--sds-cli',
      sdsCli,
      '--shutdown-grace-ms=5000',
      ...(mode !== 'controller' ? ['--host-id', hostId] : []),
      ...levelArgs,
      ...(options.driverArgs ?? []),
      ...extraArgs,
    ];
    const env = cleanEnv({
      SDS_KV_SOCKET: kvSocket,
      ...(options.token !== undefined ? { SDS_VBS_TOKEN: options.token } : {}),
      ...options.driverEnv,
    });
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    driver = child;
    const collect = (chunk: Buffer) => (driverOutput = (driverOutput + chunk.toString()).slice(-500_000));
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    driverExit = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    csi = connectCsi(csiSocket);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null)
        throw new Error(`the driver exited with code ${child.exitCode} before it was ready:\n${tail(driverOutput)}`);
      try {
        const probe = await csi.identity.Probe({}, { timeoutMs: 2_000 });
        if (probe.ready?.value || until === 'serving') return;
      } catch {
        // Not listening yet. A fresh channel: grpc-js would otherwise wait out its reconnect back-off (1 s+).
        csi.close();
        csi = connectCsi(csiSocket);
      }
      if (Date.now() > deadline) throw new Error(`the driver was not ready within 30 s:\n${tail(driverOutput)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function stopDriver(): Promise<number | null> {
    csi?.close();
    if (!driver || !driverExit) return null;
    if (driver.exitCode === null && driver.signalCode === null) driver.kill('SIGTERM');
    const timer = setTimeout(() => driver?.kill('SIGKILL'), 20_000);
    const code = await driverExit;
    clearTimeout(timer);
    driver = undefined;
    return code;
  }

  async function killDriver(): Promise<void> {
    csi?.close();
    if (!driver || !driverExit) return;
    if (driver.exitCode === null && driver.signalCode === null) driver.kill('SIGKILL');
    await driverExit;
    driver = undefined;
  }

  async function stop(): Promise<void> {
    const problems: string[] = [];
    try {
      const code = await stopDriver();
      if (code !== 0 && code !== null) problems.push(`the driver exited with code ${code}:\n${tail(driverOutput)}`);
    } catch (err) {
      problems.push(String(err));
    }
    try {
      await stopEmulator();
    } catch (err) {
      problems.push(String(err));
    }
    problems.push(...(await leftovers(dir)));
    await rm(dir, { recursive: true, force: true });
    if (problems.length > 0) throw new Error(`stack shutdown problems:\n${problems.join('\n')}`);
  }

  try {
    await startEmulator();
    if (options.startDriver !== false) await startDriver();
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }

  return {
    dir,
    emulatorDataDir,
    vbsSocket,
    kvSocket,
    csiSocket,
    hostId,
    sdsCli,
    get csi() {
      if (!csi) throw new Error('the driver has not been started');
      return csi;
    },
    driverLog: () => driverOutput,
    emulatorLog: () => emulatorOutput,
    freezeEmulator,
    stopEmulator,
    killEmulator,
    emulatorPid: () => emulator?.pid,
    startEmulator,
    startDriver,
    stopDriver,
    killDriver,
    driverProcess: () => driver,
    driverExited: () => driverExit ?? Promise.resolve(null),
    stop,
  };
}

/**
 * Loop devices and mounts of `dir` (see leaks.ts for what counts as ours): each is reported, so a leaking
 * test fails, and then cleaned up.
 */
export async function leftovers(dir: string): Promise<string[]> {
  const leaks = await settledLeaks(dir, 2_000);
  cleanupLeaks(dir);
  return [
    ...leaks.mounts.map((m) => `mount left behind: ${m}`),
    ...leaks.loops.map((l) => `loop device left behind: ${l}`),
  ];
}

/** The driver's log lines of calls answered INTERNAL or UNKNOWN: each a defect, never a deliberate code. */
export function internalAnswers(stack: Pick<Stack, 'driverLog'>): string[] {
  return stack
    .driverLog()
    .split('\n')
    .filter((l) => /"code":"(INTERNAL|UNKNOWN)"/.test(l));
}

/**
 * A temp dir for a test file's processes, made before its tests; after them, whatever still runs under it
 * is killed and the file fails if anything was left (a process, mount or loop device). Returns `join` in it.
 */
export function useProcessDir(prefix: string): (...parts: string[]) => string {
  let dir = '';
  beforeAll(async () => {
    dir = await realpath(await mkdtemp(join(tmpdir(), prefix)));
  });
  afterAll(async () => {
    for (const pid of processesUnder(dir)) process.kill(pid, 'SIGKILL');
    const problems = await leftovers(dir);
    await rm(dir, { recursive: true, force: true });
    expect(problems).toEqual([]);
  });
  return (...parts) => join(dir, ...parts);
}
