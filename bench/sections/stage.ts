// The node path: first stage (mkfs), stage/publish cycles, and the programs each call runs.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { connectCsi } from '../lib/clients.js';
import { mountCap, now, timed, type BenchContext } from '../lib/context.js';
import { waitProbeReady } from '../lib/probe.js';
import { cpuMs, RssSampler, sdsCliPath, spawnDriver } from '../lib/procs.js';
import { fmt, summarize } from '../lib/stats.js';
import { publishedVolume, removeVolume } from './volumes.js';

const exec = promisify(execFile);

/** First NodeStageVolume of a blank 1 GiB volume (mkfs included), ext4 and xfs; floor: the same tools by hand. */
export async function firstStage(b: BenchContext): Promise<void> {
  const { nodeCsi, emulator, dir, opt, add } = b;
  const cliEnv = { ...process.env, SDS_KV_SOCKET: emulator.kvSocket };
  for (const fsType of ['ext4', 'xfs'] as const) {
    const stage: number[] = [];
    for (let r = 0; r < opt.firstStageRepeats; r++) {
      const v = await publishedVolume(b, `first-${fsType}-${r}`, fsType);
      const staging = join(dir, `first-${fsType}-${r}`);
      const [t] = await timed(() =>
        nodeCsi.node.NodeStageVolume({
          volume_id: v.id,
          staging_target_path: staging,
          volume_capability: mountCap(fsType),
          publish_context: v.publishContext,
          volume_context: {},
        }),
      );
      stage.push(t);
      await nodeCsi.node.NodeUnstageVolume({ volume_id: v.id, staging_target_path: staging });
      await removeVolume(b, v.id);
    }
    // Floor: attach, mkfs (the driver's arguments) and mount, run by hand on a fresh volume.
    const floor: number[] = [];
    for (let r = 0; r < opt.firstStageRepeats; r++) {
      const v = await publishedVolume(b, `first-floor-${fsType}-${r}`, fsType);
      const mnt = join(dir, `first-floor-${fsType}-${r}`);
      await mkdir(mnt, { recursive: true });
      const t0 = now();
      const { stdout } = await exec(sdsCliPath(), ['-c', 'attach', '-v', v.id], { env: cliEnv });
      const dev = /dev_addr=(\S+)/.exec(stdout)?.[1];
      if (!dev) throw new Error(`sds_cli attach printed no dev_addr: ${stdout}`);
      if (fsType === 'ext4')
        await exec('mkfs.ext4', ['-F', '-q', '-b', '4096', '-E', 'lazy_itable_init=1,lazy_journal_init=1', dev]);
      else await exec('mkfs.xfs', ['-q', '-s', 'size=4096', dev]);
      await exec('mount', ['-t', fsType, ...(fsType === 'xfs' ? ['-o', 'nouuid'] : []), dev, mnt]);
      floor.push(now() - t0);
      await exec('umount', [mnt]);
      await exec(sdsCliPath(), ['-c', 'detach', '-v', v.id], { env: cliEnv });
      await removeVolume(b, v.id);
    }
    const s = summarize(stage);
    const f = summarize(floor);
    add({
      section: 'floor',
      name: `attach+mkfs+mount-${fsType}`,
      value: f.p50,
      unit: 'ms',
      latency: f,
      note: 'sds_cli attach, mkfs, mount by hand',
    });
    add({
      section: 'first-stage',
      name: `${fsType}-1GiB`,
      value: s.p50,
      unit: 'ms',
      latency: s,
      floor: { name: `attach+mkfs+mount-${fsType}`, value: f.p50, unit: 'ms' },
      ratio: s.p50 / f.p50,
    });
  }
}

