// Test-only helpers for the emulator tests: spawn the built daemon in a mkdtemp data dir, talk the raw
// protocol over its sockets, run the real sds_cli, and check that nothing (loop device, mount) is left
// behind under the test's own temp dir. Not a client library: the driver's client lives in src/sds.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseRecord, type Fields, type FieldInput } from '../../src/protocol/vbs.js';
import { rawVbsCall } from '../../src/sds/raw.js';
import { cleanupLeaks, findLeaks, type Leaks } from './leaks.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const EMULATOR_MAIN = join(root, 'dist', 'emulator', 'main.js');
export const SDS_CLI = join(root, 'emulator', 'bin', 'sds_cli');
export const MiB = 1024 * 1024;

export interface EmulatorInfo {
  pid: number;
  tcpPort: number;
  controlSocket: string;
  kvSocket: string;
  hostId: string;
}

export interface Daemon {
  /** the test's temp dir (the data dir is `<dir>/data` unless given) */
  dir: string;
  dataDir: string;
  info: EmulatorInfo;
  proc: ChildProcess;
  stderr(): string;
  /** SIGTERM and wait for the exit code */
  stop(): Promise<number | null>;
  /** SIGKILL and wait */
  kill9(): Promise<void>;
}

export function makeTempDir(prefix = 'emu-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface DaemonOptions {
  dir?: string;
  dataDir?: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** the protocol level the daemon serves (`--protocol`); the daemon's default (extended) when absent */
  protocol?: 'original' | 'extended';
}

export async function startDaemon(options: DaemonOptions = {}): Promise<Daemon> {
  const dir = options.dir ?? makeTempDir();
  const dataDir = options.dataDir ?? join(dir, 'data');
  const infoPath = join(dataDir, 'emulator.json');
  rmSync(infoPath, { force: true });
  const level = options.protocol ? ['--protocol', options.protocol] : [];
  const proc = spawn(
    process.execPath,
    [
      EMULATOR_MAIN,
      '--data-dir',
      dataDir,
      '--listen-port',
      '0',
      '--log-level',
      'debug',
      ...level,
      ...(options.args ?? []),
    ],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, ...options.env },
    },
  );
  let log = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
    log += d;
    if (log.length > 4_000_000) log = log.slice(-2_000_000);
  });
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  const deadline = Date.now() + 30_000;
  let info: EmulatorInfo | undefined;
  let exitCode: number | null | undefined;
  void exited.then((c) => {
    exitCode = c;
  });
  const fail = (message: string): never => {
    // A dir this helper made is its to clean up.
    if (options.dir === undefined) forceCleanup(dir);
    throw new Error(`${message}:\n${log.slice(-3000)}`);
  };
  while (!info) {
    if (exitCode !== undefined) fail(`emulator exited (${exitCode}) before ready`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await exited;
      fail('emulator not ready in 30 s');
    }
    if (existsSync(infoPath)) {
      const parsed = JSON.parse(readFileSync(infoPath, 'utf8')) as EmulatorInfo;
      if (parsed.pid === proc.pid) info = parsed;
    }
    if (!info) await sleep(10);
  }
  return {
    dir,
    dataDir,
    info,
    proc,
    stderr: () => log,
    async stop() {
      if (exitCode !== undefined) return exitCode;
      proc.kill('SIGTERM');
      return exited;
    },
    async kill9() {
      if (exitCode !== undefined) return;
      proc.kill('SIGKILL');
      await exited;
    },
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the daemon's log matches `pattern`. The daemon writes its info file before it logs
 * "ready", and stderr reaches the test through a pipe, so a line can lag the event it reports.
 */
export async function waitForLog(d: Pick<Daemon, 'stderr'>, pattern: RegExp, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const match = pattern.exec(d.stderr());
    if (match) return match[0];
    if (Date.now() > deadline)
      throw new Error(`no log line matched ${pattern} in ${timeoutMs} ms:\n${d.stderr().slice(-3000)}`);
    await sleep(20);
  }
}

export type Target = string | { port: number };

function connect(target: Target): net.Socket {
  return typeof target === 'string' ? net.connect(target) : net.connect(target.port, '127.0.0.1');
}

export interface Exchange {
  data: Buffer;
  /** the server ended the connection (we saw EOF) */
  closedByServer: boolean;
}

/**
 * Sends raw bytes (one write per chunk, `gapMs` apart), optionally half-closes, and reads until the server
 * closes or `timeoutMs` passes.
 */
