// A pool seen by a subset of hosts (--pool-hosts): its record lists only those hosts, QUERY_HOSTS still
// lists every host, a map of one of its volumes to another host is refused NOT_SUPPORTED naming volume, pool
// and host, and sds_cli attach there is refused on both protocol levels (the original one has no mapping).
// A setting naming a pool or host the emulator does not have stops it at startup.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../emulator/config.js';
import { KvCode } from '../src/protocol/kv.js';
import { RetCode } from '../src/protocol/vbs.js';
import { call, EMULATOR_MAIN, forceCleanup, makeTempDir, sdsCli } from './support/emulator.js';
import { startHosts, stopAndCheckHosts, type Hosts } from './support/hosts.js';

const POOL_ARGS = ['--pool', 'gold:1G', '--pool', 'silver:1G', '--pool-hosts', 'gold=host-a+host-b,silver=host-c'];

describe('--pool-hosts settings', () => {
  const base = ['--data-dir', '/var/tmp/pool-hosts-unused', '--pool', 'gold', '--pool', 'silver'];
  const hostArgs = ['--host-id', 'host-a', '--data-host', 'host-b', '--extra-host', 'host-c'];
  const load = (...extra: string[]) => loadConfig([...base, ...hostArgs, ...extra], {}).config!;
  const refusal = (...extra: string[]): string => {
    try {
      load(...extra);
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    throw new Error(`--pool-hosts ${extra.join(' ')} was accepted`);
  };

  it('names the hosts of the pools it lists; the others are seen by every host', () => {
    expect(load().poolHosts).toEqual({});
    expect(load('--pool-hosts', 'gold=host-a+host-b', '--pool-hosts', 'silver=host-c').poolHosts).toEqual({
      gold: ['host-a', 'host-b'],
      silver: ['host-c'],
    });
    expect(load('--pool-hosts', 'gold=host-a,silver=host-b+host-c').poolHosts).toEqual({
      gold: ['host-a'],
      silver: ['host-b', 'host-c'],
    });
    const fromEnv = loadConfig([...base, ...hostArgs], { SDS_POOL_HOSTS: 'silver=host-b+host-c' }).config!;
    expect(fromEnv.poolHosts).toEqual({ silver: ['host-b', 'host-c'] });
  });

  it('refuses unknown pools and hosts, bad syntax and a pool named twice, naming the setting', () => {
    expect(refusal('--pool-hosts', 'bronze=host-a')).toMatch(/--pool-hosts \(SDS_POOL_HOSTS\): no pool bronze/);
    expect(refusal('--pool-hosts', 'gold=host-a+host-z')).toMatch(/pool gold: unknown host host-z/);
    expect(refusal('--pool-hosts', 'gold')).toMatch(/--pool-hosts.*"gold" is not pool=host\+host/);
    expect(refusal('--pool-hosts', 'gold=host-a+')).toMatch(/is not pool=host\+host/);
    expect(refusal('--pool-hosts', 'gold=host a')).toMatch(/must match/);
    expect(refusal('--pool-hosts', 'gold=host-a', '--pool-hosts', 'gold=host-b')).toMatch(/gold is named twice/);
  });

  it('the daemon stops at startup with the reason', () => {
    const dir = makeTempDir();
    try {
      const r = spawnSync(
        process.execPath,
        [EMULATOR_MAIN, '--data-dir', join(dir, 'data'), '--pool', 'gold:1G', '--pool-hosts', 'gold=nobody'],
        { encoding: 'utf8', timeout: 30_000 },
      );
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/setting --pool-hosts \(SDS_POOL_HOSTS\): pool gold: unknown host nobody/);
    } finally {
      forceCleanup(dir);
    }
  });
});

