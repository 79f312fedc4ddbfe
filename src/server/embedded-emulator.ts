// The embedded SDSHypervisor emulator of `--mode=all`: a child process (dist/emulator/main.js), never
// imported. We start it, wait until it writes <dataDir>/emulator.json naming its own pid, hand its sockets to
// the driver, and stop it with SIGTERM once the CSI server has drained. Its stdin is a pipe from us: when we
// die without stopping it (SIGKILL), the pipe's end tells it to stop on its own, so it never lives on
// re-parented with its pool mounted.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { childEnv } from '../config/environment.js';
import { prettyLine, stderrIsTerminal, type Logger } from '../log/logger.js';
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
  /** where the child's stdout/stderr go; default inherited (stderr through us: we keep its last error) */
  output?: 'inherit' | 'pipe';
  /** aborting it during the start stops the child, waits for it and rejects with EmulatorStartInterrupted */
  signal?: AbortSignal;
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

/** The start was aborted (a stop signal); the child has been stopped and has exited. */
export class EmulatorStartInterrupted extends Error {
  override name = 'EmulatorStartInterrupted';
}

/** Tells the emulator to stop when its stdin reaches its end (emulator/main.ts). */
export const STOP_WITH_PARENT_ENV = 'SDS_EMULATOR_STOP_ON_STDIN_EOF';

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
    if (!existsSync(entry))
      throw new EmbeddedEmulatorError(`the emulator is not built: ${entry} is missing (run npm run build)`);
    // Not removed first: it may be another emulator's, which holds the data directory; a status naming our
    // child's pid is the only one that counts.
    const statusFile = join(options.dataDir, 'emulator.json');
    if (options.signal?.aborted)
      throw new EmulatorStartInterrupted('the start was interrupted before the emulator was started');
    const args = [
      entry,
      '--data-dir',
      options.dataDir,
      '--listen-port',
      String(options.port ?? 0),
      ...(options.extraArgs ?? []),
    ];
    const output = options.output ?? 'inherit';
    // Its own process group: a Ctrl-C in the terminal signals the whole foreground group, and the emulator
    // must not start shutting down while the driver still drains RPCs that use it (its second signal, our
    // SIGTERM after the drain, would then make it exit at once, leaving its pool mounted). The driver alone
    // stops it; if the driver exits any other way, the exit hook below still does.
    const child = spawn(process.execPath, args, {
      stdio: ['pipe', output, 'pipe'],
      env: { ...(options.env ?? childEnv()), [STOP_WITH_PARENT_ENV]: '1' },
      detached: true,
    });
    // Our end of its stdin must not keep this process alive, nor fail loudly once the child is gone.
    child.stdin!.on('error', () => undefined);
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    const lastError = output === 'inherit' ? forwardStderr(child) : { message: undefined };
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
      info = await waitForStatusFile(
        statusFile,
        child,
        exited,
        options.dataDir,
        options.readyTimeoutMs ?? 30_000,
        options.signal,
        lastError,
      );
    } catch (err) {
      terminated.add(child);
      child.kill('SIGTERM');
      await Promise.race([exited, delay(15_000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      throw err;
    }
    options.log.info(
      { emulatorPid: info.pid, controlSocket: info.controlSocket, kvSocket: info.kvSocket, tcpPort: info.tcpPort },
      'embedded emulator ready',
    );
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

/** Copies the child's stderr to ours, line by line, and keeps the message of its last error line. */
function forwardStderr(child: ChildProcess): { message: string | undefined } {
  const last: { message: string | undefined } = { message: undefined };
  let partial = '';
  // At a terminal its JSON lines are shown in the same readable form as ours.
  const readable = stderrIsTerminal();
  child.stderr!.on('data', (chunk: Buffer) => {
    if (!readable) process.stderr.write(chunk);
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop()!.slice(-65_536);
    for (const line of lines) {
      if (readable) process.stderr.write(prettyLine(line));
      try {
        const entry = JSON.parse(line) as { level?: unknown; msg?: unknown };
        if (typeof entry.level === 'number' && entry.level >= 50 && typeof entry.msg === 'string')
          last.message = entry.msg;
      } catch {
        if (line.trim()) last.message = line.trim(); // a plain line, such as a configuration error
      }
    }
  });
  return last;
}

async function waitForStatusFile(
  path: string,
  child: ChildProcess,
  exited: Promise<EmulatorExit>,
  dataDir: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  lastError: { message: string | undefined },
): Promise<EmulatorInfo> {
  const deadline = Date.now() + timeoutMs;
  let exit: EmulatorExit | undefined;
  void exited.then((e) => (exit = e));
  const aborted = new Promise<void>((resolve) => signal?.addEventListener('abort', () => resolve(), { once: true }));
  for (let wait = 10; ; wait = Math.min(wait * 2, 200)) {
    if (exit) {
      // Let the last lines of its stderr arrive: they say why.
      const stderrClosed = new Promise((resolve) =>
        child.stderr && !child.stderr.destroyed ? child.stderr.once('close', resolve) : resolve(undefined),
      );
      await Promise.race([stderrClosed, delay(1_000)]);
      const cause = lastError.message ?? `exit code ${exit.code}, signal ${exit.signal}`;
      throw new EmbeddedEmulatorError(
        `the embedded emulator could not start with the data directory ${dataDir}: ${cause}`,
      );
    }
    if (signal?.aborted) throw new EmulatorStartInterrupted(`the start was interrupted by ${String(signal.reason)}`);
    const info = await readStatus(path, dataDir);
    if (info && info.pid === child.pid) return info;
    if (Date.now() > deadline)
      throw new EmbeddedEmulatorError(
        `the embedded emulator did not write ${path} within ${timeoutMs} ms (data directory ${dataDir})`,
      );
    // A referenced timer: once the child has exited nothing else may keep the process alive to see it.
    await Promise.race([new Promise((resolve) => setTimeout(resolve, wait)), aborted]);
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
