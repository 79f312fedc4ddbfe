// Conformance of the CSI Identity service and of the driver process itself (socket, signals, command line,
// back-end outages): the real driver and emulator processes, driven over the CSI socket.
import { spawn } from 'node:child_process';
import { lstat, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../src/util/paths.js';
import { connectCsi, failure, settle, status } from './support/csi-client.js';
import { DRIVER_MAIN } from './support/driver-process.js';
import { runDriver } from './support/driver-run.js';
import { startStack, type Stack } from './support/stack.js';

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ mode: 'controller', token: 'conformance-secret-token' });
});

afterAll(async () => {
  await stack?.stop();
});

describe('Identity', () => {
  it('GetPluginInfo names the driver (DNS-like, ≤ 63 chars) and its version from package.json', async () => {
    const info = await stack.csi.identity.GetPluginInfo({});
    const pkg = JSON.parse(await readFile(join(projectRoot(), 'package.json'), 'utf8')) as { version: string };
    expect(info.name).toBe('csi.sdshypervisor.io');
    expect(info.name).toMatch(/^[a-z0-9A-Z]([a-z0-9A-Z.-]{0,61}[a-z0-9A-Z])?$/);
    expect(info.vendor_version).toBe(pkg.version);
  });

  it('GetPluginCapabilities: controller, group controller and snapshot metadata services, topology constraints, online expansion', async () => {
    const caps = await stack.csi.identity.GetPluginCapabilities({});
    expect(
      caps.capabilities
        .filter((c) => c.service)
        .map((c) => c.service!.type)
        .sort(),
    ).toEqual([
      'CONTROLLER_SERVICE',
      'GROUP_CONTROLLER_SERVICE',
      'SNAPSHOT_METADATA_SERVICE',
      'VOLUME_ACCESSIBILITY_CONSTRAINTS',
    ]);
    expect(caps.capabilities.filter((c) => c.volume_expansion).map((c) => c.volume_expansion!.type)).toEqual([
      'ONLINE',
    ]);
  });

  it('Probe is ready while the back end answers, not ready while it is down, and recovers; controller calls answer UNAVAILABLE meanwhile', async () => {
    expect((await stack.csi.identity.Probe({})).ready?.value).toBe(true);
    const before = await stack.csi.controller.CreateVolume({
      name: 'pvc-survives-restart',
      volume_capabilities: [{ block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
    });
    await stack.stopEmulator();
    try {
      expect((await stack.csi.identity.Probe({}, { timeoutMs: 10_000 })).ready?.value).toBe(false);
      const create = await failure(
        stack.csi.controller.CreateVolume({
          name: 'pvc-while-down',
          volume_capabilities: [{ block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
        }),
      );
      expect(create.codeName).toBe('UNAVAILABLE');
      expect((await failure(stack.csi.controller.ListVolumes({}))).codeName).toBe('UNAVAILABLE');
      expect((await failure(stack.csi.controller.DeleteVolume({ volume_id: 'pvc-survives-restart' }))).codeName).toBe(
        'UNAVAILABLE',
      );
    } finally {
      await stack.startEmulator();
    }
    expect((await stack.csi.identity.Probe({})).ready?.value).toBe(true);
    const listed = await stack.csi.controller.ListVolumes({});
    expect(listed.entries.map((e) => e.volume?.volume_id)).toContain(before.volume!.volume_id);
    expect(
      (
        await stack.csi.controller.CreateVolume({
          name: 'pvc-while-down',
          volume_capabilities: [{ block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
        })
      ).volume?.volume_id,
    ).toBe('pvc-while-down');
  });

  it('the node service is not served in controller mode: UNIMPLEMENTED', async () => {
    const f = await failure(stack.csi.node.NodeGetCapabilities({}));
    expect(f.code).toBe(status.UNIMPLEMENTED);
  });
});

describe('the driver process', () => {
  it('serves its socket with mode 0600 and removes it when it stops on SIGTERM, exiting 0', async () => {
    const st = await lstat(stack.csiSocket);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(await stack.stopDriver()).toBe(0);
    await expect(lstat(stack.csiSocket)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(stack.driverLog()).toMatch(/CSI endpoint closed/);
  });

  it('removes a stale socket left by a dead process, and honours --endpoint-mode and --driver-name', async () => {
    // A socket file whose owner was killed: nobody answers on it.
    const holder = spawn(
      process.execPath,
      ['-e', `require('net').createServer().listen(${JSON.stringify(stack.csiSocket)}, () => console.log('up'))`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    expect((await lstat(stack.csiSocket)).isSocket()).toBe(true);

    await stack.startDriver(['--endpoint-mode=0660', '--driver-name=block.example.com']);
    expect((await lstat(stack.csiSocket)).mode & 0o777).toBe(0o660);
    expect((await stack.csi.identity.GetPluginInfo({})).name).toBe('block.example.com');
    expect(await stack.stopDriver()).toBe(0);
    await stack.startDriver();
  });

  it('drains an in-flight call on SIGTERM, and stops at once on a second signal', async () => {
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    /** Sends SIGTERM (`signals` times) while a CreateVolume hangs on the frozen back end. */
    async function signalWhileInFlight(name: string, signals: 1 | 2) {
      const thaw = stack.freezeEmulator();
      try {
        const pending = settle(
          stack.csi.controller.CreateVolume({
            name,
            volume_capabilities: [{ block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
          }),
        );
        await sleep(300);
        const exited = stack.driverExited();
        stack.driverProcess()!.kill('SIGTERM');
        await sleep(300);
        if (signals === 2) {
          stack.driverProcess()!.kill('SIGTERM');
          const exit = await exited;
          thaw();
          return { exit, call: await pending };
        }
        expect(stack.driverProcess()!.exitCode).toBeNull(); // still draining
        thaw();
        return { call: await pending, exit: await exited };
      } finally {
        thaw();
      }
    }

    const drained = await signalWhileInFlight('pvc-drained', 1);
    expect(drained.call.ok).toBe(true);
    expect(drained.exit).toBe(0);

    await stack.startDriver();
    const cut = await signalWhileInFlight('pvc-cut-short', 2);
    expect(cut.exit).toBe(1);
    expect(cut.call.ok).toBe(false);
    expect(stack.driverLog()).toMatch(/second signal: stopping at once/);
    await stack.startDriver();
    expect((await stack.csi.identity.Probe({})).ready?.value).toBe(true);
  });

  it('refuses to take over a live socket or a file that is not a socket', async () => {
    const live = await runDriver([
      '--mode=controller',
      '--emulator=false',
      `--endpoint=unix://${stack.csiSocket}`,
      '--metrics-address=',
      `--vbs-url=unix://${stack.vbsSocket}`,
    ]);
    expect(live.code).toBe(1);
    expect(live.stderr).toMatch(/in use by another process/);
    expect((await stack.csi.identity.Probe({})).ready?.value).toBe(true);

    const plain = join(stack.dir, 'not-a-socket');
    await writeFile(plain, 'data');
    const file = await runDriver([
      '--mode=controller',
      '--emulator=false',
      `--endpoint=unix://${plain}`,
      '--metrics-address=',
    ]);
    expect(file.code).toBe(1);
    expect(file.stderr).toMatch(/not a socket/);
    expect(await readFile(plain, 'utf8')).toBe('data');
  });

  it('--help and --version print and exit 0; a bad setting exits 2 naming it', async () => {
    const help = await runDriver(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--endpoint/);
    const version = await runDriver(['--version']);
    expect(version).toMatchObject({ code: 0 });
    expect(version.stdout.trim()).toBe(JSON.parse(await readFile(join(projectRoot(), 'package.json'), 'utf8')).version);
    const bad = await runDriver(['--mode=sideways']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--mode/);
    const badEnv = await runDriver([], { CSI_ENDPOINT: 'tcp://127.0.0.1:1' });
    expect(badEnv.code).toBe(2);
    expect(badEnv.stderr).toMatch(/CSI_ENDPOINT/);
  });

  it('Probe is not ready when the back end refuses the token', async () => {
    const socket = join(stack.dir, 'wrong-token.sock');
    const child = spawn(
      process.execPath,
      [
        DRIVER_MAIN,
        '--mode=controller',
        '--emulator=false',
        `--endpoint=unix://${socket}`,
        '--metrics-address=',
        `--vbs-url=unix://${stack.vbsSocket}`,
      ],
      {
        env: { PATH: process.env.PATH, SDS_VBS_TOKEN: 'wrong-token' },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const csi = connectCsi(socket);
    try {
      let ready: boolean | undefined;
      for (let i = 0; i < 100 && ready === undefined; i++) {
        try {
          ready = (await csi.identity.Probe({}, { timeoutMs: 5_000 })).ready?.value;
        } catch {
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      expect(ready).toBe(false);
      const f = await failure(csi.controller.ListVolumes({}));
      expect(f.codeName).toBe('UNAUTHENTICATED');
    } finally {
      csi.close();
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
  });
});
