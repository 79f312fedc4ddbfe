// One time format from every process: the driver's and the embedded emulator's lines carry ISO 8601 times,
// as JSON when stderr is not a terminal (pipes, files, Kubernetes), and as readable pino-pretty lines when it
// is (a person running `npm start`; the test gives the driver a pseudo-terminal with util-linux `script`).
import { spawn, type ChildProcess } from 'node:child_process';
import { expect, it } from 'vitest';
import { eventually } from './support/ops.js';
import { cleanEnv, useProcessDir } from './support/stack.js';
import { processArgvs } from './support/leaks.js';
import { allModeArgv } from './support/driver-run.js';

const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const inDir = useProcessDir('csi-log-format-');

function driverArgs(name: string): string[] {
  return allModeArgv(inDir(name));
}

/** The driver process (not `script`) of a run: the node process whose argv has --mode=all and the run's dir. */
function driverPid(name: string): number | undefined {
  return processArgvs().find(
    ({ argv }) =>
      argv[0] === process.execPath && argv.includes('--mode=all') && argv.some((a) => a.includes(inDir(name))),
  )?.pid;
}

async function runUntilStartedThenStop(child: ChildProcess, name: string): Promise<string> {
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr?.on('data', (c: Buffer) => (output += c.toString()));
  const exit = new Promise((resolve) => child.once('exit', resolve));
  await eventually(
    `the driver started:\n${output}`,
    () => output.includes('sdshypervisor-csi started') || child.exitCode !== null,
    60_000,
  );
  process.kill(driverPid(name)!, 'SIGTERM');
  await exit;
  return output;
}

it('JSON lines with ISO 8601 times from the driver and its emulator when stderr is a pipe', async () => {
  const child = spawn(process.execPath, driverArgs('pipe'), {
    env: cleanEnv({ SDS_POOLS: 'pool0:1G' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = await runUntilStartedThenStop(child, 'pipe');
  const lines = output
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { time: unknown; name: string });
  expect(new Set(lines.map((l) => l.name))).toEqual(new Set(['sdshypervisor-csi', 'sdshypervisor-emulator']));
  for (const line of lines) expect(line.time, JSON.stringify(line)).toMatch(ISO_8601);
});

it("readable lines with the same times at a terminal, the emulator's too", async () => {
  const command = [process.execPath, ...driverArgs('tty')].map((a) => `'${a}'`).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], {
    env: cleanEnv({ SDS_POOLS: 'pool0:1G', TERM: 'dumb' }),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const output = (await runUntilStartedThenStop(child, 'tty')).replace(/\x1b\[[0-9;]*m/g, '').replace(/\r/g, '');
  expect(output).not.toMatch(/^\{"level"/m);
  const headers = output.split('\n').filter((line) => line.startsWith('['));
  expect(headers.some((h) => h.includes('(sdshypervisor-csi/') && h.includes('sdshypervisor-csi started'))).toBe(true);
  expect(headers.some((h) => h.includes('(sdshypervisor-emulator/'))).toBe(true);
  for (const header of headers) expect(/^\[([^\]]+)\]/.exec(header)![1], header).toMatch(ISO_8601);
});
