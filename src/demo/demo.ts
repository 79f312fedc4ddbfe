#!/usr/bin/env node
// `npm run demo`: the life of a PVC, driven over the CSI socket the way Kubernetes drives it — create,
// attach, stage, publish, write, snapshot, restore a linked clone and mount it elsewhere, read back, expand
// online, and tear it all down. One progress line per step with its duration. It uses the driver at
// CSI_ENDPOINT (`npm start`); when nothing answers there it starts one itself (--mode=all, embedded
// emulator, temp data dir) and stops it at the end. Whatever it created is removed even when a step fails,
// when it is interrupted (SIGINT, SIGTERM, SIGHUP) and when its output goes away (`npm run demo | head`).
import * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VolumeCapability } from '../generated/csi/v1/VolumeCapability.js';
import { demoSettings } from '../config/demo.js';
import { parseUnixEndpoint } from '../server/server.js';
import { connectCsi, CsiCallError, type CsiClients } from '../util/csi-client.js';
import { projectRoot } from '../util/paths.js';

const DEFAULT_ENDPOINT = 'unix:///tmp/sdshypervisor-csi/csi.sock';
/** How long a driver that answers "not ready" gets to become ready before the demo gives up. */
const NOT_READY_WAIT_MS = demoSettings().notReadyWaitMs;

// Stopping: a signal or a closed stdout ends the run after the step in flight; the clean-up then runs.
let stopReason: string | undefined;
let stdoutOpen = true;
const requestStop = (reason: string): void => {
  if (stopReason) {
    if (stdoutOpen) process.stdout.write(`(${reason}: still cleaning up, please wait)\n`);
    return;
  }
  stopReason = reason;
};
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => requestStop(signal));
// EPIPE once the reader has gone (`| head -12`): no more output, and stop as if interrupted.
process.stdout.on('error', () => {
  stdoutOpen = false;
  requestStop('stdout closed');
});
const out = (text: string): void => {
  if (stdoutOpen) process.stdout.write(text);
};
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

type Csi = CsiClients;

/** Identity calls answer at once or not at all; the rest may format or clone, so they get longer. */
const IDENTITY_CALL = { timeoutMs: 5_000 };

function connect(socket: string): Csi {
  return connectCsi(socket, { timeoutMs: 120_000 });
}

/** 'ready', 'not-ready' (a driver answered: not ready yet) or 'nothing' (no answer at all). */
async function probeState(csi: Csi): Promise<'ready' | 'not-ready' | 'nothing'> {
  try {
    const probe = await csi.identity.Probe({}, IDENTITY_CALL);
    return probe.ready?.value !== false ? 'ready' : 'not-ready';
  } catch (err) {
    // FAILED_PRECONDITION / UNAVAILABLE from a driver that serves but cannot reach its back end: it answered.
    const code = err instanceof CsiCallError ? err.code : undefined;
    return code === grpc.status.FAILED_PRECONDITION ? 'not-ready' : 'nothing';
  }
}

async function ready(csi: Csi): Promise<boolean> {
  return (await probeState(csi)) === 'ready';
}

