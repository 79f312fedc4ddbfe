// The driver's command line (dist/src/main.js): the argv of an all-mode start under a test's directory, and
// a run to its end for settings, --help, --version and the refusals at start, judged by exit status and output.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DRIVER_MAIN } from './driver-process.js';
import { cleanEnv } from './stack.js';

const runFile = promisify(execFile);

export interface DriverRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the driver with `args` and `env` beside a clean environment (cleanEnv), 20 s at most. */
export async function runDriver(args: string[], env: NodeJS.ProcessEnv = {}): Promise<DriverRun> {
  try {
    const { stdout, stderr } = await runFile(process.execPath, [DRIVER_MAIN, ...args], {
      env: cleanEnv(env),
      timeout: 20_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/**
 * The argv (after node) of the driver in all mode keeping everything under `base`: its data in base/data,
 * its CSI socket at `endpoint` (base/csi.sock unless given), no metrics listener; then `extra`.
 */
export function allModeArgv(base: string, extra: string[] = [], endpoint = join(base, 'csi.sock')): string[] {
  return [
    DRIVER_MAIN,
    '--mode=all',
    `--data-dir=${join(base, 'data')}`,
    `--endpoint=unix://${endpoint}`,
    '--metrics-address=',
    ...extra,
  ];
}