describe('a pool seen by some hosts (extended level)', () => {
  let hosts: Hosts;
  const front = (h: string) => hosts.fronts.get(h)!.info;

  beforeAll(async () => {
    hosts = await startHosts(['host-a', 'host-b', 'host-c'], { args: POOL_ARGS });
  }, 120_000);

  afterAll(async () => {
    if (!hosts) return;
    expect(await stopAndCheckHosts(hosts)).toEqual({ loops: [], mounts: [] });
  }, 120_000);

  it('pool records list only the hosts that see the pool; the host list is every host', async () => {
    const pools = await call(front('host-c').controlSocket, 'QUERY_POOLS_CAPABILITY_REQ');
    const records = [pools.record('pool0'), pools.record('pool1')];
    const hostsOf = Object.fromEntries(records.map((r) => [r.stor_id, r.hosts]));
    expect(hostsOf).toEqual({ gold: 'host-a:host-b', silver: 'host-c' });
    const list = await call(front('host-c').controlSocket, 'QUERY_HOSTS_REQ');
    const all = Array.from({ length: Number(list.get('host_num')) }, (_, i) => list.record(`host${i}`).host_id);
    expect(all.sort()).toEqual([hosts.daemon.info.hostId, 'host-a', 'host-b', 'host-c'].sort());
  });

  it('a map to a host that does not see the pool is refused; a host that sees it maps and attaches', async () => {
    const a = front('host-a');
    const c = front('host-c');
    const made = await call(c.controlSocket, 'CREATE_VOLUME_REQ', {
      vol_name: 'golden',
      vol_size: 16,
      pool_id: 'gold',
    });
    expect(made.retcode).toBe(0);
    const refused = await call(c.controlSocket, 'MAP_VOLUME_REQ', { vol_name: 'golden', host_id: 'host-c' });
    expect(refused.retcode).toBe(RetCode.NOT_SUPPORTED);
    expect(refused.get('ret_desc')).toBe(
      'host_id: volume golden is in pool gold, which host host-c does not see (seen by host-a, host-b)',
    );
    const hostsOf = await call(a.controlSocket, 'QUERY_VOLUME_HOSTS_REQ', { vol_name: 'golden' });
    expect(hostsOf.get('host_num')).toBe('0');
    const onC = sdsCli(c.kvSocket, ['-c', 'attach', '-v', 'golden']);
    expect(onC.values.get('ret_code')).toBe(String(KvCode.NOT_MOUNT_NODE));
    expect(onC.values.get('ret_desc')).toContain('which host host-c does not see');

    expect((await call(c.controlSocket, 'MAP_VOLUME_REQ', { vol_name: 'golden', host_id: 'host-a' })).retcode).toBe(0);
    const onA = sdsCli(a.kvSocket, ['-c', 'attach', '-v', 'golden']);
    expect(onA.values.get('ret_code')).toBe('0');
    expect(onA.values.get('dev_addr')).toMatch(/^\/dev\/loop\d+$/);
    expect(sdsCli(a.kvSocket, ['-c', 'detach', '-v', 'golden']).values.get('ret_code')).toBe('0');
    expect((await call(a.controlSocket, 'UNMAP_VOLUME_REQ', { vol_name: 'golden', host_id: 'host-a' })).retcode).toBe(
      0,
    );
    expect((await call(a.controlSocket, 'DELETE_VOLUME_REQ', { vol_name: 'golden' })).retcode).toBe(0);
  });
});

describe('a pool seen by some hosts (original level)', () => {
  it('sds_cli attach works on a host that sees the pool and fails on one that does not', async () => {
    const orig = await startHosts(['host-a', 'host-b'], {
      protocol: 'original',
      args: ['--pool', 'pool0:1G', '--pool-hosts', 'pool0=host-a'],
    });
    try {
      const a = orig.fronts.get('host-a')!.info;
      const b = orig.fronts.get('host-b')!.info;
      // The original CREATE_VOLUME_REQ carries every field of the 2014 client, most of them empty.
      const blank = Object.fromEntries(
        ['reserved', 'volume_space_reserved', 'force_provision_size', 'iops', 'max_iops', 'min_iops']
          .concat(['cache_size', 'repicate_num', 'repicate_tolerant_num', 'encrypt_algorithm', 'consistency'])
          .concat(['stor_space_level', 'compress_algorithm', 'deduplication', 'snapshot', 'backup_cycle'])
          .concat(['tolerance_disk_failure', 'tolerance_cache_failure'])
          .map((k) => [k, '']),
      );
      const made = await call(a.controlSocket, 'CREATE_VOLUME_REQ', {
        vol_name: 'orig-seen',
        vol_size: '16',
        pool_id: 'pool0',
        thin_flag: '0',
        ...blank,
      });
      expect(made.retcode).toBe(0);
      const onB = sdsCli(b.kvSocket, ['-c', 'attach', '-v', 'orig-seen']);
      expect(onB.values.get('ret_code')).not.toBe('0');
      expect(onB.values.has('dev_addr')).toBe(false);
      expect(sdsCli(a.kvSocket, ['-c', 'attach', '-v', 'orig-seen']).stdout).toBe('ret_code=0\n');
      expect(sdsCli(a.kvSocket, ['-c', 'querydev', '-v', 'orig-seen']).stdout).toMatch(
        /^ret_code=0\ndev_addr=\/dev\/loop\d+\n$/,
      );
      expect(sdsCli(a.kvSocket, ['-c', 'detach', '-v', 'orig-seen']).values.get('ret_code')).toBe('0');
    } finally {
      expect(await stopAndCheckHosts(orig)).toEqual({ loops: [], mounts: [] });
    }
  }, 120_000);
});
