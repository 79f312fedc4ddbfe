// Runs the mount room's tools: execFile with an argv array (never a shell), a timeout that kills, the caller's
// AbortSignal, bounded output, and the C locale so messages parse the same everywhere.
import { execFile } from 'node:child_process';
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

/**
 * Runs `tool` with `args`. Resolves with its output when it exits 0 (or with one of `okExitCodes`); otherwise
 * rejects: MountError Timeout when killed for time or cancelled, NotFound when the tool is not installed,
 * Failed with the tool's own first line of stderr otherwise. Callers that know better re-map Failed.
 */
export function runTool(tool: string, args: readonly string[], options: RunOptions): Promise<ToolResult> {
  const how = options.shownAs ?? describe(tool, args);
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new MountError('Timeout', `${how}: cancelled before it ran`, { cause: options.signal.reason }));
      return;
    }
    execFile(
      tool,
      [...args],
      {
        env: toolEnv(),
        timeout: options.timeoutMs,
        killSignal: 'SIGKILL',
        maxBuffer: MAX_OUTPUT_BYTES,
        signal: options.signal,
        encoding: 'utf8',
      },
      (error, stdout, stderr) => {
        if (!error) {
          resolve({ stdout, stderr, exitCode: 0 });
          return;
        }
        const e = error as NodeJS.ErrnoException & { code?: string | number; killed?: boolean; signal?: string };
        if (e.name === 'AbortError' || options.signal?.aborted) {
          reject(new MountError('Timeout', `${how}: cancelled`, { cause: error }));
        } else if (e.code === 'ENOENT') {
          reject(new MountError('NotFound', `${tool} is not installed (or not on PATH)`, { cause: error }));
        } else if (e.killed || e.signal === 'SIGKILL') {
          reject(
            new MountError('Timeout', `${how}: no result within ${options.timeoutMs} ms; killed`, { cause: error }),
          );
        } else if (typeof e.code === 'number' && options.okExitCodes?.includes(e.code)) {
          resolve({ stdout, stderr, exitCode: e.code });
        } else {
          const said = toolSaid(stderr) || toolSaid(stdout) || `exit status ${String(e.code ?? e.signal)}`;
          reject(new ToolFailure(how, typeof e.code === 'number' ? e.code : -1, stdout, stderr, said));
        }
      },
    );
  });
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
