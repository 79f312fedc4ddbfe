// `npm run demo` stopped half-way — its output pipe closed (`npm run demo | head -12`), a Ctrl-C, or its own
// driver stopped under it — removes every mount, volume and process it made; and a driver that answers
// "not ready" is told apart from none at all (no second driver is started). Each demo runs with TMPDIR set
// to a directory of the test's, so everything it makes is under it and counted there. The points of
// interruption are found from the demo's own progress lines, never from timing.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { projectRoot } from '../src/util/paths.js';
import { FakeBackend } from './support/fake-backend.js';
import { startInProcess } from './support/in-process.js';
import { eventually } from './support/ops.js';
import { processesUnder } from './support/leaks.js';
import { cleanEnv, leftovers, useProcessDir } from './support/stack.js';

const inDir = useProcessDir('csi-demo-stop-');

interface Demo {
  child: ChildProcess;
  exit: Promise<number | null>;
  output: () => string;
  /** resolves when a stdout line starting with `prefix` (after the step number) has been printed */
  step: (title: string) => Promise<void>;
}

/** `tty`: run at a terminal (a pseudo-terminal from util-linux `script`), as a person running `npm run demo`. */
async function runDemo(name: string, env: NodeJS.ProcessEnv = {}, { tty = false } = {}): Promise<Demo> {
  const tmp = inDir(name);
  await mkdir(tmp);
  const argv = [process.execPath, join(projectRoot(), 'dist', 'src', 'demo', 'demo.js')];
  const child = spawn(
    tty ? 'script' : argv[0]!,
    tty ? ['-qec', argv.map((a) => `'${a}'`).join(' '), '/dev/null'] : argv.slice(1),
    {
      env: cleanEnv({
        TMPDIR: tmp,
        CSI_ENDPOINT: `unix://${join(tmp, 'nothing-here.sock')}`,
        ...(tty ? { TERM: 'dumb' } : {}),
        ...env,
      }),
      stdio: [tty ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  // At a terminal: colours and carriage returns off, to read the text.
  const text = (c: Buffer) =>
    c
      .toString()
      .replace(/\x1b\[[0-9;]*m/g, '')
      .replace(/\r/g, '');
  child.stdout!.on('data', (c: Buffer) => (output += text(c)));
  child.stderr!.on('data', (c: Buffer) => (output += text(c)));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const step = (title: string) =>
    eventually(
      `the demo printed step "${title}":\n${output}`,
      () => new RegExp(`^\\s*\\d+/\\d+  ${title} `, 'm').test(output) || child.exitCode !== null,
      90_000,
    );
  return { child, exit, output: () => output, step };
}

async function expectNothingLeft(name: string): Promise<void> {
  const tmp = inDir(name);
  await eventually(`no process of ${tmp} left`, () => processesUnder(tmp).length === 0);
  expect(await leftovers(tmp)).toEqual([]);
  expect(readdirSync(tmp).filter((f) => f.startsWith('sds-demo-'))).toEqual([]);
}

it('its output pipe closed after the volume is published (| head): cleans up and exits 1', async () => {
  const demo = await runDemo('pipe');
  await demo.step('NodePublishVolume');
  demo.child.stdout!.destroy(); // the reader is gone: the next write fails with EPIPE
  expect(await demo.exit).toBe(1);
  await expectNothingLeft('pipe');
});

it('Ctrl-C (SIGINT) after the volume is published: undoes every step, says so, exits 1', async () => {
  const demo = await runDemo('sigint');
  await demo.step('NodePublishVolume');
  demo.child.kill('SIGINT');
  expect(await demo.exit).toBe(1);
  expect(demo.output()).toMatch(/interrupted \(SIGINT\) before step/);
  expect(demo.output()).toMatch(/cleanup: unpublish /);
  expect(demo.output()).toMatch(/cleanup: unstage /);
  expect(demo.output()).toMatch(/demo interrupted \(SIGINT\)/);
  await expectNothingLeft('sigint');
});

/** Stops the demo's own driver under it once the volume is published; the demo's whole output. */
async function stopItsDriver(name: string, tty: boolean): Promise<string> {
  const demo = await runDemo(name, {}, { tty });
  await demo.step('NodePublishVolume');
  const driver = processesUnder(inDir(name)).find((pid) =>
    readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('--mode=all'),
  );
  expect(driver).toBeDefined();
  process.kill(driver!, 'SIGTERM');
  expect(await demo.exit).toBe(1);
  expect(demo.output()).toMatch(/starting it again to clean up/);
  expect(demo.output()).toMatch(/cleanup: unstage /);
  await expectNothingLeft(name);
  return demo.output();
}

/** The lines the demo shows of the driver that was stopped under it. */
function stoppedDriverLog(output: string): string[] {
  const after = output.split('its log (tail):\n')[1] ?? '';
  return after.split('\n').slice(
    0,
    after.split('\n').findIndex((l) => l.startsWith('cleanup:')),
  );
}

const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

it('its own driver stopped under it (SIGTERM): starts it again to undo the mounts; its log as JSON in a pipe', async () => {
  const lines = stoppedDriverLog(await stopItsDriver('driver-stopped', false))
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg: string; time: string; signal?: string });
  const stopping = lines.find((l) => l.msg === 'stopping: draining in-flight calls');
  expect(stopping, JSON.stringify(lines)).toMatchObject({ signal: 'SIGTERM' });
  for (const line of lines) expect(line.time).toMatch(ISO_8601);
});

it('at a terminal the same, its driver log as readable lines with ISO 8601 times', async () => {
  const shown = stoppedDriverLog(await stopItsDriver('driver-stopped-tty', true));
  expect(shown.filter((l) => l.startsWith('{'))).toEqual([]);
  const headers = shown.filter((l) => l.startsWith('['));
  expect(
    headers.some((h) => /^\[[^\]]+\] INFO \(sdshypervisor-csi\/\d+\): stopping: draining in-flight calls$/.test(h)),
    shown.join('\n'),
  ).toBe(true);
  for (const header of headers) expect(/^\[([^\]]+)\]/.exec(header)![1], header).toMatch(ISO_8601);
});

it('a driver that answers "not ready" is not "nothing answers": no second driver, exit 1', async () => {
  const server = await startInProcess(new FakeBackend(), { probe: async () => false });
  try {
    const demo = await runDemo('not-ready', {
      CSI_ENDPOINT: `unix://${server.socketPath}`,
      DEMO_NOT_READY_WAIT_MS: '1000',
    });
    expect(await demo.exit).toBe(1);
    expect(demo.output()).toMatch(/a driver answers at unix:\/\/.* but is not ready/);
    expect(demo.output()).toMatch(/still not ready; not starting a second one/);
    expect(demo.output()).not.toMatch(/nothing answers/);
    await expectNothingLeft('not-ready');
  } finally {
    await server.stop();
  }
});
