// The driver the demo talks to: a probe of the one at CSI_ENDPOINT, or one of its own (--mode=all, embedded
// emulator, temp data dir) started and stopped here.
import * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { connectCsi, CsiCallError, type CsiClients } from '../util/csi-client.js';
import { projectRoot } from '../util/paths.js';
import { driverLogText } from './output.js';

/** Identity calls answer at once or not at all; the rest may format or clone, so they get longer. */
export const IDENTITY_CALL = { timeoutMs: 5_000 };

export function connect(socket: string): CsiClients {
  return connectCsi(socket, { timeoutMs: 120_000 });
}

export type ProbeState = 'ready' | 'not-ready' | 'nothing';

/** 'ready', 'not-ready' (a driver answered: not ready yet) or 'nothing' (no answer at all). */
export async function probeState(csi: CsiClients): Promise<ProbeState> {
  try {
    const probe = await csi.identity.Probe({}, IDENTITY_CALL);
    return probe.ready?.value !== false ? 'ready' : 'not-ready';
  } catch (err) {
    // FAILED_PRECONDITION / UNAVAILABLE from a driver that serves but cannot reach its back end: it answered.
    const code = err instanceof CsiCallError ? err.code : undefined;
    return code === grpc.status.FAILED_PRECONDITION ? 'not-ready' : 'nothing';
  }
}

export interface OwnDriver {
  socket: string;
  child: ChildProcess;
  log: () => string;
}

/** Starts `dist/src/main.js --mode=all` on a temp endpoint and data dir; resolves once Probe says ready. */
export async function startDriver(dir: string): Promise<OwnDriver> {
  const socket = join(dir, 'csi.sock');
  const entry = join(projectRoot(), 'dist', 'src', 'main.js');
  let output = '';
  // Its own process group: a Ctrl-C in the terminal reaches the demo only, which then cleans up through the
  // driver before stopping it. Every exit path of the demo stops it (the 'exit' hook covers a crash).
  const child = spawn(
    process.execPath,
    [
      entry,
      '--mode=all',
      `--endpoint=unix://${socket}`,
      `--data-dir=${join(dir, 'data')}`,
      '--metrics-address=',
      // info: a failure's log tail then says what the driver was doing (and whether it was told to stop).
      '--log-level=info',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  );
  const stopWithUs = () => child.exitCode === null && child.signalCode === null && child.kill('SIGTERM');
  process.once('exit', stopWithUs);
  child.once('exit', () => process.removeListener('exit', stopWithUs));
  const collect = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-20_000));
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const csi = connect(socket);
  try {
    const deadline = Date.now() + 60_000;
    while ((await probeState(csi)) !== 'ready') {
      // Thrown to main, which writes it to stderr: readable there at a terminal.
      if (child.exitCode !== null)
        throw new Error(`the driver exited with code ${child.exitCode}:\n${driverLogText(output, process.stderr)}`);
      if (Date.now() > deadline)
        throw new Error(`the driver did not become ready within 60 s:\n${driverLogText(output, process.stderr)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    csi.close();
  }
  return { socket, child, log: () => output };
}

export async function stopDriver(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}
