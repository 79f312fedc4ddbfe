// The embedded SDSHypervisor emulator of `--mode=all`: a child process (dist/emulator/main.js), never
// imported. We start it, wait until it writes <dataDir>/emulator.json naming its own pid, hand its sockets to
// the driver, and stop it with SIGTERM once the CSI server has drained.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log/logger.js';
import { projectRoot } from '../util/paths.js';

export interface EmbeddedEmulatorOptions {
  dataDir: string;
  log: Logger;
  /** TCP port for the socket API; 0 picks a free one */
  port?: number;
  /** the emulator's entry script; default <projectRoot>/dist/emulator/main.js */
  entry?: string;
  readyTimeoutMs?: number;
  /** the child's whole environment; default this process's */
  env?: NodeJS.ProcessEnv;
  /** more emulator arguments (tests: --host-id, --extra-host, --pool, --token-file) */
  extraArgs?: string[];
  /** where the child's stdout/stderr go; default inherited */
  output?: 'inherit' | 'pipe';
}

/** What the emulator says about itself in emulator.json (fields we do not know are ignored). */
export interface EmulatorInfo {
  pid: number;
  controlSocket: string;
  kvSocket: string;
  hostId?: string;
  tcpPort?: number;
}

export interface EmulatorExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class EmbeddedEmulatorError extends Error {
  override name = 'EmbeddedEmulatorError';
}

/** The file in the data dir holding the token of the embedded emulator (0600, rewritten at every start). */
export const EMBEDDED_TOKEN_FILE = 'vbs.token';

/**
 * A random token for this run of the embedded emulator, also written to <dataDir>/vbs.token (0600, root's
 * like the socket itself) so that `sdshypervisor-csi export` on this host can talk to it.
 */
export function makeEmbeddedToken(dataDir: string): string {
  const token = randomBytes(32).toString('base64url');
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const tmp = join(dataDir, `.${EMBEDDED_TOKEN_FILE}.${process.pid}.${randomBytes(4).toString('hex')}`);
  writeFileSync(tmp, `${token}\n`, { mode: 0o600, flag: 'wx' });
  renameSync(tmp, join(dataDir, EMBEDDED_TOKEN_FILE));
  return token;
}

export function defaultSdsCliPath(): string {
  return join(projectRoot(), 'emulator', 'bin', 'sds_cli');
}

export class EmbeddedEmulator {
  private constructor(
    private readonly child: ChildProcess,
    readonly info: EmulatorInfo,
    /** resolves when the child has exited, however */
    readonly exited: Promise<EmulatorExit>,
    private readonly log: Logger,
  ) {}

