// Runs external tools with an argv array (never a shell), bounded in time, with their stderr in errors.
import { execFile } from 'node:child_process';
import { findTool, toolEnv } from './config.js';

// Found through the configured environment (emulator/config.ts, the one reader of process.env).
export { findTool };

export class ToolError extends Error {
  override name = 'ToolError';
  constructor(
    readonly command: string,
    readonly exitCode: number | string | null,
    readonly stderr: string,
  ) {
    super(
      `${command} failed (${exitCode ?? 'signal'}): ${stderr.trim().split('\n').slice(-3).join(' ').slice(0, 400) || 'no message'}`,
    );
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: readonly string[], options: { timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      cmd,
      args as string[],
      {
        timeout: options.timeoutMs ?? 120_000,
        maxBuffer: 16 * 1024 * 1024,
        encoding: 'utf8',
        env: toolEnv(),
      },
      (err, stdout, stderr) => {
        if (err) {
          const code = (err as NodeJS.ErrnoException & { code?: number | string }).code ?? null;
          reject(new ToolError([cmd, ...args].join(' '), code, stderr || err.message));
          return;
        }
        resolvePromise({ stdout, stderr });
      },
    );
  });
}