/** Starts `dist/src/main.js --mode=all` on a temp endpoint and data dir; resolves once Probe says ready. */
async function startDriver(dir: string): Promise<{ socket: string; child: ChildProcess; log: () => string }> {
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
      '--log-level=warn',
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
    while (!(await ready(csi))) {
      if (child.exitCode !== null) throw new Error(`the driver exited with code ${child.exitCode}:\n${output}`);
      if (Date.now() > deadline) throw new Error(`the driver did not become ready within 60 s:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    csi.close();
  }
  return { socket, child, log: () => output };
}

async function stopDriver(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

const size = (bytes: number) =>
  bytes >= GiB && bytes % (GiB / 4) === 0 ? `${bytes / GiB} GiB` : `${Math.round(bytes / MiB)} MiB`;

async function dfBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return s.blocks * s.bsize;
}

interface Step {
  title: string;
  run: () => Promise<string>;
}

async function main(): Promise<number> {
  const fsType = demoSettings().fsType;
  const work = await mkdtemp(join(tmpdir(), 'sds-demo-'));
  const endpoint = demoSettings().endpoint ?? DEFAULT_ENDPOINT;
  let socket = parseUnixEndpoint(endpoint);
  let own: Awaited<ReturnType<typeof startDriver>> | undefined;
  let csi = connect(socket);
  const started = Date.now();

  let state = await probeState(csi);
  if (state === 'not-ready') {
    out(`a driver answers at ${endpoint} but is not ready; waiting up to ${NOT_READY_WAIT_MS / 1000} s\n`);
    const deadline = Date.now() + NOT_READY_WAIT_MS;
    while (state === 'not-ready' && Date.now() < deadline && !stopReason) {
      await new Promise((r) => setTimeout(r, 500));
      state = await probeState(csi);
    }
    if (state !== 'ready') {
      csi.close();
      await removeWorkDir(work);
      out(
        `the driver at ${endpoint} is ${state === 'nothing' ? 'gone' : 'still not ready'}; not starting a second one (see its log, or stop it)\n`,
      );
      return 1;
    }
  }
  if (state === 'nothing') {
    csi.close();
    out(`nothing answers at ${endpoint}; starting the driver (--mode=all, embedded emulator) in ${work}\n`);
    try {
      own = await startDriver(work);
    } catch (err) {
      await removeWorkDir(work);
      throw err;
    }
    socket = own.socket;
    csi = connect(socket);
  }
  out(`CSI endpoint unix://${socket}; working directory ${work}; filesystem ${fsType}\n\n`);

  const tag = randomBytes(3).toString('hex');
  const pvc = `pvc-demo-${tag}`;
  const snap = `snapshot-demo-${tag}`;
  const clone = `pvc-demo-${tag}-restored`;
  const capability: VolumeCapability = {
    access_mode: { mode: 'SINGLE_NODE_WRITER' },
    mount: { fs_type: fsType, mount_flags: [] },
  };
  const paths = {
    staging: join(work, 'staging', pvc),
    target: join(work, 'pods', 'writer', pvc),
    cloneStaging: join(work, 'staging', clone),
    cloneTarget: join(work, 'pods', 'reader', clone),
  };
  const message = `written by the demo at ${new Date().toISOString()}\n`;
  let nodeId = '';
  let volumeId = '';
  let cloneId = '';
  let snapshotId = '';
  let sizeBefore = 0;

  // What exists now, for the clean-up after a failed step (removed in reverse dependency order).
  const live = {
    published: new Map<string, string>(), // target → volume
    staged: new Map<string, string>(), // staging path → volume
    attached: new Set<string>(),
    snapshots: new Set<string>(),
    volumes: [] as string[],
  };

  // Recorded before the call: a failed stage or publish may have done part of its work, and its undo is safe
  // on anything (unstage/unpublish of what is not there is OK).
  const stage = async (
    id: string,
    staging: string,
    context: Record<string, string>,
    publishContext: Record<string, string>,
  ) => {
    live.staged.set(staging, id);
    await csi.node.NodeStageVolume({
      volume_id: id,
      staging_target_path: staging,
      volume_capability: capability,
      volume_context: context,
      publish_context: publishContext,
    });
  };
  const publish = async (id: string, staging: string, target: string) => {
    live.published.set(target, id);
    await csi.node.NodePublishVolume({
      volume_id: id,
      staging_target_path: staging,
      target_path: target,
      volume_capability: capability,
      readonly: false,
    });
  };
  const contexts = new Map<string, { volume: Record<string, string>; publish: Record<string, string> }>();

  const steps: Step[] = [
    {
      title: 'GetPluginInfo + Probe',
      run: async () => {
        const info = await csi.identity.GetPluginInfo({}, IDENTITY_CALL);
        const probe = await csi.identity.Probe({}, IDENTITY_CALL);
        return `${info.name} ${info.vendor_version}, ready=${probe.ready?.value ?? true}`;
      },
    },
    {
      title: 'NodeGetInfo',
      run: async () => {
        const info = await csi.node.NodeGetInfo({});
        nodeId = info.node_id;
        return `node ${nodeId}, max ${info.max_volumes_per_node} volumes, topology ${JSON.stringify(info.accessible_topology?.segments ?? {})}`;
      },
    },
    {
      title: 'CreateVolume',
      run: async () => {
        const res = await csi.controller.CreateVolume({
          name: pvc,
          capacity_range: { required_bytes: String(GiB) },
          volume_capabilities: [capability],
          parameters: { fsType },
        });
        volumeId = res.volume!.volume_id;
        live.volumes.push(volumeId);
        contexts.set(volumeId, { volume: res.volume!.volume_context, publish: {} });
        return `${volumeId}: ${size(Number(res.volume!.capacity_bytes))}, context ${JSON.stringify(res.volume!.volume_context)}`;
      },
    },
    {
      title: 'ControllerPublishVolume',
      run: async () => {
        live.attached.add(volumeId);
        const res = await csi.controller.ControllerPublishVolume({
          volume_id: volumeId,
          node_id: nodeId,
          volume_capability: capability,
          readonly: false,
        });
        contexts.get(volumeId)!.publish = res.publish_context;
        return `${volumeId} mapped to ${nodeId} ${JSON.stringify(res.publish_context)}`;
      },
    },
    {
      title: 'NodeStageVolume',
      run: async () => {
        const c = contexts.get(volumeId)!;
        await stage(volumeId, paths.staging, c.volume, c.publish);
        return `attached with sds_cli, formatted ${fsType}, mounted at ${paths.staging}`;
      },
    },
    {
      title: 'NodePublishVolume',
      run: async () => {
        await publish(volumeId, paths.staging, paths.target);
        sizeBefore = await dfBytes(paths.target);
        return `bind-mounted at ${paths.target} (df: ${size(sizeBefore)})`;
      },
    },
    {
      title: 'write a file',
      run: async () => {
        await writeFile(join(paths.target, 'hello.txt'), message);
        const { open } = await import('node:fs/promises');
        const handle = await open(join(paths.target, 'hello.txt'), 'r');
        await handle.sync();
        await handle.close();
        return `hello.txt (${message.length} bytes) written and synced`;
      },
    },
    {
      title: 'CreateSnapshot',
      run: async () => {
        const res = await csi.controller.CreateSnapshot({ name: snap, source_volume_id: volumeId });
        snapshotId = res.snapshot!.snapshot_id;
        live.snapshots.add(snapshotId);
        return `${snapshotId} of ${volumeId}, ready=${res.snapshot!.ready_to_use}`;
      },
    },
    {
      title: 'CreateVolume from snapshot',
      run: async () => {
        const res = await csi.controller.CreateVolume({
          name: clone,
          capacity_range: { required_bytes: String(GiB) },
          volume_capabilities: [capability],
          parameters: { fsType, cloneMode: 'linked' },
          volume_content_source: { snapshot: { snapshot_id: snapshotId } },
        });
        cloneId = res.volume!.volume_id;
        live.volumes.push(cloneId);
        contexts.set(cloneId, { volume: res.volume!.volume_context, publish: {} });
        return `${cloneId}: linked clone of ${snapshotId}, ${size(Number(res.volume!.capacity_bytes))}`;
      },
    },
    {
      title: 'ControllerPublishVolume (clone)',
      run: async () => {
        live.attached.add(cloneId);
        const res = await csi.controller.ControllerPublishVolume({
          volume_id: cloneId,
          node_id: nodeId,
          volume_capability: capability,
          readonly: false,
        });
        contexts.get(cloneId)!.publish = res.publish_context;
        return `${cloneId} mapped to ${nodeId}`;
      },
    },
    {
      title: 'NodeStageVolume (clone)',
      run: async () => {
        const c = contexts.get(cloneId)!;
        await stage(cloneId, paths.cloneStaging, c.volume, c.publish);
        return `mounted at ${paths.cloneStaging}${fsType === 'xfs' ? " (nouuid: it shares its source's XFS UUID)" : ''}`;
      },
    },
    {
      title: 'NodePublishVolume (clone)',
      run: async () => {
        await publish(cloneId, paths.cloneStaging, paths.cloneTarget);
        return `bind-mounted at ${paths.cloneTarget}`;
      },
    },
    {
      title: 'read the file from the clone',
      run: async () => {
        const text = await readFile(join(paths.cloneTarget, 'hello.txt'), 'utf8');
        if (text !== message)
          throw new Error(`the clone holds ${JSON.stringify(text)}, expected ${JSON.stringify(message)}`);
        return `hello.txt matches: ${JSON.stringify(text.trim())}`;
      },
    },
    {
      title: 'ControllerExpandVolume',
      run: async () => {
        const res = await csi.controller.ControllerExpandVolume({
          volume_id: volumeId,
          capacity_range: { required_bytes: String(2 * GiB) },
          volume_capability: capability,
        });
        return `${volumeId} → ${size(Number(res.capacity_bytes))}, node_expansion_required=${res.node_expansion_required}`;
      },
    },
    {
      title: 'NodeExpandVolume (online)',
      run: async () => {
        const res = await csi.node.NodeExpandVolume({
          volume_id: volumeId,
          volume_path: paths.target,
          staging_target_path: paths.staging,
          volume_capability: capability,
          capacity_range: { required_bytes: String(2 * GiB) },
        });
        const after = await dfBytes(paths.target);
        return `capacity ${size(Number(res.capacity_bytes))}; df at the pod's path: ${size(sizeBefore)} → ${size(after)} while mounted`;
      },
    },
    {
      title: 'NodeGetVolumeStats',
      run: async () => {
        const stats = await csi.node.NodeGetVolumeStats({
          volume_id: volumeId,
          volume_path: paths.target,
          staging_target_path: paths.staging,
        });
        const bytes = stats.usage.find((u) => u.unit === 'BYTES');
        const inodes = stats.usage.find((u) => u.unit === 'INODES');
        return `used ${size(Number(bytes?.used ?? 0))} of ${size(Number(bytes?.total ?? 0))}, inodes ${inodes?.used}/${inodes?.total}, condition: ${stats.volume_condition?.message}`;
      },
    },
    {
      title: 'NodeUnpublishVolume ×2',
      run: async () => {
        for (const [target, id] of [...live.published]) {
          await csi.node.NodeUnpublishVolume({ volume_id: id, target_path: target });
          live.published.delete(target);
        }
        return "both pods' bind mounts removed";
      },
    },
    {
      title: 'NodeUnstageVolume ×2',
      run: async () => {
        for (const [staging, id] of [...live.staged]) {
          await csi.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
          live.staged.delete(staging);
        }
        return 'unmounted and detached with sds_cli';
      },
    },
    {
      title: 'ControllerUnpublishVolume ×2',
      run: async () => {
        for (const id of [...live.attached]) {
          await csi.controller.ControllerUnpublishVolume({ volume_id: id, node_id: nodeId });
          live.attached.delete(id);
        }
        return `both volumes unmapped from ${nodeId}`;
      },
    },
    {
      title: 'DeleteVolume (clone), DeleteSnapshot, DeleteVolume',
      run: async () => {
        await csi.controller.DeleteVolume({ volume_id: cloneId });
        live.volumes = live.volumes.filter((v) => v !== cloneId);
        await csi.controller.DeleteSnapshot({ snapshot_id: snapshotId });
        live.snapshots.delete(snapshotId);
        await csi.controller.DeleteVolume({ volume_id: volumeId });
        live.volumes = live.volumes.filter((v) => v !== volumeId);
        return `${cloneId}, ${snapshotId} and ${volumeId} deleted`;
      },
    },
  ];

  let failed = false;
  const width = Math.max(...steps.map((s) => s.title.length));
  try {
    for (const [i, step] of steps.entries()) {
      if (stopReason) {
        out(`interrupted (${stopReason}) before step ${i + 1}/${steps.length}\n`);
        failed = true;
        break;
      }
      const t0 = process.hrtime.bigint();
      const label = `${String(i + 1).padStart(2)}/${steps.length}  ${step.title.padEnd(width)}`;
      try {
        const detail = await step.run();
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        out(`${label}  ${ms.toFixed(0).padStart(5)} ms  ${detail}\n`);
      } catch (err) {
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        out(`${label}  ${ms.toFixed(0).padStart(5)} ms  FAILED: ${(err as Error).message}\n`);
        failed = true;
        break;
      }
    }
  } finally {
    if (failed && own && (own.child.exitCode !== null || (await probeState(csi)) === 'nothing')) {
      // Our driver was stopped under us (SIGTERM to it): start it again on the same data to undo the mounts.
      out('the driver the demo started has exited; starting it again to clean up\n');
      try {
        csi.close();
        await stopDriver(own.child);
        own = await startDriver(work);
        csi = connect(own.socket);
      } catch (err) {
        out(`cannot start it again: ${(err as Error).message}\n`);
      }
    }
    if (failed) await cleanUp(csi, live, nodeId);
    csi.close();
    if (own) {
      const t0 = Date.now();
      await stopDriver(own.child);
      out(`\nstopped the driver it started (${Date.now() - t0} ms)\n`);
      const tail = own.log().trim();
      if (failed && tail) out(`driver log (tail):\n${tail.split('\n').slice(-30).join('\n')}\n`);
    }
    await removeWorkDir(work);
  }
  out(
    `\n${stopReason ? `demo interrupted (${stopReason})` : failed ? 'demo FAILED' : 'demo done'} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
  );
  return failed ? 1 : 0;
}

/** Removes the demo's directory, unless something is still mounted in it (rm would reach into a volume). */
async function removeWorkDir(work: string): Promise<void> {
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((line) => line.split(' ')[4]?.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p): p is string => p !== undefined && (p === work || p.startsWith(`${work}/`)));
  if (mounts.length > 0) {
    out(`left ${work} in place: still mounted there: ${mounts.join(', ')}\n`);
    return;
  }
  await rm(work, { recursive: true, force: true });
}

/** After a failed step: removes whatever the demo made, in reverse dependency order, reporting each attempt. */
async function cleanUp(
  csi: Csi,
  live: {
    published: Map<string, string>;
    staged: Map<string, string>;
    attached: Set<string>;
    snapshots: Set<string>;
    volumes: string[];
  },
  nodeId: string,
): Promise<void> {
  const attempt = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
      out(`cleanup: ${what}\n`);
    } catch (err) {
      out(`cleanup: ${what} FAILED: ${(err as Error).message}\n`);
    }
  };
  for (const [target, id] of live.published)
    await attempt(`unpublish ${target}`, () => csi.node.NodeUnpublishVolume({ volume_id: id, target_path: target }));
  for (const [staging, id] of live.staged)
    await attempt(`unstage ${staging}`, () =>
      csi.node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging }),
    );
  for (const id of live.attached)
    await attempt(`unmap ${id}`, () => csi.controller.ControllerUnpublishVolume({ volume_id: id, node_id: nodeId }));
  for (const id of [...live.volumes].reverse().slice(0, -1))
    await attempt(`delete ${id}`, () => csi.controller.DeleteVolume({ volume_id: id }));
  for (const id of live.snapshots)
    await attempt(`delete ${id}`, () => csi.controller.DeleteSnapshot({ snapshot_id: id }));
  const first = live.volumes[0];
  if (first) await attempt(`delete ${first}`, () => csi.controller.DeleteVolume({ volume_id: first }));
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`demo: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
