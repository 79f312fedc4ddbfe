// `npm start` stopped with Ctrl-C: the terminal sends SIGINT to the whole foreground process group and npm
// forwards it to the driver as well, so the driver sees the same signal twice within milliseconds. It must
// still drain (not take it for a second "stop now" request), and the embedded emulator — in its own
// process group, so the terminal does not reach it — must get exactly one SIGTERM and unmount its pool.
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { projectRoot } from '../src/util/paths.js';
import { connectCsi } from './support/csi-client.js';
import { cleanEnv, useProcessDir } from './support/stack.js';

const inDir = useProcessDir('csi-signals-');

it('one Ctrl-C delivered twice (terminal group + npm) drains, stops the emulator cleanly and exits 0', async () => {
  const endpoint = inDir('csi.sock');
  await mkdir(inDir('data'));
  // detached: a process group of its own, like the shell gives `npm start` in a terminal.
  const child = spawn(
    process.execPath,
    [join(projectRoot(), 'dist', 'src', 'main.js'), '--mode=all', `--data-dir=${inDir('data')}`, '--metrics-address='],
    {
      env: cleanEnv({ CSI_ENDPOINT: `unix://${endpoint}`, SDS_POOLS: 'pool0:1G' }),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    },
  );
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const csi = connectCsi(endpoint);
  try {
    const deadline = Date.now() + 40_000;
    while (
      !(await csi.identity.Probe({}, { timeoutMs: 2_000 }).then(
        (r) => r.ready?.value,
        () => false,
      ))
    ) {
      if (child.exitCode !== null || Date.now() > deadline)
        throw new Error(`the driver did not become ready:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await csi.node.NodeGetCapabilities({})).capabilities.length).toBe(5);
  } finally {
    csi.close();
  }
  process.kill(-child.pid!, 'SIGINT'); // the terminal: the whole foreground group
  await new Promise((r) => setTimeout(r, 5)); // npm receives it too, then forwards it to its child
  process.kill(child.pid!, 'SIGINT');
  expect(await exit).toBe(0);
  expect(output).toMatch(/stopping: draining in-flight calls/);
  expect(output).not.toMatch(/second signal/);
  expect(output).toMatch(/unmounted pool/);
  expect(output).toMatch(/"embedded emulator stopped"|embedded emulator stopped/);
});
