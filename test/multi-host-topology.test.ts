// Topology end to end, through the driver's gRPC: three hosts of one back end, pool gold seen by host-a and
// host-b only and pool silver by host-c only (--pool-hosts). A node plugin per host and a controller are
// driver processes. On the extended level CreateVolume places a volume in a pool its requisite hosts see and
// reports that pool's hosts as accessible_topology; GetCapacity answers per host; ControllerPublishVolume to
// a host that does not see the pool is FAILED_PRECONDITION, and the volume is then staged and written on a
// host that does. The original level has no hosts in pool records and no mapping: the driver claims no
// topology, and the stage on a host that does not see the LUN fails (INTERNAL: the original CLI's bare
// ret_code=1 gives no reason) with a message saying what it may mean.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure } from './support/csi-client.js';
import {
  attachOn,
  detachFrom,
  kill9Driver,
  kubeletPaths,
  startDriverProcess,
  type DriverProcess,
} from './support/driver-process.js';
import { forceCleanup, leftovers, MiB, SDS_CLI } from './support/emulator.js';
import { startHosts, type Hosts } from './support/hosts.js';

const HOSTS = ['host-a', 'host-b', 'host-c'] as const;
type HostName = (typeof HOSTS)[number];
const KEY = 'topology.sdshypervisor.io/host';
const POOL_ARGS = ['--pool', 'gold:4G', '--pool', 'silver:2G', '--pool-hosts', 'gold=host-a+host-b,silver=host-c'];
const mountCap = { mount: { fs_type: 'ext4' }, access_mode: { mode: 'SINGLE_NODE_WRITER' as const } };
const at = (host: string) => ({ segments: { [KEY]: host } });

interface Cluster {
  hosts: Hosts;
  controller: DriverProcess;
  nodes: Map<HostName, DriverProcess>;
}

async function startCluster(protocol: 'original' | 'extended'): Promise<Cluster> {
  const hosts = await startHosts(HOSTS, { args: POOL_ARGS, protocol });
  const nodes = new Map<HostName, DriverProcess>();
  const level = ['--vbs-protocol', protocol];
  const cluster = { hosts, nodes } as Cluster;
  try {
    for (const h of HOSTS) {
      const front = hosts.fronts.get(h)!.info;
      nodes.set(
        h,
        await startDriverProcess(`node-${h}`, {
          dir: hosts.daemon.dir,
          args: ['--mode=node', '--vbs-url', `unix://${front.controlSocket}`, '--sds-cli', SDS_CLI, ...level],
          env: { SDS_KV_SOCKET: front.kvSocket },
        }),
      );
    }
    cluster.controller = await startDriverProcess('controller', {
      dir: hosts.daemon.dir,
      args: ['--mode=controller', '--vbs-url', `unix://${hosts.fronts.get('host-a')!.info.controlSocket}`, ...level],
    });
  } catch (err) {
    await stopCluster(cluster);
    throw err;
  }
  return cluster;
}

async function stopCluster(c: Partial<Cluster> | undefined): Promise<void> {
  if (!c?.hosts) return;
  await kill9Driver(c.controller);
  for (const d of c.nodes?.values() ?? []) await kill9Driver(d);
  await c.hosts.stop();
  const left = leftovers(c.hosts.daemon.dir);
  forceCleanup(c.hosts.daemon.dir);
  expect(left).toEqual({ loops: [], mounts: [] });
}

/** ControllerPublish, NodeStage and NodePublish of a mount volume on `h`; the mounted target. */
const stageAndPublish = (c: Cluster, h: HostName, id: string) =>
  attachOn(c.controller.csi.controller, c.nodes.get(h)!.csi.node, c.hosts.daemon.dir, h, id, mountCap);
const unpublishAndUnstage = (c: Cluster, h: HostName, id: string) =>
  detachFrom(c.controller.csi.controller, c.nodes.get(h)!.csi.node, c.hosts.daemon.dir, h, id);

/** A 32 MiB volume in pool gold (seen by host-a and host-b). */
async function createInGold(c: Cluster, name: string) {
  const { volume } = await c.controller.csi.controller.CreateVolume({
    name,
    parameters: { pool: 'gold' },
    volume_capabilities: [mountCap],
    capacity_range: { required_bytes: String(32 * MiB) },
  });
  return volume!;
}

/** A cluster for the tests of one describe block: started before them, stopped and checked for leaks after. */
function useCluster(protocol: 'original' | 'extended'): () => Cluster {
  let c: Cluster | undefined;
  beforeAll(async () => {
    c = await startCluster(protocol);
  }, 180_000);
  afterAll(() => stopCluster(c), 120_000);
  return () => c!;
}

