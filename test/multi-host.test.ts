// Three hosts of one back end, end to end: each host's VBS front end runs in a network namespace this test
// makes (ip netns + veth) and serves its socket API on its own namespace address, with a token; a node
// plugin per host (driver --mode=node) speaks to its own host's VBS (unix socket and KV data plane, as a
// node plugin speaks to its local VBS); the controller is given every host's TCP address. A volume is
// written on host A, moved to host B and read back; raw block is shared by A and B at once
// (MULTI_NODE_MULTI_WRITER, O_DIRECT written on one, read back on the other); host A is killed -9 (its VBS
// and node plugin), ControllerUnpublish from it forces and fences, B recovers the data byte for byte;
// A restarted finds nothing attached. Nothing is left behind.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { failure } from './support/csi-client.js';
import {
  attachOn as attachOnHost,
  detachFrom as detachFromHost,
  kill9Driver,
  kubeletPaths,
  startDriverProcess,
  type DriverProcess,
} from './support/driver-process.js';
import { forceCleanup, leftovers, SDS_CLI, sdsCli, sleep } from './support/emulator.js';
import { startFront, startHosts, type Front, type Hosts } from './support/hosts.js';

const MiB = 1024 * 1024;
const TOKEN = randomBytes(16).toString('hex');
const HOSTS = ['host-a', 'host-b', 'host-c'] as const;
type HostName = (typeof HOSTS)[number];
const tag = randomBytes(3).toString('hex');
const subnet = 10 + Math.floor(Math.random() * 200);
const ns = (i: number) => `sdsmh-${tag}-${i}`;
const addr = (i: number) => `10.213.${subnet + i}.2`;
const PORT = 10599;

let hosts: Hosts;
let controller: DriverProcess;
const nodes = new Map<HostName, DriverProcess>();
const made: string[] = [];

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: 'pipe' });
}

function makeNamespace(i: number): void {
  ip('netns', 'add', ns(i));
  made.push(ns(i));
  const outer = `smh${tag}${i}`;
  ip('link', 'add', outer, 'type', 'veth', 'peer', 'name', `smi${tag}${i}`);
  ip('link', 'set', `smi${tag}${i}`, 'netns', ns(i));
  ip('addr', 'add', `10.213.${subnet + i}.1/24`, 'dev', outer);
  ip('link', 'set', outer, 'up');
  ip('-n', ns(i), 'addr', 'add', `${addr(i)}/24`, 'dev', `smi${tag}${i}`);
  ip('-n', ns(i), 'link', 'set', `smi${tag}${i}`, 'up');
  ip('-n', ns(i), 'link', 'set', 'lo', 'up');
}

async function startNode(h: HostName, front: Front): Promise<void> {
  const i = HOSTS.indexOf(h);
  nodes.set(
    h,
    await startDriverProcess(`node-${h}`, {
      dir: hosts.daemon.dir,
      args: ['--mode=node', '--vbs-url', `tcp://${addr(i)}:${PORT}`, '--sds-cli', SDS_CLI, `--node-name=${h}`],
      env: { SDS_VBS_TOKEN: TOKEN, SDS_KV_SOCKET: front.info.kvSocket },
      netns: ns(i),
    }),
  );
}

/** Runs a tool in host `h`'s mount namespace (its node plugin's), where its volumes are mounted. */
function onHost(h: HostName, argv: string[], input?: Buffer | string): Buffer {
  const pid = nodes.get(h)!.proc.pid!;
  return execFileSync('nsenter', ['-t', String(pid), '-m', '--', ...argv], { input, maxBuffer: 16 * MiB });
}

beforeAll(async () => {
  for (let i = 0; i < HOSTS.length; i++) makeNamespace(i);
  const fronts: Record<string, { netns: string; listenHost: string; listenPort: number }> = {};
  HOSTS.forEach((h, i) => (fronts[h] = { netns: ns(i), listenHost: addr(i), listenPort: PORT }));
  hosts = await startHosts(HOSTS, { args: ['--pool', 'pool0:1G'], env: { SDS_VBS_TOKEN: TOKEN }, fronts });
  for (const h of HOSTS) await startNode(h, hosts.fronts.get(h)!);
  const urls = HOSTS.map((_, i) => `tcp://${addr(i)}:${PORT}`).join(',');
  controller = await startDriverProcess('controller', {
    dir: hosts.daemon.dir,
    args: ['--mode=controller', '--vbs-url', urls],
    env: { SDS_VBS_TOKEN: TOKEN },
  });
}, 240_000);

afterAll(async () => {
  await kill9Driver(controller);
  for (const d of nodes.values()) await kill9Driver(d);
  if (hosts) {
    await hosts.stop();
    const left = leftovers(hosts.daemon.dir);
    forceCleanup(hosts.daemon.dir);
    expect(left).toEqual({ loops: [], mounts: [] });
  }
  for (let i = 0; i < made.length; i++) {
    execFileSync('ip', ['link', 'del', `smh${tag}${i}`], { stdio: 'ignore' });
    execFileSync('ip', ['netns', 'del', made[i]!]);
  }
  expect(execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' })).not.toContain(`smh${tag}`);
  expect(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })).not.toContain(`sdsmh-${tag}`);
}, 240_000);