export function exchange(
  target: Target,
  chunks: Buffer | Buffer[],
  options: { halfClose?: boolean; gapMs?: number; timeoutMs?: number } = {},
): Promise<Exchange> {
  const list = Array.isArray(chunks) ? chunks : [chunks];
  return new Promise((resolvePromise, reject) => {
    const socket = connect(target);
    const received: Buffer[] = [];
    let settled = false;
    const finish = (closedByServer: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolvePromise({ data: Buffer.concat(received), closedByServer });
    };
    const timer = setTimeout(() => finish(false), options.timeoutMs ?? 20_000);
    const writeAll = async (): Promise<void> => {
      for (let i = 0; i < list.length; i++) {
        if (i > 0 && options.gapMs) await sleep(options.gapMs);
        if (!socket.destroyed) socket.write(list[i]!);
      }
      if (options.halfClose) socket.end();
    };
    // writeAll only awaits sleeps; a socket failure arrives as its 'error' event below.
    socket.on('connect', () => void writeAll());
    socket.on('data', (d: Buffer) => received.push(d));
    socket.on('end', () => finish(true));
    socket.on('close', () => finish(true));
    socket.on('error', (err) => {
      if (received.length > 0) finish(true);
      else if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(err);
      }
    });
  });
}

export interface Answer {
  retcode: number;
  fields: Fields;
  text: string;
  get(key: string): string | undefined;
  record(key: string): Record<string, string>;
}

/** One request through the shared raw client (src/sds/raw.ts); the reply parsed, its text kept. */
export async function call(target: Target, type: string, fields: Record<string, FieldInput> = {}): Promise<Answer> {
  const reply = await rawVbsCall(target, type, fields, { timeoutMs: 120_000 });
  const data = reply.raw;
  return {
    retcode: reply.retcode,
    fields: reply.fields,
    text: data.toString('utf8'),
    get: (key) => reply.fields.get(key),
    record: (key) => {
      const v = reply.fields.get(key);
      if (v === undefined) throw new Error(`no ${key} in reply:\n${data.toString('utf8')}`);
      return parseRecord(v);
    },
  };
}

/** Polls an image job until it is no longer running. */
export async function waitJob(target: Target, jobId: string, timeoutMs = 60_000): Promise<Record<string, string>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const a = await call(target, 'QUERY_IMAGE_JOB_REQ', { job_id: jobId });
    if (a.retcode !== 0) throw new Error(`job query failed: ${a.text}`);
    const job = a.record('job0');
    if (job.status !== 'running') return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} still running`);
    await sleep(20);
  }
}

/** Polls until a query answers NOT_EXIST (an asynchronous delete finished). */
export async function waitGone(
  target: Target,
  type: 'QUERY_VOLUME_REQ' | 'QUERY_SNAPSHOT_REQ',
  fields: Record<string, string>,
): Promise<void> {
  const deadline = Date.now() + 20_000;
  while ((await call(target, type, fields)).retcode !== -900079) {
    if (Date.now() > deadline) throw new Error(`${JSON.stringify(fields)} not gone`);
    await sleep(5);
  }
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
  values: Map<string, string>;
}

export function sdsCli(kvSocket: string | undefined, args: string[]): CliResult {
  const env = { ...process.env };
  if (kvSocket === undefined) delete env.SDS_KV_SOCKET;
  else env.SDS_KV_SOCKET = kvSocket;
  const r = spawnSync(SDS_CLI, args, { env, encoding: 'utf8', timeout: 60_000 });
  const values = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) values.set(line.slice(0, eq), line.slice(eq + 1).replace(/^"(.*)"$/, '$1'));
  }
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, values };
}

/** Loop devices and mounts of `dir` (only ours: other tests run on this machine). */
export function leftovers(dir: string): Leaks {
  return findLeaks(dir);
}

/** Last-resort cleanup after a failed test: unmount and detach what is left of `dir`, then remove it. */
export function forceCleanup(dir: string): void {
  cleanupLeaks(dir);
  rmSync(dir, { recursive: true, force: true });
}

/** Stops a daemon, asserts-by-return that nothing is left under its dir, and removes the dir. */
export async function stopAndCheck(
  daemon: Daemon,
): Promise<{ code: number | null; loops: string[]; mounts: string[] }> {
  const code = await daemon.stop();
  const left = leftovers(daemon.dir);
  forceCleanup(daemon.dir);
  return { code, ...left };
}

export function volumePath(daemon: Daemon, name: string, pool = 'pool0'): string {
  return join(daemon.dataDir, 'pools', pool, 'volumes', name);
}

export function snapshotPath(daemon: Daemon, name: string, pool = 'pool0'): string {
  return join(daemon.dataDir, 'pools', pool, 'snapshots', name);
}

/** Extent flags of a file from `xfs_io -c 'fiemap -v'`: true when any data extent is shared (0x2000). */
export function extents(path: string): { data: number; shared: number } {
  const out = spawnSync('xfs_io', ['-r', '-c', 'fiemap -v', path], { encoding: 'utf8' }).stdout;
  let data = 0;
  let shared = 0;
  for (const line of out.split('\n')) {
    const m = /^\s*\d+:\s+\[\d+\.\.\d+\]:\s+(\S+)\s+\d+\s+(0x[0-9a-f]+)/.exec(line);
    if (!m || m[1] === 'hole') continue;
    data++;
    if (Number.parseInt(m[2]!, 16) & 0x2000) shared++;
  }
  return { data, shared };
}