  static async start(options: EmbeddedEmulatorOptions): Promise<EmbeddedEmulator> {
    const entry = options.entry ?? join(projectRoot(), 'dist', 'emulator', 'main.js');
    if (!existsSync(entry)) throw new EmbeddedEmulatorError(`the emulator is not built: ${entry} is missing (run npm run build)`);
    const statusFile = join(options.dataDir, 'emulator.json');
    await rm(statusFile, { force: true });
    const args = [entry, '--data-dir', options.dataDir, '--listen-port', String(options.port ?? 0), ...(options.extraArgs ?? [])];
    const output = options.output ?? 'inherit';
    // Its own process group: a Ctrl-C in the terminal signals the whole foreground group, and the emulator
    // must not start shutting down while the driver still drains RPCs that use it (its second signal, our
    // SIGTERM after the drain, would then make it exit at once, leaving its pool mounted). The driver alone
    // stops it; if the driver exits any other way, the exit hook below still does.
    const child = spawn(process.execPath, args, { stdio: ['ignore', output, output], env: options.env ?? process.env, detached: true });
    const stopWithUs = () => {
      if (child.exitCode === null && child.signalCode === null && !terminated.has(child)) child.kill('SIGTERM');
    };
    process.once('exit', stopWithUs);
    const exited = new Promise<EmulatorExit>((resolve) => {
      child.once('exit', (code, signal) => {
        process.removeListener('exit', stopWithUs);
        resolve({ code, signal });
      });
      child.once('error', () => {
        process.removeListener('exit', stopWithUs);
        resolve({ code: null, signal: null });
      });
    });
    options.log.info({ emulatorPid: child.pid, dataDir: options.dataDir }, 'starting the embedded emulator');
    let info: EmulatorInfo;
    try {
      info = await waitForStatusFile(statusFile, child, exited, options.dataDir, options.readyTimeoutMs ?? 30_000);
    } catch (err) {
      terminated.add(child);
      child.kill('SIGTERM');
      await Promise.race([exited, delay(15_000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      throw err;
    }
    options.log.info({ emulatorPid: info.pid, controlSocket: info.controlSocket, kvSocket: info.kvSocket, tcpPort: info.tcpPort }, 'embedded emulator ready');
    return new EmbeddedEmulator(child, info, exited, options.log);
  }

  /** The child's stdout and stderr when started with `output: 'pipe'`. */
  get streams(): { stdout: NodeJS.ReadableStream | null; stderr: NodeJS.ReadableStream | null } {
    return { stdout: this.child.stdout, stderr: this.child.stderr };
  }

  get pid(): number {
    return this.info.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Asks the emulator to stop: one SIGTERM only, since the emulator takes a second signal as "exit now". */
  private terminate(): void {
    if (this.running && !terminated.has(this.child)) {
      terminated.add(this.child);
      this.child.kill('SIGTERM');
    }
  }

  /** SIGTERM, then waits up to `timeoutMs` before SIGKILL. */
  async stop(timeoutMs = 15_000): Promise<EmulatorExit> {
    this.terminate();
    const result = await Promise.race([this.exited, delay(timeoutMs).then(() => undefined)]);
    if (result) {
      this.log.info(result, 'embedded emulator stopped');
      return result;
    }
    this.log.error({ timeoutMs }, 'the embedded emulator did not stop in time; killing it');
    this.child.kill('SIGKILL');
    return this.exited;
  }

  /** For a second signal: no waiting (the emulator still shuts down cleanly on its own). */
  kill(): void {
    this.terminate();
  }
}

/** Children that have been sent their SIGTERM. */
const terminated = new WeakSet<ChildProcess>();

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

async function waitForStatusFile(
  path: string,
  child: ChildProcess,
  exited: Promise<EmulatorExit>,
  dataDir: string,
  timeoutMs: number,
): Promise<EmulatorInfo> {
  const deadline = Date.now() + timeoutMs;
  let exit: EmulatorExit | undefined;
  void exited.then((e) => (exit = e));
  for (let wait = 10; ; wait = Math.min(wait * 2, 200)) {
    if (exit) throw new EmbeddedEmulatorError(`the embedded emulator exited before it was ready (code ${exit.code}, signal ${exit.signal})`);
    const info = await readStatus(path, dataDir);
    if (info && info.pid === child.pid) return info;
    if (Date.now() > deadline) throw new EmbeddedEmulatorError(`the embedded emulator did not write ${path} within ${timeoutMs} ms`);
    await delay(wait);
  }
}

async function readStatus(path: string, dataDir: string): Promise<EmulatorInfo | undefined> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return undefined; // not written yet, or half-written
  }
  if (!raw || typeof raw !== 'object') return undefined;
  const r = raw as Record<string, unknown>;
  if (typeof r.pid !== 'number') return undefined;
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v : undefined);
  return {
    pid: r.pid,
    controlSocket: str(r.controlSocket) ?? join(dataDir, 'vbs.sock'),
    kvSocket: str(r.kvSocket) ?? join(dataDir, 'kv.sock'),
    ...(str(r.hostId) ? { hostId: str(r.hostId)! } : {}),
    ...(typeof r.tcpPort === 'number' ? { tcpPort: r.tcpPort } : {}),
  };
}
