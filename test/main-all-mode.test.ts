// The driver in --mode=all with its embedded emulator: a real driver process that starts the emulator as
// its child, serves CSI over it, and on SIGTERM drains, stops the emulator and leaves nothing behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../src/util/paths.js';
import { connectCsi, type CsiClients } from './support/csi-client.js';
import { cleanEnv, leftovers } from './support/stack.js';

let dir: string;
let dataDir: string;
let endpoint: string;

interface Driver {
  child: ChildProcess;
  exit: Promise<number | null>;
  log: () => string;
  csi: CsiClients;
}

async function startDriver(): Promise<Driver> {
  const child = spawn(
    process.execPath,
    [join(projectRoot(), 'dist', 'src', 'main.js'), '--mode=all', `--data-dir=${dataDir}`, '--metrics-address='],
    { env: cleanEnv({ CSI_ENDPOINT: `unix://${endpoint}`, SDS_POOLS: 'pool0:1G' }), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const csi = connectCsi(endpoint);
  const deadline = Date.now() + 40_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the driver exited early (${child.exitCode}):\n${output}`);
    const ready = await csi.identity.Probe({}, { timeoutMs: 2_000 }).then(
      (r) => r.ready?.value,
      () => undefined,
    );
    if (ready) return { child, exit, log: () => output, csi };
    if (Date.now() > deadline) throw new Error(`the driver was not ready in time:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeAll(async () => {
  dir = await realpath(await mkdtemp(join(tmpdir(), 'csi-all-mode-')));
  dataDir = join(dir, 'data');
  endpoint = join(dir, 'csi.sock');
});

afterAll(async () => {
  const problems = await leftovers(dir);
  await rm(dir, { recursive: true, force: true });
  expect(problems).toEqual([]);
});

describe('--mode=all with the embedded emulator', () => {
  it('serves CSI over its own emulator and stops it on SIGTERM, leaving nothing behind', async () => {
    const driver = await startDriver();
    const info = JSON.parse(readFileSync(join(dataDir, 'emulator.json'), 'utf8')) as {
      pid: number;
      controlSocket: string;
    };
    expect(alive(info.pid)).toBe(true);
    expect(info.controlSocket).toBe(join(dataDir, 'vbs.sock'));
    const created = await driver.csi.controller.CreateVolume({
      name: 'pvc-all-mode',
      volume_capabilities: [{ block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
    });
    expect(created.volume?.volume_id).toBe('pvc-all-mode');
    driver.csi.close();
    driver.child.kill('SIGTERM');
    expect(await driver.exit).toBe(0);
    expect(alive(info.pid)).toBe(false);
    expect(existsSync(join(dataDir, 'emulator.json'))).toBe(false);
    expect(existsSync(endpoint)).toBe(false);
    expect(await leftovers(dir)).toEqual([]);
  });

  it('keeps its volumes across restarts, and stops when its emulator dies', async () => {
    const driver = await startDriver();
    const listed = await driver.csi.controller.ListVolumes({});
    expect(listed.entries.map((e) => e.volume?.volume_id)).toEqual(['pvc-all-mode']);
    await driver.csi.controller.DeleteVolume({ volume_id: 'pvc-all-mode' });
    driver.csi.close();
    const info = JSON.parse(readFileSync(join(dataDir, 'emulator.json'), 'utf8')) as { pid: number };
    process.kill(info.pid, 'SIGTERM');
    expect(await driver.exit).toBe(1);
    expect(driver.log()).toMatch(/the embedded emulator exited; stopping the driver/);
    expect(existsSync(endpoint)).toBe(false);
  });
});
