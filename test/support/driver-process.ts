// The driver as its own process (dist/src/main.js, --emulator=false) against a back end a test started, with a
// CSI client on its socket: the multi-host tests run one per host and one controller this way. Inside a
// network namespace it runs through `ip netns exec`, which execs it: the pid is the driver's, in a mount
// namespace of its own that is a slave of ours (what it mounts stays on its host and goes when it dies).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { VolumeCapability } from '../../src/generated/csi/v1/VolumeCapability.js';
import { connectCsi, type ControllerApi, type CsiClients, type NodeApi } from './csi-client.js';
import { sleep } from './emulator.js';
import { cleanEnv } from './stack.js';

const root = resolve(import.meta.dirname, '..', '..');
export const DRIVER_MAIN = join(root, 'dist', 'src', 'main.js');

export interface DriverProcess {
  proc: ChildProcess;
  csi: CsiClients;
  exited: Promise<void>;
  log(): string;
}

export interface DriverProcessOptions {
  /** where its CSI socket goes */
  dir: string;
  /** the driver's arguments after --emulator=false, --endpoint and --metrics-address= */
  args: string[];
  /** environment beside a clean one (cleanEnv) */
  env?: NodeJS.ProcessEnv;
  /** run inside this network namespace */
  netns?: string;
}

/** Starts the driver and returns once its Probe answers ready (60 s at most). */
export async function startDriverProcess(name: string, options: DriverProcessOptions): Promise<DriverProcess> {
  const csiSocket = join(options.dir, `${name}.csi.sock`);
  const env = cleanEnv(options.env);
  const argv = [
    DRIVER_MAIN,
    '--emulator=false',
    '--endpoint',
    `unix://${csiSocket}`,
    '--metrics-address=',
    ...options.args,
  ];
  const stdio: ['ignore', 'ignore', 'pipe'] = ['ignore', 'ignore', 'pipe'];
  const proc = options.netns
    ? spawn('ip', ['netns', 'exec', options.netns, process.execPath, ...argv], { stdio, env })
    : spawn(process.execPath, argv, { stdio, env });
  let log = '';
  proc.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-100_000)));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  let csi = connectCsi(csiSocket);
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${name} exited:\n${log}`);
    try {
      const ready = (await csi.identity.Probe({}, { timeoutMs: 2_000 })).ready?.value;
      if (ready) return { proc, csi, exited, log: () => log };
    } catch {
      csi.close();
      csi = connectCsi(csiSocket);
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      await exited;
      throw new Error(`${name} not ready in 60 s:\n${log}`);
    }
    await sleep(100);
  }
}

/** Kills the driver with SIGKILL (a host dying, or the end of a test) and waits for it to be gone. */
export async function kill9Driver(d: DriverProcess | undefined): Promise<void> {
  if (!d) return;
  d.csi.close();
  if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGKILL');
  await d.exited;
}

/** Where kubelet would stage and publish volume `id` on `host`, under `root` (made; a block target is a file). */
export function kubeletPaths(root: string, host: string, id: string, block: boolean) {
  const dir = join(root, 'kubelet', host, id);
  mkdirSync(join(dir, 'pods'), { recursive: true });
  const target = join(dir, 'pods', 'target');
  if (block) writeFileSync(target, '');
  return { staging: join(dir, 'globalmount'), target };
}

/** ControllerPublishVolume to `host`, then NodeStage and NodePublish on its node plugin; the target path. */
export async function attachOn(
  controller: ControllerApi,
  node: NodeApi,
  root: string,
  host: string,
  id: string,
  cap: VolumeCapability,
): Promise<string> {
  const { publish_context } = await controller.ControllerPublishVolume({
    volume_id: id,
    node_id: host,
    volume_capability: cap,
  });
  const p = kubeletPaths(root, host, id, cap.block !== undefined);
  await node.NodeStageVolume({
    volume_id: id,
    staging_target_path: p.staging,
    volume_capability: cap,
    publish_context,
  });
  await node.NodePublishVolume({
    volume_id: id,
    staging_target_path: p.staging,
    target_path: p.target,
    volume_capability: cap,
    publish_context,
  });
  return p.target;
}

/** NodeUnpublish and NodeUnstage on `host`'s node plugin, then ControllerUnpublishVolume from `host`. */
export async function detachFrom(
  controller: ControllerApi,
  node: NodeApi,
  root: string,
  host: string,
  id: string,
): Promise<void> {
  const p = kubeletPaths(root, host, id, false);
  await node.NodeUnpublishVolume({ volume_id: id, target_path: p.target });
  await node.NodeUnstageVolume({ volume_id: id, staging_target_path: p.staging });
  await controller.ControllerUnpublishVolume({ volume_id: id, node_id: host });
}