/** Stage + publish + unpublish + unstage of an already-formatted volume, each call timed; and the programs each call runs. */
export async function stagePublish(b: BenchContext): Promise<void> {
  const { nodeCsi, emulator, node, dir, opt, add, notes } = b;
  const fsType = 'ext4';
  const v = await publishedVolume(b, 'stage-cycle', fsType);
  const staging = join(dir, 'kubelet', 'globalmount');
  const target = join(dir, 'kubelet', 'pods', 'mount');
  const cap = mountCap(fsType);
  const stageReq = {
    volume_id: v.id,
    staging_target_path: staging,
    volume_capability: cap,
    publish_context: v.publishContext,
    volume_context: {},
  };
  const publishReq = { ...stageReq, target_path: target, readonly: false };
  await nodeCsi.node.NodeStageVolume(stageReq); // formats
  await nodeCsi.node.NodeUnstageVolume({ volume_id: v.id, staging_target_path: staging });

  const sampler = new RssSampler([node.pid]);
  let nodeCpu0 = cpuMs(node.pid);
  const t = cycleSamples();
  const emptyRpc: number[] = [];
  for (let i = 0; i < opt.iterations + 2; i++) {
    const [a] = await timed(() => nodeCsi.node.NodeStageVolume(stageReq));
    const [b] = await timed(() => nodeCsi.node.NodePublishVolume(publishReq));
    const [c] = await timed(() => nodeCsi.node.NodeUnpublishVolume({ volume_id: v.id, target_path: target }));
    const [d] = await timed(() => nodeCsi.node.NodeUnstageVolume({ volume_id: v.id, staging_target_path: staging }));
    // The gRPC share of each call above: an RPC that does nothing, on the same plugin, in the same rhythm.
    const [e] = await timed(() => nodeCsi.node.NodeGetCapabilities({}));
    if (i >= 2) emptyRpc.push(e);
    if (i < 2) {
      nodeCpu0 = cpuMs(node.pid); // warm-up
      continue;
    }
    t.stage.push(a);
    t.publish.push(b);
    t.unpublish.push(c);
    t.unstage.push(d);
    t.stagePublish.push(a + b);
  }
  const peak = sampler.stop().get(node.pid) ?? NaN;
  const empty = summarize(emptyRpc);
  add({
    section: 'floor',
    name: 'node-rpc-empty',
    value: empty.p50,
    unit: 'ms',
    latency: empty,
    note: 'NodeGetCapabilities on the node plugin, once a stage cycle: the gRPC share of each node call',
  });
  const nodeCpuPerCycle = (cpuMs(node.pid) - nodeCpu0) / opt.iterations;

  // Floor: the least the machine must do for the same: attach + mount (stage), bind (publish), and back.
  const cliEnv = { ...process.env, SDS_KV_SOCKET: emulator.kvSocket };
  const f = cycleSamples();
  await mkdir(staging, { recursive: true });
  await mkdir(target, { recursive: true });
  for (let i = 0; i < opt.iterations; i++) {
    const [a] = await timed(async () => {
      const { stdout } = await exec(sdsCliPath(), ['-c', 'attach', '-v', v.id], { env: cliEnv });
      const dev = /dev_addr=(\S+)/.exec(stdout)![1]!;
      await exec('mount', ['-t', fsType, dev, staging]);
    });
    const [b] = await timed(() => exec('mount', ['--bind', staging, target]));
    const [c] = await timed(() => exec('umount', [target]));
    const [d] = await timed(async () => {
      await exec('umount', [staging]);
      await exec(sdsCliPath(), ['-c', 'detach', '-v', v.id], { env: cliEnv });
    });
    f.stage.push(a);
    f.publish.push(b);
    f.unpublish.push(c);
    f.unstage.push(d);
    f.stagePublish.push(a + b);
  }
  // What stage runs beside the floor's programs: blkid (a device holding anything is never formatted), by
  // hand, right after an attach as in NodeStageVolume.
  const probe: number[] = [];
  for (let i = 0; i < opt.iterations; i++) {
    const { stdout } = await exec(sdsCliPath(), ['-c', 'attach', '-v', v.id], { env: cliEnv });
    const dev = /dev_addr=(\S+)/.exec(stdout)![1]!;
    const [ms] = await timed(() =>
      exec('blkid', ['-p', '-o', 'export', dev], { env: { ...process.env, LC_ALL: 'C' } }),
    );
    probe.push(ms);
    await exec(sdsCliPath(), ['-c', 'detach', '-v', v.id], { env: cliEnv });
  }
  const blkid = summarize(probe);
  add({
    section: 'floor',
    name: 'blkid-by-hand',
    value: blkid.p50,
    unit: 'ms',
    latency: blkid,
    note: 'blkid -p -o export of the attached, formatted volume',
  });
  // The least a stage+publish can take with blkid kept and one gRPC call each: the sum of the medians.
  add({
    section: 'floor',
    name: 'stage+publish-least',
    value: summarize(f.stagePublish).p50 + blkid.p50 + 2 * empty.p50,
    unit: 'ms',
    note: 'stage+publish-by-hand + blkid-by-hand + 2 × node-rpc-empty (p50s)',
  });
  for (const k of ['publish', 'unpublish'] as const)
    add({
      section: 'floor',
      name: `${k}-least`,
      value: summarize(f[k]).p50 + empty.p50,
      unit: 'ms',
      note: `${k}-by-hand + node-rpc-empty (p50s)`,
    });
  for (const k of ['stage', 'publish', 'unpublish', 'unstage', 'stagePublish'] as const) {
    const floorName = `${k === 'stagePublish' ? 'stage+publish' : k}-by-hand`;
    const fs = summarize(f[k]);
    add({
      section: 'floor',
      name: floorName,
      value: fs.p50,
      unit: 'ms',
      latency: fs,
      note:
        k === 'stage'
          ? 'sds_cli attach + mount'
          : k === 'publish'
            ? 'mount --bind'
            : k === 'unstage'
              ? 'umount + sds_cli detach'
              : undefined,
    });
    const s = summarize(t[k]);
    add({
      section: 'stage',
      name: k === 'stagePublish' ? 'stage+publish' : `Node${k[0]!.toUpperCase()}${k.slice(1)}Volume`,
      value: s.p50,
      unit: 'ms',
      latency: s,
      floor: { name: floorName, value: fs.p50, unit: 'ms' },
      ratio: s.p50 / fs.p50,
      ...(k === 'stagePublish'
        ? {
            note: `the node process's own CPU per stage+publish+unpublish+unstage: ${fmt(nodeCpuPerCycle)} ms (its children not counted)`,
          }
        : {}),
    });
  }
  add({
    section: 'rss',
    name: 'node-under-load',
    value: peak,
    unit: 'MiB',
    note: 'peak during the stage/publish cycles',
  });
  const counts = await countPrograms(b, v, fsType);
  notes.push(`programs run per call (formatted ${fsType} volume): ${counts}`);
  await removeVolume(b, v.id);
}

