// Runs external tools with an argv array (never a shell), bounded in time, with their stderr in errors.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** The first `name` in PATH (then the usual sbin/bin directories), or undefined. */
export function findTool(name: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  for (const d of dirs) {
    if (d && existsSync(join(d, name))) return join(d, name);
  }
  return undefined;
}

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
        env: { ...process.env, LC_ALL: 'C' },
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