describe('pools seen by some hosts, through the driver (extended level)', () => {
  const cluster = useCluster('extended');
  const ctl = () => cluster().controller.csi.controller;

  it('each node reports its own host as its topology', async () => {
    for (const h of HOSTS) {
      const info = await cluster().nodes.get(h)!.csi.node.NodeGetInfo({});
      expect(info.node_id).toBe(h);
      expect(info.accessible_topology?.segments).toEqual({ [KEY]: h });
    }
  });

  it('GetCapacity answers for the pools the topology host sees', async () => {
    const capacity = async (host: string, parameters: Record<string, string> = {}) =>
      Number(
        (await ctl().GetCapacity({ accessible_topology: at(host), parameters, volume_capabilities: [mountCap] }))
          .available_capacity,
      );
    // Thick capacity is the pool's free space: gold (4 GiB) serves a and b, silver (2 GiB) serves c.
    const thick = { thin: 'false' };
    const onA = await capacity('host-a', thick);
    const onC = await capacity('host-c', thick);
    expect(onA).toBeGreaterThan(3 * 1024 * MiB);
    expect(onA).toBeLessThanOrEqual(4 * 1024 * MiB);
    expect(await capacity('host-b', thick)).toBe(onA);
    expect(onC).toBeGreaterThan(1024 * MiB);
    expect(onC).toBeLessThanOrEqual(2 * 1024 * MiB);
    // A pool the host does not see offers it nothing; neither does a host no pool is seen by.
    expect(await capacity('host-a', { pool: 'silver' })).toBe(0);
    expect(await capacity('host-c', { pool: 'gold' })).toBe(0);
    expect(await capacity('host-z')).toBe(0);
  });

  it('CreateVolume places by requisite host and reports the pool hosts as accessible_topology', async () => {
    const create = (name: string, requisite: string[], parameters: Record<string, string> = {}) =>
      ctl().CreateVolume({
        name,
        parameters,
        volume_capabilities: [mountCap],
        capacity_range: { required_bytes: String(32 * MiB) },
        accessibility_requirements: { requisite: requisite.map(at), preferred: requisite.map(at) },
      });
    const onC = (await create('pvc-on-c', ['host-c'])).volume!;
    const onB = (await create('pvc-on-b', ['host-b'])).volume!;
    try {
      expect(onC.accessible_topology.map((t) => t.segments[KEY])).toEqual(['host-c']);
      expect(onB.accessible_topology.map((t) => t.segments[KEY]).sort()).toEqual(['host-a', 'host-b']);
      const pool = async (id: string) =>
        (await ctl().ControllerGetVolume({ volume_id: id })).volume?.volume_context['sdshypervisor.io/pool'];
      expect(await pool(onC.volume_id)).toBe('silver');
      expect(await pool(onB.volume_id)).toBe('gold');
      // A StorageClass pool its requisite hosts do not see: RESOURCE_EXHAUSTED naming them, nothing made.
      const refused = await failure(create('pvc-nowhere', ['host-a'], { pool: 'silver' }));
      expect(refused.codeName).toBe('RESOURCE_EXHAUSTED');
      expect(refused.message).toMatch(/no pool "silver" is reachable from the required hosts host-a/);
      const names = (await ctl().ListVolumes({})).entries.map((e) => e.volume!.volume_id);
      expect(names).not.toContain(expect.stringContaining('pvc-nowhere'));
      expect(names).toHaveLength(2);
    } finally {
      for (const v of [onC, onB]) await ctl().DeleteVolume({ volume_id: v.volume_id });
    }
  });

  it('a publish to a host that does not see the pool is refused; one that does stages and writes', async () => {
    const volume = await createInGold(cluster(), 'pvc-gold');
    const id = volume.volume_id;
    try {
      const refused = await failure(
        ctl().ControllerPublishVolume({ volume_id: id, node_id: 'host-c', volume_capability: mountCap }),
      );
      expect(refused.codeName).toBe('FAILED_PRECONDITION');
      expect(refused.message).toMatch(/host-c/);
      const target = await stageAndPublish(cluster(), 'host-b', id);
      const text = `on host-b ${randomBytes(6).toString('hex')}`;
      writeFileSync(join(target, 'data.txt'), text);
      expect(readFileSync(join(target, 'data.txt'), 'utf8')).toBe(text);
      await unpublishAndUnstage(cluster(), 'host-b', id);
    } finally {
      await ctl().DeleteVolume({ volume_id: id });
    }
  });
});

describe('pools seen by some hosts, through the driver (original level)', () => {
  const cluster = useCluster('original');
  const ctl = () => cluster().controller.csi.controller;

  it('claims no topology; a stage where the LUN is not seen fails saying why it may and leaves nothing', async () => {
    const volume = await createInGold(cluster(), 'pvc-gold-original');
    const id = volume.volume_id;
    try {
      // Records of the original level name no hosts: no node affinity the driver could stand behind.
      expect(volume.accessible_topology).toEqual([]);
      // No mapping on this level: the publish succeeds, the attach on host-c is the back end's refusal.
      const { publish_context } = await ctl().ControllerPublishVolume({
        volume_id: id,
        node_id: 'host-c',
        volume_capability: mountCap,
      });
      const p = kubeletPaths(cluster().hosts.daemon.dir, 'host-c', id, false);
      const refused = await failure(
        cluster().nodes.get('host-c')!.csi.node.NodeStageVolume({
          volume_id: id,
          staging_target_path: p.staging,
          volume_capability: mountCap,
          publish_context,
        }),
      );
      // The original CLI prints a bare ret_code=1: the driver cannot tell why, and says what it may mean.
      expect(refused.codeName).toBe('INTERNAL');
      expect(refused.message).toMatch(/sds_cli attach pvc-gold-original failed: ret_code=1 \(.*may not see the pool/);
      expect(leftovers(cluster().hosts.daemon.dir).loops.filter((l) => l.includes('/volumes/'))).toEqual([]);
      await ctl().ControllerUnpublishVolume({ volume_id: id, node_id: 'host-c' });
      // host-a sees gold: the same volume stages and takes a write there.
      const target = await stageAndPublish(cluster(), 'host-a', id);
      writeFileSync(join(target, 'data.txt'), 'original level');
      expect(readFileSync(join(target, 'data.txt'), 'utf8')).toBe('original level');
      await unpublishAndUnstage(cluster(), 'host-a', id);
    } finally {
      await ctl().DeleteVolume({ volume_id: id });
    }
  });
});