/**
 * Which programs each node call runs: one cycle on a second node process whose PATH starts with shims that
 * log their name and exec the real tool (and whose sds_cli is such a shim).
 */
export async function countPrograms(
  b: BenchContext,
  v: { id: string; publishContext: Record<string, string> },
  fsType: string,
): Promise<string> {
  const { dir, driverBase } = b;
  const shims = join(dir, 'shims');
  const logFile = join(dir, 'shims.log');
  await mkdir(shims, { recursive: true });
  const searchPath = [
    ...(process.env.PATH ?? '').split(delimiter),
    '/usr/local/sbin',
    '/usr/local/bin',
    '/usr/sbin',
    '/usr/bin',
    '/sbin',
    '/bin',
  ];
  const tools = [
    'blkid',
    'mount',
    'umount',
    'findmnt',
    'losetup',
    'mkfs.ext4',
    'mkfs.xfs',
    'e2fsck',
    'dumpe2fs',
    'resize2fs',
    'xfs_growfs',
    'xfs_db',
    'blockdev',
  ];
  const shim = async (name: string, real: string) => {
    const path = join(shims, name);
    await writeFile(path, `#!/bin/sh\necho "${name} $*" >> '${logFile}'\nexec '${real}' "$@"\n`);
    await chmod(path, 0o755);
    return path;
  };
  for (const tool of tools) {
    const real = searchPath.map((d) => join(d, tool)).find((p) => existsSync(p));
    if (real) await shim(tool, real);
  }
  const cli = await shim('sds_cli', sdsCliPath());
  const counting = spawnDriver(
    driverBase('node', 'node-counting', {
      sdsCli: cli,
      nodeArgs: [],
      env: { PATH: `${shims}${delimiter}${process.env.PATH ?? ''}` },
    }),
  );
  const csi = connectCsi(counting.socket);
  try {
    await waitProbeReady(counting);
    const staging = join(dir, 'kubelet', 'globalmount');
    const target = join(dir, 'kubelet', 'pods', 'mount');
    const stageReq = {
      volume_id: v.id,
      staging_target_path: staging,
      volume_capability: mountCap(fsType),
      publish_context: v.publishContext,
      volume_context: {},
    };
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['NodeStageVolume', () => csi.node.NodeStageVolume(stageReq)],
      ['NodePublishVolume', () => csi.node.NodePublishVolume({ ...stageReq, target_path: target, readonly: false })],
      ['NodeUnpublishVolume', () => csi.node.NodeUnpublishVolume({ volume_id: v.id, target_path: target })],
      ['NodeUnstageVolume', () => csi.node.NodeUnstageVolume({ volume_id: v.id, staging_target_path: staging })],
    ];
    const parts: string[] = [];
    let seen = 0;
    for (const [name, call] of calls) {
      await call();
      const lines = (existsSync(logFile) ? await readFile(logFile, 'utf8') : '').split('\n').filter(Boolean);
      const mine = lines.slice(seen).map((l) => l.split(' ').slice(0, 3).join(' ').replaceAll(`${dir}/`, ''));
      seen = lines.length;
      parts.push(`${name}: ${mine.length} (${mine.join('; ') || 'none'})`);
    }
    return parts.join(' | ');
  } finally {
    csi.close();
    await counting.stop();
  }
}

/** The latencies of one stage/publish/unpublish/unstage cycle, step by step, in ms. */
function cycleSamples() {
  return {
    stage: [] as number[],
    publish: [] as number[],
    unpublish: [] as number[],
    unstage: [] as number[],
    stagePublish: [] as number[],
  };
}
