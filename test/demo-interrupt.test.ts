// `npm run demo` stopped half-way — its output pipe closed (`npm run demo | head -12`), a Ctrl-C, or its own
// driver stopped under it — removes every mount, volume and process it made; and a driver that answers
// "not ready" is told apart from none at all (no second driver is started). Each demo runs with TMPDIR set
// to a directory of the test's, so everything it makes is under it and counted there. The points of
// interruption are found from the demo's own progress lines, never from timing.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { projectRoot } from '../src/util/paths.js';
import { FakeBackend } from './support/fake-backend.js';
import { startInProcess } from './support/in-process.js';
import { eventually } from './support/ops.js';
import { processesUnder } from './support/leaks.js';
import { cleanEnv, leftovers } from './support/stack.js';

let dir: string;
beforeAll(async () => {
  dir = await realpath(await mkdtemp(join(tmpdir(), 'csi-demo-stop-')));
});
afterAll(async () => {
  for (const pid of processesUnder(dir)) process.kill(pid, 'SIGKILL');
  const problems = await leftovers(dir);
  await rm(dir, { recursive: true, force: true });
  expect(problems).toEqual([]);
});

interface Demo {
  child: ChildProcess;
  exit: Promise<number | null>;
  output: () => string;
  /** resolves when a stdout line starting with `prefix` (after the step number) has been printed */
  step: (title: string) => Promise<void>;
}

async function runDemo(name: string, env: NodeJS.ProcessEnv = {}): Promise<Demo> {
  const tmp = join(dir, name);
  await mkdir(tmp);
  const child = spawn(process.execPath, [join(projectRoot(), 'dist', 'src', 'demo', 'demo.js')], {
    env: cleanEnv({ TMPDIR: tmp, CSI_ENDPOINT: `unix://${join(tmp, 'nothing-here.sock')}`, ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
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
  const tmp = join(dir, name);
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

it('its own driver stopped under it (SIGTERM): starts it again to undo the mounts', async () => {
  const demo = await runDemo('driver-stopped');
  await demo.step('NodePublishVolume');
  const driver = processesUnder(join(dir, 'driver-stopped')).find((pid) =>
    readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('--mode=all'),
  );
  expect(driver).toBeDefined();
  process.kill(driver!, 'SIGTERM');
  expect(await demo.exit).toBe(1);
  expect(demo.output()).toMatch(/starting it again to clean up/);
  expect(demo.output()).toMatch(/cleanup: unstage /);
  await expectNothingLeft('driver-stopped');
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
