#!/usr/bin/env node
// `npm run demo`: the life of a PVC (src/demo/steps.ts), driven over the CSI socket the way Kubernetes drives
// it. One progress line per step with its duration. It uses the driver at CSI_ENDPOINT (`npm start`); when
// nothing answers there it starts one itself (src/demo/driver.ts) and stops it at the end. Whatever it created
// is removed even when a step fails, when it is interrupted (SIGINT, SIGTERM, SIGHUP) and when its output goes
// away (`npm run demo | head`).
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoSettings } from '../config/demo.js';
import { parseUnixEndpoint } from '../server/server.js';
import type { CsiClients } from '../util/csi-client.js';
import { cleanUp, removeWorkDir } from './cleanup.js';
import { connect, probeState, startDriver, stopDriver, type OwnDriver, type ProbeState } from './driver.js';
import { driverLogText, out, stopOnSignals, stopRequested } from './output.js';
import { pvcLife, type Step } from './steps.js';

const DEFAULT_ENDPOINT = 'unix:///tmp/sdshypervisor-csi/csi.sock';

/** Waits, up to the demo's setting, for a driver that answers "not ready" to become ready. */
async function waitWhileNotReady(csi: CsiClients, endpoint: string): Promise<ProbeState> {
  const waitMs = demoSettings().notReadyWaitMs;
  out(`a driver answers at ${endpoint} but is not ready; waiting up to ${waitMs / 1000} s\n`);
  const deadline = Date.now() + waitMs;
  let state: ProbeState = 'not-ready';
  while (state === 'not-ready' && Date.now() < deadline && !stopRequested()) {
    await new Promise((r) => setTimeout(r, 500));
    state = await probeState(csi);
  }
  return state;
}

/** Runs the steps in order, one line each, until one fails or a stop is asked for; whether all ran. */
async function runSteps(steps: Step[]): Promise<boolean> {
  const width = Math.max(...steps.map((s) => s.title.length));
  for (const [i, step] of steps.entries()) {
    const stop = stopRequested();
    if (stop) {
      out(`interrupted (${stop}) before step ${i + 1}/${steps.length}\n`);
      return false;
    }
    const t0 = process.hrtime.bigint();
    const label = `${String(i + 1).padStart(2)}/${steps.length}  ${step.title.padEnd(width)}`;
    let detail: string;
    let done = true;
    try {
      detail = await step.run();
    } catch (err) {
      detail = `FAILED: ${(err as Error).message}`;
      done = false;
    }
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    out(`${label}  ${ms.toFixed(0).padStart(5)} ms  ${detail}\n`);
    if (!done) return false;
  }
  return true;
}

async function main(): Promise<number> {
  const fsType = demoSettings().fsType;
  const work = await mkdtemp(join(tmpdir(), 'sds-demo-'));
  const endpoint = demoSettings().endpoint ?? DEFAULT_ENDPOINT;
  let socket = parseUnixEndpoint(endpoint);
  let own: OwnDriver | undefined;
  let csi = connect(socket);
  const started = Date.now();

  let state = await probeState(csi);
  if (state === 'not-ready') {
    state = await waitWhileNotReady(csi, endpoint);
    if (state !== 'ready') {
      csi.close();
      await removeWorkDir(work);
      out(
        `the driver at ${endpoint} is ${state === 'nothing' ? 'gone' : 'still not ready'}; not starting a second one (see its log, or stop it)\n`,
      );
      return 1;
    }
  }
  if (state === 'nothing') {
    csi.close();
    out(`nothing answers at ${endpoint}; starting the driver (--mode=all, embedded emulator) in ${work}\n`);
    try {
      own = await startDriver(work);
    } catch (err) {
      await removeWorkDir(work);
      throw err;
    }
    socket = own.socket;
    csi = connect(socket);
  }
  out(`CSI endpoint unix://${socket}; working directory ${work}; filesystem ${fsType}\n\n`);

  const life = pvcLife(csi, work, fsType);
  let failed = false;
  try {
    failed = !(await runSteps(life.steps));
  } finally {
    if (failed && own && (own.child.exitCode !== null || (await probeState(csi)) === 'nothing')) {
      // Our driver was stopped under us (SIGTERM to it): start it again on the same data to undo the mounts.
      csi.close();
      await stopDriver(own.child);
      const gone = own.log().trim();
      out('the driver the demo started has exited; starting it again to clean up\n');
      if (gone) out(`its log (tail):\n${driverLogText(gone.split('\n').slice(-30).join('\n'))}`);
      try {
        own = await startDriver(work);
        csi = connect(own.socket);
      } catch (err) {
        out(`cannot start it again: ${(err as Error).message}\n`);
      }
    }
    if (failed) await cleanUp(csi, life.live, life.nodeId());
    csi.close();
    if (own) {
      const t0 = Date.now();
      await stopDriver(own.child);
      out(`\nstopped the driver it started (${Date.now() - t0} ms)\n`);
      const tail = own.log().trim();
      // A step that failed, not a stop the user asked for: what the driver said last.
      if (failed && !stopRequested() && tail)
        out(`driver log (tail):\n${driverLogText(tail.split('\n').slice(-30).join('\n'))}`);
    }
    await removeWorkDir(work);
  }
  const stop = stopRequested();
  out(
    `\n${stop ? `demo interrupted (${stop})` : failed ? 'demo FAILED' : 'demo done'} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
  );
  return failed ? 1 : 0;
}

stopOnSignals();
main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`demo: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