const ctl = () => controller.csi.controller;
const node = (h: HostName) => nodes.get(h)!.csi.node;
const mountCap = (mode: 'SINGLE_NODE_WRITER') => ({ mount: { fs_type: 'ext4' }, access_mode: { mode } });
const blockCap = { block: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' as const } };
type Cap = ReturnType<typeof mountCap> | typeof blockCap;

const root = () => hosts.daemon.dir;
const attachOn = (h: HostName, id: string, cap: Cap) => attachOnHost(ctl(), node(h), root(), h, id, cap);
const detachFrom = (h: HostName, id: string) => detachFromHost(ctl(), node(h), root(), h, id);

const directWrite = (h: HostName, device: string, file: string) =>
  onHost(h, [
    'dd',
    `if=${file}`,
    `of=${device}`,
    'bs=4096',
    'count=16',
    'oflag=direct,sync',
    'conv=notrunc',
    'status=none',
  ]);
const directRead = (h: HostName, device: string): Buffer =>
  onHost(h, ['dd', `if=${device}`, 'bs=4096', 'count=16', 'iflag=direct', 'status=none']);

it('moves a volume between namespace hosts, shares raw block, and survives the death of a host', async () => {
  for (const h of HOSTS) expect((await node(h).NodeGetInfo({})).node_id).toBe(h);

  // A file system written on A, moved to B.
  const { volume: fsVol } = await ctl().CreateVolume({
    name: 'pvc-moves',
    volume_capabilities: [mountCap('SINGLE_NODE_WRITER')],
    capacity_range: { required_bytes: String(64 * MiB) },
  });
  const fsId = fsVol!.volume_id;
  const onA = await attachOn('host-a', fsId, mountCap('SINGLE_NODE_WRITER'));
  const text = `written on host-a ${randomBytes(8).toString('hex')}`;
  onHost('host-a', ['dd', `of=${join(onA, 'data.txt')}`, 'conv=fsync', 'status=none'], text);
  // Single-node: a second host is refused while A holds it.
  expect(
    (
      await failure(
        ctl().ControllerPublishVolume({
          volume_id: fsId,
          node_id: 'host-b',
          volume_capability: mountCap('SINGLE_NODE_WRITER'),
        }),
      )
    ).codeName,
  ).toBe('FAILED_PRECONDITION');
  await detachFrom('host-a', fsId);
  const onB = await attachOn('host-b', fsId, mountCap('SINGLE_NODE_WRITER'));
  expect(onHost('host-b', ['cat', join(onB, 'data.txt')]).toString()).toBe(text);
  await detachFrom('host-b', fsId);

  // Raw block on A and B at once.
  const { volume: blockVol } = await ctl().CreateVolume({
    name: 'pvc-shared',
    volume_capabilities: [blockCap],
    capacity_range: { required_bytes: String(64 * MiB) },
  });
  const blkId = blockVol!.volume_id;
  const devA = await attachOn('host-a', blkId, blockCap);
  const devB = await attachOn('host-b', blkId, blockCap);
  const pattern = join(hosts.daemon.dir, 'pattern');
  const first = randomBytes(16 * 4096);
  writeFileSync(pattern, first);
  directWrite('host-a', devA, pattern);
  expect(directRead('host-b', devB).equals(first)).toBe(true);
  const second = randomBytes(16 * 4096);
  writeFileSync(pattern, second);
  directWrite('host-b', devB, pattern);
  expect(directRead('host-a', devA).equals(second)).toBe(true);
  // B lets go; the volume stays on A, synced.
  await detachFrom('host-b', blkId);

  // Host A dies: its VBS and its node plugin, kill -9.
  await hosts.fronts.get('host-a')!.kill9();
  await kill9Driver(nodes.get('host-a'));
  nodes.delete('host-a');
  // The controller's first address is gone: it fails over; the VBS reports A down, the unmap is forced.
  const deadline = Date.now() + 60_000;
  for (;;) {
    const r = await ctl()
      .ControllerUnpublishVolume({ volume_id: blkId, node_id: 'host-a' })
      .then(
        () => 'OK',
        (err: { details?: string }) => err.details ?? String(err),
      );
    if (r === 'OK') break;
    if (Date.now() > deadline) throw new Error(`ControllerUnpublish from the dead host: ${r}`);
    await sleep(200);
  }
  // Forced and fenced: the device A held no longer writes to the volume.
  expect(hosts.daemon.stderr()).toMatch(/"hostId":"host-a".*"force":true.*"msg":"detached"|fenced/);
  const devOnB = await attachOn('host-b', blkId, blockCap);
  expect(directRead('host-b', devOnB).equals(second)).toBe(true);

  // A comes back: its attachment is gone; kubelet's clean-up of its old paths succeeds.
  const backFront = await startFront(hosts.daemon.dataDir, 'host-a', {
    netns: ns(0),
    listenHost: addr(0),
    listenPort: PORT,
  });
  hosts.fronts.set('host-a', backFront);
  expect(sdsCli(backFront.info.kvSocket, ['-c', 'querydev', '-v', blkId]).values.get('ret_code')).not.toBe('0');
  await startNode('host-a', backFront);
  const old = kubeletPaths(root(), 'host-a', blkId, false);
  await node('host-a').NodeUnpublishVolume({ volume_id: blkId, target_path: old.target });
  await node('host-a').NodeUnstageVolume({ volume_id: blkId, staging_target_path: old.staging });

  await detachFrom('host-b', blkId);
  for (const id of [fsId, blkId]) await ctl().DeleteVolume({ volume_id: id });
  const left = leftovers(hosts.daemon.dir);
  // Only the pool's own mount, while the back end runs (afterAll checks that it goes too).
  expect(left.mounts).toEqual([join(hosts.daemon.dataDir, 'pools', 'pool0')]);
  expect(left.loops.filter((l) => l.includes('/volumes/'))).toEqual([]);
}, 300_000);
