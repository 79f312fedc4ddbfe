// `npm start` (--mode=all) interrupted at every stage of its start — before the embedded emulator is
// spawned, while it starts, right after it is ready, and with the driver killed outright — leaves no
// process, mount or loop device under the test's directory; and an emulator that cannot start (its data
// directory held by another emulator) stops the driver with exit 1 and a line naming the cause and the
// directory. The stages are found from the log lines the driver writes, never from timing.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../src/util/paths.js';
import { eventually, logLines } from './support/ops.js';
import { allModeArgv } from './support/driver-run.js';
import { processesUnder } from './support/leaks.js';
import { spawnLogged } from './support/logged-process.js';
import { cleanEnv, leftovers, useProcessDir } from './support/stack.js';

const inDir = useProcessDir('csi-start-stop-');

interface Driver {
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output: () => string;
  /** resolves once a log line with this message has been written */
  saw: (msg: string) => Promise<void>;
}

function startDriver(name: string): Driver {
  const base = inDir(name);
  const child = spawn(process.execPath, allModeArgv(base), {
    env: cleanEnv({ SDS_POOLS: 'pool0:1G' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const waiters: Array<{ msg: string; resolve: () => void }> = [];
  const onData = (chunk: Buffer) => {
    output += chunk.toString();
    for (const waiter of [...waiters]) {
      if (logLines(output).some((line) => line.msg === waiter.msg)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const saw = (msg: string) =>
    new Promise<void>((resolve, reject) => {
      if (logLines(output).some((line) => line.msg === msg)) return resolve();
      waiters.push({ msg, resolve });
      void exit.then(() => setImmediate(() => reject(new Error(`the driver exited before "${msg}":\n${output}`))));
    });
  return { child, exit, output: () => output, saw };
}

async function expectNothingLeft(name: string, { socketRemoved = true } = {}): Promise<void> {
  const base = inDir(name);
  await eventually(`no process of ${base} left`, () => processesUnder(base).length === 0);
  expect(await leftovers(base)).toEqual([]);
  if (socketRemoved) expect(existsSync(join(base, 'csi.sock'))).toBe(false);
}

describe('a start interrupted at any stage leaves nothing behind', () => {
  it('SIGINT before anything has started: nothing to stop', async () => {
    const driver = startDriver('before');
    driver.child.kill('SIGINT');
    const exit = await driver.exit;
    // Still loading its modules: the default action; or already listening: a requested stop. Either way no emulator.
    expect(exit.code === 0 || exit.signal === 'SIGINT', driver.output()).toBe(true);
    expect(driver.output()).not.toMatch(/embedded emulator ready/);
    await expectNothingLeft('before');
  });

  // A signal once the driver has logged `stage`: a clean stop, exit 0, the log saying `says` (and not `never`).
  const stops: Array<{
    title: string;
    name: string;
    stage: string;
    signal: NodeJS.Signals;
    says: RegExp;
    never?: RegExp;
  }> = [
    {
      title: 'SIGINT while the emulator starts: it is stopped and waited for, exit 0',
      name: 'during',
      stage: 'starting the embedded emulator',
      signal: 'SIGINT',
      says: /start interrupted: the embedded emulator is stopped/,
      never: /sdshypervisor-csi started/,
    },
    {
      title: 'SIGTERM right after the emulator is ready, before the CSI socket: the emulator unmounts its pool, exit 0',
      name: 'after',
      stage: 'embedded emulator ready',
      signal: 'SIGTERM',
      says: /embedded emulator stopped/,
    },
    {
      title: 'SIGHUP (the terminal closed) once started: a clean stop, exit 0',
      name: 'hangup',
      stage: 'sdshypervisor-csi started',
      signal: 'SIGHUP',
      says: /unmounted pool/,
    },
  ];
  for (const { title, name, stage, signal, says, never } of stops) {
    it(title, async () => {
      const driver = startDriver(name);
      await driver.saw(stage);
      driver.child.kill(signal);
      expect(await driver.exit).toEqual({ code: 0, signal: null });
      expect(driver.output()).toMatch(says);
      if (never) expect(driver.output()).not.toMatch(never);
      await expectNothingLeft(name);
    });
  }

  it('SIGKILL of the driver: its emulator notices and stops on its own, unmounting its pool', async () => {
    const driver = startDriver('killed');
    await driver.saw('sdshypervisor-csi started');
    const emulatorPid = (JSON.parse(readFileSync(inDir('killed', 'data', 'emulator.json'), 'utf8')) as { pid: number })
      .pid;
    driver.child.kill('SIGKILL');
    expect((await driver.exit).signal).toBe('SIGKILL');
    await eventually('the orphaned emulator has stopped', () => !existsSync(`/proc/${emulatorPid}`));
    // The CSI socket file stays (nobody was left to remove it); the next start replaces it.
    await expectNothingLeft('killed', { socketRemoved: false });
  });
});

describe('an emulator that cannot start', () => {
  it('a data directory held by another emulator: exit 1, a line naming the cause and the directory', async () => {
    const dataDir = inDir('locked', 'data');
    await mkdir(dataDir, { recursive: true });
    const holder = spawnLogged(
      [join(projectRoot(), 'dist', 'emulator', 'main.js'), '--data-dir', dataDir, '--listen-port', '0'],
      cleanEnv({ SDS_POOLS: 'pool0:1G' }),
    );
    try {
      await eventually(
        'the first emulator is ready',
        () => existsSync(join(dataDir, 'emulator.json')) || holder.child.exitCode !== null,
        40_000,
      );
      expect(holder.child.exitCode, holder.log()).toBeNull();
      const driver = startDriver('locked');
      expect(await driver.exit).toEqual({ code: 1, signal: null });
      const fatal = logLines(driver.output()).find((line) => line.level === 60 && line.name === 'sdshypervisor-csi');
      expect(fatal?.msg, driver.output()).toBe(
        `sdshypervisor-csi failed: the embedded emulator could not start with the data directory ${dataDir}: ${join(dataDir, 'emulator.db')} is locked: another emulator is using this data directory`,
      );
      // The other emulator's status file is its own: still there.
      expect(existsSync(join(dataDir, 'emulator.json'))).toBe(true);
    } finally {
      await holder.stop();
    }
    await expectNothingLeft('locked');
  });
});
