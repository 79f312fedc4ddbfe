// Helpers of the feature end-to-end tests (test/features-*.test.ts): volumes staged on this node the way
// kubelet does it, the driver's export command as a child process, checksums, and the back end's own view.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { mkdir, open, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { VolumeCapability } from '../../src/generated/csi/v1/VolumeCapability.js';
import { projectRoot } from '../../src/util/paths.js';
import type { Stack } from './stack.js';
import { cleanEnv } from './stack.js';
import { vbsRequest } from './vbs.js';

export const MiB = 1024 * 1024;
type Mode = NonNullable<VolumeCapability['access_mode']>['mode'];
export const blockCap = (mode: Mode = 'SINGLE_NODE_WRITER'): VolumeCapability => ({ block: {}, access_mode: { mode } });
export const mountCap = (fsType: string, mode: Mode = 'SINGLE_NODE_WRITER'): VolumeCapability => ({
  mount: { fs_type: fsType },
  access_mode: { mode },
});

export async function sha256File(path: string, length?: number): Promise<string> {
  const hash = createHash('sha256');
  const stream = createReadStream(path, length !== undefined ? { start: 0, end: length - 1 } : {});
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** A deterministic pattern (not compressible, not zero): block i holds its index and a hash chain. */
export function pattern(bytes: number, seed = 'sdshypervisor'): Buffer {
  const out = Buffer.alloc(bytes);
  let block = createHash('sha256').update(seed).digest();
  for (let off = 0; off < bytes; off += block.length) {
    block.copy(out, off, 0, Math.min(block.length, bytes - off));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

export interface Staged {
  id: string;
  staging: string;
  /** the published target: the block device node (block) or the mount (filesystem) */
  target: string;
  cap: VolumeCapability;
}

/** ControllerPublish + NodeStage + NodePublish of an existing volume on the stack's node. */
export async function stageVolume(stack: Stack, id: string, cap: VolumeCapability): Promise<Staged> {
  const nodeId = (await stack.csi.node.NodeGetInfo({})).node_id;
  const { publish_context } = await stack.csi.controller.ControllerPublishVolume({
    volume_id: id,
    node_id: nodeId,
    volume_capability: cap,
  });
  const dir = join(stack.dir, 'kubelet', id);
  await mkdir(join(dir, 'pods'), { recursive: true });
  const staging = join(dir, 'globalmount');
  const target = join(dir, 'pods', cap.block ? 'dev' : 'mnt');
  await stack.csi.node.NodeStageVolume({
    volume_id: id,
    staging_target_path: staging,
    volume_capability: cap,
    publish_context,
  });
  await stack.csi.node.NodePublishVolume({
    volume_id: id,
    staging_target_path: staging,
    target_path: target,
    volume_capability: cap,
    publish_context,
  });
  return { id, staging, target, cap };
}

/** NodeUnpublish + NodeUnstage + ControllerUnpublish. */
export async function unstageVolume(stack: Stack, v: Staged): Promise<void> {
  const nodeId = (await stack.csi.node.NodeGetInfo({})).node_id;
  await stack.csi.node.NodeUnpublishVolume({ volume_id: v.id, target_path: v.target });
  await stack.csi.node.NodeUnstageVolume({ volume_id: v.id, staging_target_path: v.staging });
  await stack.csi.controller.ControllerUnpublishVolume({ volume_id: v.id, node_id: nodeId });
}

/** Writes `data` at offset 0 of a published block device and syncs it. */
export async function writeDevice(device: string, data: Buffer): Promise<void> {
  const fh = await open(device, 'r+');
  try {
    await fh.write(data, 0, data.length, 0);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function readDevice(device: string, length: number): Promise<Buffer> {
  const fh = await open(device, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

export async function isBlockDevice(path: string): Promise<boolean> {
  return (await stat(path)).isBlockDevice();
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node dist/src/main.js <args>` with a clean environment plus `env`. */
export function runDriverCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): Promise<CliResult> {
  const entry = join(projectRoot(), 'dist', 'src', 'main.js');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [entry, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv(env) });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The back end's record of pool `poolId`. */
export async function backendPool(vbsSocket: string, poolId = 'pool0'): Promise<Record<string, string>> {
  const reply = await vbsRequest(vbsSocket, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 1, pool_id: poolId });
  if (reply.retcode !== 0)
    throw new Error(`QUERY_POOLS_CAPABILITY_REQ: ${reply.retcode} ${reply.get('ret_desc') ?? ''}`);
  return reply.records('pool')[0]!;
}

/** The emulator's pid, from the emulator.json it writes when ready. */
export function emulatorPid(stack: Stack): number {
  return (JSON.parse(readFileSync(join(stack.emulatorDataDir, 'emulator.json'), 'utf8')) as { pid: number }).pid;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it returns true or `timeoutMs` passes; returns the last result. */
export async function eventually(probe: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
}
