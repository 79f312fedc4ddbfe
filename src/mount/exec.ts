// Runs the mount room's tools: execFile with an argv array (never a shell), a timeout that kills, the caller's
// AbortSignal, bounded output, and the C locale so messages parse the same everywhere.
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { toolEnv } from '../config/environment.js';
import { MountError } from './errors.js';

export interface ToolResult {
  stdout: string;
  stderr: string;
  /** exit status; 0 on success */
  exitCode: number;
}

export interface RunOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** exit codes that are answers rather than failures (blkid's 2 = "nothing found") */
  okExitCodes?: readonly number[];
  /** how the command is shown in errors, when its arguments must not be (mount options may hold secrets) */
  shownAs?: string;
  /** the tool's stdout is not wanted (mount, umount): it is not piped at all */
  discardStdout?: boolean;
}

const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;

/** What a tool said, for error messages: its lines without version banners ("resize2fs 1.47.0 (5-Feb-2023)"). */
export function toolSaid(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^[\w.-]+ \d+\.\d+(\.\d+)? \(\d/.test(l));
  const said = lines.join(' / ');
  return said.length > 400 ? `${said.slice(0, 400)}…` : said;
}

export function describe(tool: string, args: readonly string[]): string {
  return [tool, ...args].join(' ');
}

/** The tools' environment: the same for every call of this process (the driver never changes its own). */
let env: NodeJS.ProcessEnv | undefined;

/**
 * Runs `tool` with `args`. Resolves with its output when it exits 0 (or with one of `okExitCodes`); otherwise
 * rejects: MountError Timeout when killed for time or cancelled, NotFound when the tool is not installed,
 * Failed with the tool's own first line of stderr otherwise. Callers that know better re-map Failed.
 * stdin is /dev/null (no tool here reads it: one that asked would get end-of-file, never hang); stdout is
 * not even piped when `discardStdout` (a pipe less to make and drain on the path a pod waits for).
 */
export function runTool(tool: string, args: readonly string[], options: RunOptions): Promise<ToolResult> {
  const how = options.shownAs ?? describe(tool, args);
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new MountError('Timeout', `${how}: cancelled before it ran`, { cause: options.signal.reason }));
      return;
    }
    const child = spawn(tool, [...args], {
      env: (env ??= toolEnv()),
      stdio: ['ignore', options.discardStdout ? 'ignore' : 'pipe', 'pipe'],
      timeout: options.timeoutMs,
      killSignal: 'SIGKILL',
      signal: options.signal,
    });
    const out = collect(child.stdout);
    const err = collect(child.stderr);
    let failed: Error | undefined;
    const kill = () => child.kill('SIGKILL');
    out.onOverflow = kill;
    err.onOverflow = kill;
    child.once('error', (e) => {
      failed ??= e;
      // A spawn that failed emits no 'close' when nothing was piped; one that did still closes its pipes.
      if (child.pid === undefined && !child.stdout && !child.stderr) finish(null, null);
    });
    child.once('close', (code: number | null, signal: NodeJS.Signals | null) => finish(code, signal));
    let done = false;
    function finish(code: number | null, signal: NodeJS.Signals | null): void {
      if (done) return;
      done = true;
      const stdout = out.text();
      const stderr = err.text();
      const e = failed as (NodeJS.ErrnoException & { name?: string }) | undefined;
      if (e?.name === 'AbortError' || options.signal?.aborted) {
        reject(new MountError('Timeout', `${how}: cancelled`, { cause: e ?? options.signal?.reason }));
      } else if (e?.code === 'ENOENT') {
        reject(new MountError('NotFound', `${tool} is not installed (or not on PATH)`, { cause: e }));
      } else if (signal === 'SIGKILL' && !out.overflowed && !err.overflowed) {
        reject(new MountError('Timeout', `${how}: no result within ${options.timeoutMs} ms; killed`, { cause: e }));
      } else if (code === 0 && !e && !out.overflowed && !err.overflowed) {
        resolve({ stdout, stderr, exitCode: 0 });
      } else if (code !== null && code !== 0 && !e && options.okExitCodes?.includes(code)) {
        resolve({ stdout, stderr, exitCode: code });
      } else {
        const said =
          out.overflowed || err.overflowed
            ? 'output too large; killed'
            : toolSaid(stderr) || toolSaid(stdout) || `exit status ${String(code ?? signal ?? e?.code)}`;
        reject(new ToolFailure(how, e || code === null ? -1 : code, stdout, stderr, said));
      }
    }
  });
}

/** A child's output stream read into memory, up to MAX_OUTPUT_BYTES. */
function collect(stream: Readable | null): {
  text: () => string;
  overflowed: boolean;
  onOverflow?: () => void;
} {
  const chunks: Buffer[] = [];
  let bytes = 0;
  const sink = {
    text: () => Buffer.concat(chunks).toString('utf8'),
    overflowed: false,
    onOverflow: undefined as (() => void) | undefined,
  };
  stream?.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes <= MAX_OUTPUT_BYTES) chunks.push(chunk);
    else if (!sink.overflowed) {
      sink.overflowed = true;
      sink.onOverflow?.();
    }
  });
  return sink;
}

/** A tool ran and failed; carries what it said so the caller can classify it. */
export class ToolFailure extends MountError {
  constructor(
    readonly command: string,
    readonly exitCode: number,
    readonly stdout: string,
    readonly stderr: string,
    said: string,
  ) {
    super('Failed', `${command} failed: ${said}`);
  }
}
