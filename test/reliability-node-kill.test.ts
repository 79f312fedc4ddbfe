// kill -9 of the node plugin (a --mode=node driver process) at seeded random moments: inside
// NodeStageVolume, between stage and publish, inside NodePublishVolume. The plugin is restarted and kubelet's
// repeat of the interrupted call must complete (bounded retries, only transient codes in between); the
// volume is then really published (data written through the target is read back through the staging
// mount), and unpublish + unstage leave no mount, no attachment and no loop device.
// A container restart kills every process of the plugin, so the kill takes the driver's children too
// (mkfs, mount, sds_cli) — see killProcessTree. Rounds and seed: NODE_KILL_ROUNDS, NODE_KILL_SEED.
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { VolumeCapability } from '../src/generated/csi/v1/VolumeCapability.js';
import { mountsAt, readMountTable } from '../src/mount/index.js';
import { call } from './support/emulator.js';
import { seededRandom, poolLoopDevices } from './support/backend-audit.js';
import { settle, type NodeApi } from './support/csi-client.js';
import { soakSettings } from './support/soak-settings.js';
import { internalAnswers, type Stack } from './support/stack.js';
import { stackForSuite } from './support/suite-stack.js';

const run = promisify(execFile);
const { ROUNDS, SEED } = soakSettings('NODE_KILL', { ROUNDS: 8, SEED: 1337 });
const MAX_RETRIES = 60;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every process below `pid`, from ps. */
async function descendants(pid: number): Promise<number[]> {
  const { stdout } = await run('ps', ['-e', '-o', 'pid=,ppid=']);
  const children = new Map<number, number[]>();
  for (const line of stdout.trim().split('\n')) {
    const [p, pp] = line.trim().split(/\s+/).map(Number) as [number, number];
    (children.get(pp) ?? children.set(pp, []).get(pp)!).push(p);
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

/**
 * kill -9 of the plugin as a container restart does it: the process and everything it started. With
 * NODE_KILL_MAIN_ONLY=1 only the driver process dies and its children run on (a harsher variant: the
 * repeat may meet an orphaned mkfs or mount still at work).
 */
async function killProcessTree(stack: Stack): Promise<number> {
  const pid = stack.driverProcess()!.pid!;
  const tree = process.env.NODE_KILL_MAIN_ONLY ? [pid] : [pid, ...(await descendants(pid))];
  // Stopped first so nothing forks while we kill.
  for (const p of tree) {
    try {
      process.kill(p, 'SIGSTOP');
    } catch {
      // already gone
    }
  }
  for (const p of process.env.NODE_KILL_MAIN_ONLY ? tree : [...new Set([...tree, ...(await descendants(pid))])]) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await stack.killDriver();
  return tree.length - 1;
}

const TRANSIENT = new Set(['ABORTED', 'UNAVAILABLE', 'DEADLINE_EXCEEDED']);

async function converge(what: string, attempt: () => Promise<unknown>): Promise<number> {
  for (let n = 1; ; n++) {
    const outcome = await settle(attempt());
    if (outcome.ok) return n;
    if (!TRANSIENT.has(outcome.codeName) || n >= MAX_RETRIES)
      throw new Error(`${what}: ${outcome.codeName} ${outcome.message} (attempt ${n})`);
    await sleep(100);
  }
}

async function mountsUnder(dir: string) {
  return (await readMountTable()).filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(`${dir}/`));
}

describe(`kill -9 of the node plugin around stage and publish: ${ROUNDS} seeded rounds (seed ${SEED})`, () => {
  let stack: Stack;
  stackForSuite({ mode: 'node', pools: ['pool0:4G'] }, (started) => (stack = started));

  it(
    'the repeated call completes, the volume is usable, and unpublish + unstage clean up',
    async () => {
      const rand = seededRandom(SEED);
      // How long each call takes here, so the kills land inside them (a fraction of the measured time).
      const took = { stage: 0, publish: 0 };
      {
        const cap: VolumeCapability = { mount: { fs_type: 'ext4' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
        const kubelet = join(stack.dir, 'kubelet', 'calibration');
        await run('mkdir', ['-p', join(kubelet, 'globalmount'), join(kubelet, 'pods')]);
        expect(
          (await call(stack.vbsSocket, 'CREATE_VOLUME_REQ', { vol_name: 'calibration', vol_size: 320 })).retcode,
        ).toBe(0);
        expect(
          (await call(stack.vbsSocket, 'MAP_VOLUME_REQ', { vol_name: 'calibration', host_id: stack.hostId })).retcode,
        ).toBe(0);
        let t = Date.now();
        await stack.csi.node.NodeStageVolume({
          volume_id: 'calibration',
          staging_target_path: join(kubelet, 'globalmount'),
          volume_capability: cap,
        });
        took.stage = Date.now() - t;
        t = Date.now();
        await stack.csi.node.NodePublishVolume({
          volume_id: 'calibration',
          staging_target_path: join(kubelet, 'globalmount'),
          target_path: join(kubelet, 'pods', 'mount'),
          volume_capability: cap,
        });
        took.publish = Date.now() - t;
        await stack.csi.node.NodeUnpublishVolume({
          volume_id: 'calibration',
          target_path: join(kubelet, 'pods', 'mount'),
        });
        await stack.csi.node.NodeUnstageVolume({
          volume_id: 'calibration',
          staging_target_path: join(kubelet, 'globalmount'),
        });
        expect(
          (await call(stack.vbsSocket, 'UNMAP_VOLUME_REQ', { vol_name: 'calibration', host_id: stack.hostId })).retcode,
        ).toBe(0);
        expect((await call(stack.vbsSocket, 'DELETE_VOLUME_REQ', { vol_name: 'calibration' })).retcode).toBe(0);
      }
      const figures = {
        took,
        rounds: ROUNDS,
        seed: SEED,
        phases: {} as Record<string, number>,
        killedChildren: 0,
        repeatAttempts: 0,
        firstCodes: {} as Record<string, number>,
      };
      for (let round = 0; round < ROUNDS; round++) {
        const phase = (['stage', 'between', 'publish'] as const)[round % 3]!;
        const block = rand() < 0.25;
        const fsType = rand() < 0.5 ? 'ext4' : 'xfs';
        const cap: VolumeCapability = block
          ? { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } }
          : { mount: { fs_type: fsType }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
        const volume = `vol-nodekill-${round}`;
        const kubelet = join(stack.dir, 'kubelet', volume);
        const staging = join(kubelet, 'globalmount');
        const target = join(kubelet, 'pods', 'pod-1', block ? 'dev' : 'mount');
        await run('mkdir', ['-p', staging, join(kubelet, 'pods', 'pod-1')]);
        expect((await call(stack.vbsSocket, 'CREATE_VOLUME_REQ', { vol_name: volume, vol_size: 320 })).retcode).toBe(0);
        expect(
          (await call(stack.vbsSocket, 'MAP_VOLUME_REQ', { vol_name: volume, host_id: stack.hostId })).retcode,
        ).toBe(0);
        const delay = Math.floor(rand() * (phase === 'stage' ? took.stage : took.publish));
        const where = `round ${round} (seed ${SEED}): kill ${phase === 'between' ? 'between stage and publish' : `${delay} ms into ${phase}`}, ${block ? 'block' : fsType}`;
        figures.phases[phase] = (figures.phases[phase] ?? 0) + 1;

        let node: NodeApi = stack.csi.node;
        const stage = () =>
          node.NodeStageVolume({ volume_id: volume, staging_target_path: staging, volume_capability: cap });
        const publish = () =>
          node.NodePublishVolume({
            volume_id: volume,
            staging_target_path: staging,
            target_path: target,
            volume_capability: cap,
          });
        const restart = async () => {
          await stack.startDriver();
          node = stack.csi.node;
        };

        /** Kills the plugin `delay` ms into `send`, restarts it and repeats `send` (named `method`) until it succeeds. */
        const killDuring = async (method: string, send: () => Promise<unknown>) => {
          const first = settle(send());
          await sleep(delay);
          figures.killedChildren += await killProcessTree(stack);
          const o = await first;
          figures.firstCodes[o.ok ? 'OK' : o.codeName] = (figures.firstCodes[o.ok ? 'OK' : o.codeName] ?? 0) + 1;
          await restart();
          figures.repeatAttempts += await converge(`${where}: repeated ${method}`, send);
        };

        if (phase === 'stage') {
          await killDuring('NodeStageVolume', stage);
          await converge(`${where}: NodePublishVolume`, publish);
        } else if (phase === 'between') {
          await stage();
          figures.killedChildren += await killProcessTree(stack);
          await restart();
          figures.repeatAttempts += await converge(`${where}: repeated NodeStageVolume`, stage);
          await converge(`${where}: NodePublishVolume`, publish);
        } else {
          await stage();
          await killDuring('NodePublishVolume', publish);
        }

        // Published for real: one mount at the target, of the volume's device.
        const device = (await call(stack.vbsSocket, 'QUERY_VOLUME_HOSTS_REQ', { vol_name: volume })).record(
          'host0',
        ).dev_addr!;
        expect(device, where).toMatch(/^\/dev\/loop\d+$/);
        const atTarget = mountsAt(await readMountTable(), target);
        expect(atTarget.length, where).toBe(1);
        if (block) {
          await writeFile(target, `round ${round}`, { flag: 'r+' });
          const head = Buffer.alloc(16);
          const fd = await import('node:fs/promises').then((fs) => fs.open(device, 'r'));
          await fd.read(head, 0, 16, 0);
          await fd.close();
          expect(head.toString('utf8').replace(/\0+$/, ''), where).toBe(`round ${round}`);
        } else {
          expect(atTarget[0]!.fsType, where).toBe(fsType);
          await writeFile(join(target, 'proof'), `round ${round}`);
          expect(await readFile(join(staging, 'proof'), 'utf8'), where).toBe(`round ${round}`);
        }

        await converge(`${where}: NodeUnpublishVolume`, () =>
          node.NodeUnpublishVolume({ volume_id: volume, target_path: target }),
        );
        await converge(`${where}: NodeUnstageVolume`, () =>
          node.NodeUnstageVolume({ volume_id: volume, staging_target_path: staging }),
        );
        expect(await mountsUnder(kubelet), where).toEqual([]);
        expect(await poolLoopDevices(stack.emulatorDataDir), where).toEqual([]);
        expect(
          (await call(stack.vbsSocket, 'UNMAP_VOLUME_REQ', { vol_name: volume, host_id: stack.hostId })).retcode,
        ).toBe(0);
        expect((await call(stack.vbsSocket, 'DELETE_VOLUME_REQ', { vol_name: volume })).retcode).toBe(0);
      }
      console.log(`[reliability] node plugin kill -9: ${JSON.stringify(figures)}`);
    },
    60_000 + ROUNDS * 15_000,
  );

  it('never answered INTERNAL or UNKNOWN', () => {
    expect(internalAnswers(stack)).toEqual([]);
  });
});
