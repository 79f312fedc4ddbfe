// The driver in all mode (`npm start`) with its embedded emulator, everything under a test's directory,
// started and waited for until its Probe answers ready.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitProbeReady } from './csi-client.js';
import { allModeArgv } from './driver-run.js';
import { spawnLogged } from './logged-process.js';
import { cleanEnv } from './stack.js';

export interface AllModeRun {
  /** the embedded emulator's status file (data/emulator.json) */
  info: { controlSocket: string; kvSocket: string; tcpPort?: number };
  /** the CSI socket */
  csi: string;
  stop(): Promise<void>;
}

/**
 * Starts the driver in all mode under `dir` (log level warn, then `extraArgs`), its CSI socket at `csi`,
 * and returns once it is ready: once the driver has reached its emulator, with the token it handed it.
 */
export async function startAllMode(
  dir: string,
  extraArgs: string[] = [],
  csi = join(dir, 'csi.sock'),
): Promise<AllModeRun> {
  const driver = spawnLogged(allModeArgv(dir, ['--log-level=warn', ...extraArgs], csi), cleanEnv());
  try {
    await waitProbeReady(csi, () => driver.child.exitCode !== null, driver.log);
    const info = JSON.parse(readFileSync(join(dir, 'data', 'emulator.json'), 'utf8')) as AllModeRun['info'];
    return { info, csi, stop: driver.stop };
  } catch (err) {
    await driver.stop();
    throw err;
  }
}
