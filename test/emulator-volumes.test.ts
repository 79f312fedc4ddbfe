// The emulator's control plane, request by request: volumes, snapshots, clones, extend, modify, pools,
// capacity accounting, mappings, pagination, and their result codes (docs/socket-api.md §1.3, §2).
import { existsSync, statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReply, type FieldInput } from '../src/protocol/vbs.js';
import {
  call,
  type Daemon,
  exchange,
  extents,
  MiB,
  snapshotPath,
  startDaemon,
  stopAndCheck,
  volumePath,
  waitGone,
} from './support/emulator.js';

describe('emulator control plane', () => {
  let d: Daemon;
  let sock: string;
  const vol = (name: string) => call(sock, 'QUERY_VOLUME_REQ', { vol_name: name });
  /** The reply code of one request. */
  const code = async (type: string, fields: Record<string, FieldInput>) => (await call(sock, type, fields)).retcode;
  /** One request that must succeed: the record it answers with. */
  const ok = async (type: string, fields: Record<string, FieldInput>, key = 'volume0') => {
    const a = await call(sock, type, fields);
    expect(a.retcode).toBe(0);
    return a.record(key);
  };

  beforeAll(async () => {
    d = await startDaemon({
      args: ['--pool', 'pool0:2G', '--pool', 'pool1:1G', '--extra-host', 'host-b', '--extra-host', 'host-c'],
    });
    sock = d.info.controlSocket;
  });

  afterAll(async () => {
    const r = await stopAndCheck(d);
    expect(r).toEqual({ code: 0, loops: [], mounts: [] });
  });

  describe('volumes', () => {
    it('creates a thin volume as a sparse file and reports its record', async () => {
      const rec = await ok('CREATE_VOLUME_REQ', { vol_name: 'v-thin', vol_size: 1024, pool_id: 'pool0', thin_flag: 1 });
      expect(rec).toMatchObject({
        status: '1',
        vol_name: 'v-thin',
        vol_size: '1024',
        pool_id: 'pool0',
        thin_flag: '1',
        alloc_size: '0',
        src_type: 'none',
        src_name: '',
        clone_type: '',
        max_iops: '0',
        max_mbps: '0',
        IOPRIORITY: '2',
        cache_policy: 'none',
        mapped_hosts: '',
        health: 'ok',
        fault_reason: '',
        snap_num: '0',
      });
      expect(Number(rec.create_time)).toBeGreaterThan(1_600_000_000);
      const st = statSync(volumePath(d, 'v-thin'));
      expect(st.size).toBe(1024 * MiB);
      expect(st.blocks).toBe(0);
      expect((await vol('v-thin')).record('volume0').vol_size).toBe('1024');
    });

    it('serves the original Cinder form with the default 25 ms quiet period', async () => {
      const r = await exchange(sock, Buffer.from('[QUERY_VOLUME_REQ]\nvol_name=v-thin\n'), { timeoutMs: 15_000 });
      expect(r.closedByServer).toBe(true);
      expect(parseReply(r.data).retcode).toBe(0);
    });

    it('answers a repeated name with -900011 and the existing record', async () => {
      const a = await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'v-thin', vol_size: 2048 });
      expect(a.retcode).toBe(-900011);
      expect(a.record('volume0')).toMatchObject({ vol_name: 'v-thin', vol_size: '1024' });
    });

    it('uses the first pool when pool_id is missing and accepts the original neutral keys', async () => {
      const a = await call(sock, 'CREATE_VOLUME_REQ', {
        vol_name: 'v-cinder',
        vol_size: 64,
        thin_flag: 1,
        reserved: '',
        volume_space_reserved: 0,
        force_provision_size: 0,
        iops: 100,
        min_iops: 10,
        cache_size: 0,
        repicate_num: 1,
        repicate_tolerant_num: 0,
        encrypt_algorithm: 0,
        consistency: 0,
        stor_space_level: 1,
        compress_algorithm: '',
        deduplication: 0,
        snapshot: 0,
        backup_cycle: 0,
        tolerance_disk_failure: 0,
        tolerance_cache_failure: 0,
        IOClASSID: 'gold',
        IOPRIORITY: 3,
        max_iops: 500,
        some_future_key: 'ignored',
      });
      expect(a.retcode).toBe(0);
      expect(a.record('volume0')).toMatchObject({
        pool_id: 'pool0',
        IOPRIORITY: '3',
        max_iops: '500',
        IOClASSID: 'gold',
      });
    });

    it.each([
      [{ vol_name: 'x1', vol_size: 0 }, -900003, 'vol_size'],
      [{ vol_name: 'x1', vol_size: 'abc' }, -900003, 'vol_size'],
      [{ vol_name: 'x1', vol_size: 67108865 }, -900003, 'vol_size'],
      [{ vol_name: 'x1' }, -900003, 'vol_size'],
      [{ vol_name: '.hidden', vol_size: 1 }, -900003, 'vol_name'],
      [{ vol_name: 'a/b', vol_size: 1 }, -900003, 'vol_name'],
      [{ vol_name: 'x'.repeat(97), vol_size: 1 }, -900003, 'vol_name'],
      [{ vol_name: 'x1', vol_size: 1, pool_id: 'nopool' }, -900010, 'pool_id'],
      [{ vol_name: 'x1', vol_size: 1, thin_flag: 2 }, -900003, 'thin_flag'],
      [{ vol_name: 'x1', vol_size: 1, encrypt_algorithm: 'aes' }, -900003, 'encrypt_algorithm'],
      [{ vol_name: 'x1', vol_size: 1, compress_algorithm: 'lz4' }, -900003, 'compress_algorithm'],
      [{ vol_name: 'x1', vol_size: 1, deduplication: 1 }, -900003, 'deduplication'],
      [{ vol_name: 'x1', vol_size: 1, repicate_num: 3 }, -900003, 'repicate_num'],
      [{ vol_name: 'x1', vol_size: 1, IOPRIORITY: 4 }, -900003, 'IOPRIORITY'],
      [{ vol_name: 'x1', vol_size: 1, cache_policy: 'writeback' }, -900003, 'cache_policy'],
      [{ vol_name: 'x1', vol_size: 1, max_mbps: -1 }, -900003, 'max_mbps'],
    ])('refuses %j with %i naming the key', async (fields, code, key) => {
      const a = await call(sock, 'CREATE_VOLUME_REQ', fields);
      expect(a.retcode).toBe(code);
      expect(a.get('ret_desc')).toMatch(new RegExp(`^${key}:`));
      expect((await vol('x1')).retcode).toBe(-900079);
    });

    it('deletes asynchronously: accepted at once, then -900079; a second delete of a gone volume is -900079', async () => {
      expect(await code('CREATE_VOLUME_REQ', { vol_name: 'v-del', vol_size: 16 })).toBe(0);
      const accepted = await call(sock, 'DELETE_VOLUME_REQ', { vol_name: 'v-del' });
      expect(accepted.retcode).toBe(0);
      // A small file goes within the reply window: the reply says so, and a query already agrees.
      expect(accepted.get('deleted')).toBe('1');
      // An empty file is unlinked inline: gone by the time the reply is read.
      expect(existsSync(volumePath(d, 'v-del'))).toBe(false);
      expect((await vol('v-del')).retcode).toBe(-900079);
      await waitGone(sock, 'QUERY_VOLUME_REQ', { vol_name: 'v-del' });
      expect(existsSync(volumePath(d, 'v-del'))).toBe(false);
      expect(await code('DELETE_VOLUME_REQ', { vol_name: 'v-del' })).toBe(-900079);
      // The name is free again.
      expect(await code('CREATE_VOLUME_REQ', { vol_name: 'v-del', vol_size: 16 })).toBe(0);
      expect(await code('DELETE_VOLUME_REQ', { vol_name: 'v-del' })).toBe(0);
      await waitGone(sock, 'QUERY_VOLUME_REQ', { vol_name: 'v-del' });
    });

    it('deletes a volume holding more than 16 MiB in the background, and still answers deleted=1', async () => {
      const before = Number(
        (await call(sock, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 1, pool_id: 'pool0' })).record('pool0')
          .provisioned_mb,
      );
      expect(await code('CREATE_VOLUME_REQ', { vol_name: 'v-big', vol_size: 64, thin_flag: 0 })).toBe(0);
      expect(statSync(volumePath(d, 'v-big')).blocks * 512).toBeGreaterThan(16 * MiB);
      const accepted = await call(sock, 'DELETE_VOLUME_REQ', { vol_name: 'v-big' });
      expect(accepted.retcode).toBe(0);
      expect(accepted.get('deleted')).toBe('1');
      expect((await vol('v-big')).retcode).toBe(-900079);
      expect(existsSync(volumePath(d, 'v-big'))).toBe(false);
      const after = Number(
        (await call(sock, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 1, pool_id: 'pool0' })).record('pool0')
          .provisioned_mb,
      );
      expect(after).toBe(before);
    });

    it('survives many create+delete pairs in parallel', async () => {
      const names = Array.from({ length: 200 }, (_, i) => `pair-${i}`);
      await Promise.all(
        names.map(async (name) => {
          expect(await code('CREATE_VOLUME_REQ', { vol_name: name, vol_size: 16 })).toBe(0);
          expect(await code('DELETE_VOLUME_REQ', { vol_name: name })).toBe(0);
          await waitGone(sock, 'QUERY_VOLUME_REQ', { vol_name: name });
        }),
      );
      const list = await call(sock, 'LIST_VOLUMES_REQ', { marker: 'pair-', limit: 1000 });
      expect(list.text).not.toContain('vol_name=pair-');
    });

    it('extends: bigger grows the file, equal is a no-op, smaller is -900014', async () => {
      expect(await code('CREATE_VOLUME_REQ', { vol_name: 'v-ext', vol_size: 100 })).toBe(0);
      const a = await ok('EXTEND_VOLUME_REQ', { vol_name: 'v-ext', vol_size: 300 });
      expect(a.vol_size).toBe('300');
      expect(statSync(volumePath(d, 'v-ext')).size).toBe(300 * MiB);
      expect(await code('EXTEND_VOLUME_REQ', { vol_name: 'v-ext', vol_size: 300 })).toBe(0);
      const smaller = await call(sock, 'EXTEND_VOLUME_REQ', { vol_name: 'v-ext', vol_size: 200 });
      expect(smaller.retcode).toBe(-900014);
      expect(smaller.get('ret_desc')).toMatch(/^vol_size:/);
      expect(await code('EXTEND_VOLUME_REQ', { vol_name: 'v-none', vol_size: 200 })).toBe(-900079);
    });

    it('modifies QoS and cache policy and reports them', async () => {
      const a = await ok('MODIFY_VOLUME_REQ', {
        vol_name: 'v-ext',
        max_iops: 1200,
        max_mbps: 80,
        IOPRIORITY: 1,
        cache_policy: 'readwrite',
      });
      expect(a).toMatchObject({
        max_iops: '1200',
        max_mbps: '80',
        IOPRIORITY: '1',
        cache_policy: 'readwrite',
      });
      const partial = await call(sock, 'MODIFY_VOLUME_REQ', { vol_name: 'v-ext', max_iops: 0 });
      expect(partial.record('volume0')).toMatchObject({ max_iops: '0', max_mbps: '80', cache_policy: 'readwrite' });
      expect(await code('MODIFY_VOLUME_REQ', { vol_name: 'v-ext', cache_policy: 'x' })).toBe(-900003);
      expect(await code('MODIFY_VOLUME_REQ', { vol_name: 'nope', max_iops: 1 })).toBe(-900079);
    });
  });

  describe('capacity', () => {
    const pool = async (id: string) =>
      (await call(sock, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 1, pool_id: id })).record('pool0');

    it('reports pool records with every field', async () => {
      const p = await pool('pool1');
      expect(p).toMatchObject({
        stor_id: 'pool1',
        raid_level: '0',
        iops: '0',
        max_oversubscription: '4.0',
        linked_clone: '1',
        pool_type: 'xfs-reflink',
        health: 'ok',
      });
      expect(p.hosts!.split(':').sort()).toEqual([d.info.hostId, 'host-b', 'host-c'].sort());
      const total = Number(p.total_capacity_mb);
      expect(total).toBeGreaterThan(900);
      expect(total).toBeLessThanOrEqual(1024);
      expect(Number(p.total_capacity)).toBe(Math.floor(total / 1024));
      expect(Number(p.thin_capacity_mb)).toBe(Math.floor(total * 4) - Number(p.provisioned_mb));
      expect(Number(p.thick_capacity_mb)).toBe(Math.min(Number(p.usable_capacity_mb), Number(p.thin_capacity_mb)));
    });

    it('returns every pool for pool_num=0, and -900010 for an unknown pool', async () => {
      const all = await call(sock, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 0 });
      expect([all.record('pool0').stor_id, all.record('pool1').stor_id]).toEqual(['pool0', 'pool1']);
      const two = await call(sock, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 2, pool_id: ['pool1', 'pool0'] });
      expect([two.record('pool0').stor_id, two.record('pool1').stor_id]).toEqual(['pool1', 'pool0']);
      expect(await code('QUERY_POOLS_CAPABILITY_REQ', { pool_num: 1, pool_id: 'zz' })).toBe(-900010);
    });

    it('counts thin volumes as provisioned only, thick volumes as allocated too', async () => {
      const before = await pool('pool1');
      expect(await code('CREATE_VOLUME_REQ', { vol_name: 'cap-thin', vol_size: 300, pool_id: 'pool1' })).toBe(0);
      const afterThin = await pool('pool1');
      expect(Number(afterThin.provisioned_mb)).toBe(Number(before.provisioned_mb) + 300);
      expect(Math.abs(Number(afterThin.usable_capacity_mb) - Number(before.usable_capacity_mb))).toBeLessThan(5);

      const thick = await ok('CREATE_VOLUME_REQ', {
        vol_name: 'cap-thick',
        vol_size: 300,
        pool_id: 'pool1',
        thin_flag: 0,
      });
      expect(thick).toMatchObject({ thin_flag: '0', alloc_size: '300' });
      expect((await vol('cap-thick')).record('volume0').alloc_size).toBe('300');
      const afterThick = await pool('pool1');
      expect(Number(afterThick.provisioned_mb)).toBe(Number(afterThin.provisioned_mb) + 300);
      expect(Number(afterThin.usable_capacity_mb) - Number(afterThick.usable_capacity_mb)).toBeGreaterThanOrEqual(299);

      // Thick: the free space limits; thin: total × 4 limits.
      const free = Number(afterThick.usable_capacity_mb);
      const tooThick = await call(sock, 'CREATE_VOLUME_REQ', {
        vol_name: 'cap-big',
        vol_size: free + 10,
        pool_id: 'pool1',
        thin_flag: 0,
      });
      expect(tooThick.retcode).toBe(-900012);
      const thinLeft = Number(afterThick.thin_capacity_mb);
      expect(await code('CREATE_VOLUME_REQ', { vol_name: 'cap-big', vol_size: thinLeft + 1, pool_id: 'pool1' })).toBe(
        -900012,
      );
      expect(await code('CREATE_VOLUME_REQ', { vol_name: 'cap-big', vol_size: thinLeft, pool_id: 'pool1' })).toBe(0);
      expect(Number((await pool('pool1')).thin_capacity_mb)).toBe(0);
      expect(await code('CREATE_VOLUME_REQ', { vol_name: 'cap-one', vol_size: 1, pool_id: 'pool1' })).toBe(-900012);
      // Extending a thick volume needs free space for the delta.
      expect(await code('EXTEND_VOLUME_REQ', { vol_name: 'cap-thick', vol_size: 301 })).toBe(-900012);
      for (const name of ['cap-big', 'cap-thin']) {
        expect(await code('DELETE_VOLUME_REQ', { vol_name: name })).toBe(0);
        await waitGone(sock, 'QUERY_VOLUME_REQ', { vol_name: name });
      }
      const grown = await ok('EXTEND_VOLUME_REQ', { vol_name: 'cap-thick', vol_size: 400 });
      expect(grown.alloc_size).toBe('400');
      expect(Number((await pool('pool1')).provisioned_mb)).toBe(Number(before.provisioned_mb) + 400);
    });
  });

  describe('snapshots and clones', () => {
    beforeAll(async () => {
      expect(await code('CREATE_VOLUME_REQ', { vol_name: 'src', vol_size: 256 })).toBe(0);
    });

    it('takes a snapshot as a reflink copy and answers a repeat with -900011 + the record', async () => {
      const a = await ok('CREATE_SNAPSHOT_REQ', { snap_name: 'snap1', vol_name: 'src', smartflag: 1 }, 'snapshot0');
      expect(a).toMatchObject({
        status: '1',
        snap_name: 'snap1',
        vol_name: 'src',
        vol_size: '256',
        pool_id: 'pool0',
        dependents: '0',
        group_name: '',
      });
      expect(statSync(snapshotPath(d, 'snap1')).size).toBe(256 * MiB);
      const again = await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'snap1', vol_name: 'other' });
      expect(again.retcode).toBe(-900011);
      expect(again.record('snapshot0').vol_name).toBe('src');
      expect((await vol('src')).record('volume0').snap_num).toBe('1');
      expect(await code('CREATE_SNAPSHOT_REQ', { snap_name: 'snap-x', vol_name: 'missing' })).toBe(-900079);
      expect((await call(sock, 'QUERY_SNAPSHOT_REQ', { snap_name: 'snap1' })).record('snapshot0').snap_name).toBe(
        'snap1',
      );
      expect(await code('QUERY_SNAPSHOT_REQ', { snap_name: 'snap-none' })).toBe(-900079);
    });

    it('makes a linked clone (default) from a snapshot, extended when larger', async () => {
      const a = await ok('CREATE_VOLUME_FROM_SNAPSHOT_REQ', {
        vol_name: 'lc1',
        vol_size: 512,
        snap_name_src: 'snap1',
        vol_num: 1,
      });
      expect(a).toMatchObject({
        vol_size: '512',
        src_type: 'snapshot',
        src_name: 'snap1',
        clone_type: 'linked',
        pool_id: 'pool0',
      });
      expect(statSync(volumePath(d, 'lc1')).size).toBe(512 * MiB);
      const snap = (await call(sock, 'QUERY_SNAPSHOT_REQ', { snap_name: 'snap1' })).record('snapshot0');
      expect(snap).toMatchObject({ status: '2', dependents: '1' });
      expect(await code('CREATE_VOLUME_FROM_SNAPSHOT_REQ', { vol_name: 'lc1', snap_name_src: 'snap1' })).toBe(-900011);
    });

    it('refuses a smaller size, another pool, and a missing snapshot', async () => {
      const small = await call(sock, 'CREATE_VOLUME_FROM_SNAPSHOT_REQ', {
        vol_name: 'lc2',
        vol_size: 100,
        snap_name_src: 'snap1',
      });
      expect(small.retcode).toBe(-900003);
      expect(small.get('ret_desc')).toMatch(/^vol_size:/);
      expect(
        await code('CREATE_VOLUME_FROM_SNAPSHOT_REQ', { vol_name: 'lc2', snap_name_src: 'snap1', pool_id: 'pool1' }),
      ).toBe(-900003);
      expect(await code('CREATE_VOLUME_FROM_SNAPSHOT_REQ', { vol_name: 'lc2', snap_name_src: 'nosnap' })).toBe(-900079);
      expect(
        await code('CREATE_VOLUME_FROM_SNAPSHOT_REQ', { vol_name: 'lc2', snap_name_src: 'snap1', clone_type: 'deep' }),
      ).toBe(-900003);
      expect((await vol('lc2')).retcode).toBe(-900079);
    });

    it('makes a full copy from a snapshot that shares no extent', async () => {
      const a = await ok('CREATE_VOLUME_FROM_SNAPSHOT_REQ', {
        vol_name: 'fc1',
        snap_name_src: 'snap1',
        clone_type: 'full',
      });
      expect(a).toMatchObject({ vol_size: '256', clone_type: 'full', src_type: 'snapshot' });
      expect(extents(volumePath(d, 'fc1')).shared).toBe(0);
    });

    it('clones a volume, linked or full; smaller is -900014; a missing source is -900079', async () => {
      const linked = await ok('CLONE_VOLUME_REQ', { vol_name: 'cv-l', src_vol_name: 'src' });
      expect(linked).toMatchObject({
        src_type: 'volume',
        src_name: 'src',
        clone_type: 'linked',
        vol_size: '256',
      });
      const full = await ok('CLONE_VOLUME_REQ', {
        vol_name: 'cv-f',
        src_vol_name: 'src',
        clone_type: 'full',
        vol_size: 300,
        thin_flag: 0,
      });
      expect(full).toMatchObject({
        clone_type: 'full',
        vol_size: '300',
        thin_flag: '0',
        alloc_size: '300',
      });
      expect(await code('CLONE_VOLUME_REQ', { vol_name: 'cv-s', src_vol_name: 'src', vol_size: 10 })).toBe(-900014);
      expect(await code('CLONE_VOLUME_REQ', { vol_name: 'cv-s', src_vol_name: 'none' })).toBe(-900079);
      expect(await code('CLONE_VOLUME_REQ', { vol_name: 'cv-l', src_vol_name: 'src' })).toBe(-900011);
    });

    it('keeps snapshots when their volume goes, and deletes a snapshot with linked clones', async () => {
      expect(await code('CREATE_VOLUME_REQ', { vol_name: 'gone-src', vol_size: 32 })).toBe(0);
      expect(await code('CREATE_SNAPSHOT_REQ', { snap_name: 'orphan-snap', vol_name: 'gone-src' })).toBe(0);
      expect(await code('DELETE_VOLUME_REQ', { vol_name: 'gone-src' })).toBe(0);
      await waitGone(sock, 'QUERY_VOLUME_REQ', { vol_name: 'gone-src' });
      expect((await call(sock, 'QUERY_SNAPSHOT_REQ', { snap_name: 'orphan-snap' })).record('snapshot0').vol_name).toBe(
        'gone-src',
      );
      expect(
        await code('CREATE_VOLUME_FROM_SNAPSHOT_REQ', { vol_name: 'from-orphan', snap_name_src: 'orphan-snap' }),
      ).toBe(0);
      // The next volume made never takes the id of the one that went: its snapshot is not the new one's.
      expect((await vol('from-orphan')).record('volume0').snap_num).toBe('0');

      expect(await code('DELETE_SNAPSHOT_REQ', { snap_name: 'snap1' })).toBe(0);
      await waitGone(sock, 'QUERY_SNAPSHOT_REQ', { snap_name: 'snap1' });
      expect(existsSync(snapshotPath(d, 'snap1'))).toBe(false);
      expect((await vol('lc1')).record('volume0')).toMatchObject({ status: '1', health: 'ok' });
      expect(await code('DELETE_SNAPSHOT_REQ', { snap_name: 'snap1' })).toBe(-900079);
    });
  });

  describe('mappings', () => {
    beforeAll(async () => {
      expect(await code('CREATE_VOLUME_REQ', { vol_name: 'm1', vol_size: 8 })).toBe(0);
    });

    it('maps to hosts with access modes, exclusive, conflicts and idempotency', async () => {
      expect(await code('MAP_VOLUME_REQ', { vol_name: 'm1', host_id: 'host-b' })).toBe(0);
      expect(await code('MAP_VOLUME_REQ', { vol_name: 'm1', host_id: 'host-b', access_mode: 'rw' })).toBe(0);
      expect(await code('MAP_VOLUME_REQ', { vol_name: 'm1', host_id: 'host-b', access_mode: 'ro' })).toBe(-900021);
      expect(await code('MAP_VOLUME_REQ', { vol_name: 'm1', host_id: 'host-c', exclusive: 1 })).toBe(-900016);
      expect(await code('MAP_VOLUME_REQ', { vol_name: 'm1', host_id: 'host-zz' })).toBe(-900017);
      expect(await code('MAP_VOLUME_REQ', { vol_name: 'nope', host_id: 'host-b' })).toBe(-900079);
      expect(await code('MAP_VOLUME_REQ', { vol_name: 'm1', host_id: 'host-c', access_mode: 'ro' })).toBe(0);
      const rec = (await vol('m1')).record('volume0');
      expect(rec.status).toBe('2');
      expect(rec.mapped_hosts!.split(':').sort()).toEqual(['host-b', 'host-c']);
      const hosts = await call(sock, 'QUERY_VOLUME_HOSTS_REQ', { vol_name: 'm1' });
      expect(hosts.get('host_num')).toBe('2');
      expect(hosts.record('host0')).toEqual({
        host_id: 'host-b',
        access_mode: 'rw',
        attached: '0',
        dev_addr: '',
        online: '1',
      });
      expect(hosts.record('host1')).toEqual({
        host_id: 'host-c',
        access_mode: 'ro',
        attached: '0',
        dev_addr: '',
        online: '1',
      });
      expect(await code('QUERY_VOLUME_HOSTS_REQ', { vol_name: 'nope' })).toBe(-900079);
    });

    it('unmaps idempotently', async () => {
      expect(await code('UNMAP_VOLUME_REQ', { vol_name: 'm1', host_id: 'host-b' })).toBe(0);
      expect(await code('UNMAP_VOLUME_REQ', { vol_name: 'm1', host_id: 'host-b' })).toBe(0);
      expect(await code('UNMAP_VOLUME_REQ', { vol_name: 'nope', host_id: 'host-b' })).toBe(-900079);
      expect((await vol('m1')).record('volume0').mapped_hosts).toBe('host-c');
    });

    it('deletes a mapped (not attached) volume, unmapping it', async () => {
      expect(await code('DELETE_VOLUME_REQ', { vol_name: 'm1' })).toBe(0);
      await waitGone(sock, 'QUERY_VOLUME_REQ', { vol_name: 'm1' });
      expect(
        (await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'm1', vol_size: 8 })).record('volume0').mapped_hosts,
      ).toBe('');
    });
  });

  describe('lists', () => {
    beforeAll(async () => {
      await Promise.all(
        Array.from({ length: 25 }, (_, i) =>
          call(sock, 'CREATE_VOLUME_REQ', {
            vol_name: `pg-${String(i).padStart(2, '0')}`,
            vol_size: 1,
            pool_id: i % 5 === 0 ? 'pool1' : 'pool0',
          }),
        ),
      );
      for (let i = 0; i < 7; i++) {
        expect(
          (await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: `ps-${i}`, vol_name: i < 4 ? 'pg-00' : 'pg-01' }))
            .retcode,
        ).toBe(0);
      }
    });

    it('pages volumes in name order with marker and limit', async () => {
      const names: string[] = [];
      let marker = 'pg-';
      let pages = 0;
      for (;;) {
        const a = await call(sock, 'LIST_VOLUMES_REQ', { marker, limit: 10 });
        expect(a.retcode).toBe(0);
        const n = Number(a.get('vol_num'));
        const page = Array.from({ length: n }, (_, i) => a.record(`volume${i}`).vol_name!);
        names.push(...page);
        pages++;
        const next = a.get('next_marker') ?? '';
        if (next === '') break;
        expect(next).toBe(page[page.length - 1]);
        marker = next;
      }
      const ours = names.filter((n) => n.startsWith('pg-'));
      expect(ours).toEqual(Array.from({ length: 25 }, (_, i) => `pg-${String(i).padStart(2, '0')}`));
      expect([...names].sort()).toEqual(names);
      expect(pages).toBeGreaterThanOrEqual(3);
    });

    it('filters volumes by pool and refuses bad limits and markers', async () => {
      const a = await call(sock, 'LIST_VOLUMES_REQ', { pool_id: 'pool1', marker: 'pg-', limit: 1000 });
      const n = Number(a.get('vol_num'));
      const names = Array.from({ length: n }, (_, i) => a.record(`volume${i}`)).filter((r) =>
        r.vol_name!.startsWith('pg-'),
      );
      expect(names.map((r) => r.vol_name)).toEqual(['pg-00', 'pg-05', 'pg-10', 'pg-15', 'pg-20']);
      expect(names.every((r) => r.pool_id === 'pool1')).toBe(true);
      expect(a.get('next_marker')).toBe('');
      for (const limit of [0, 1001, 'x']) expect(await code('LIST_VOLUMES_REQ', { limit })).toBe(-900003);
      expect(await code('LIST_VOLUMES_REQ', { marker: '../x' })).toBe(-900003);
      expect(await code('LIST_VOLUMES_REQ', { pool_id: 'nopool' })).toBe(-900010);
    });

    it('pages snapshots, filters by volume, finds one by name', async () => {
      const first = await call(sock, 'LIST_SNAPSHOTS_REQ', { vol_name: 'pg-00', limit: 3 });
      expect(first.get('snap_num')).toBe('3');
      expect([0, 1, 2].map((i) => first.record(`snapshot${i}`).snap_name)).toEqual(['ps-0', 'ps-1', 'ps-2']);
      expect(first.get('next_marker')).toBe('ps-2');
      const second = await call(sock, 'LIST_SNAPSHOTS_REQ', { vol_name: 'pg-00', limit: 3, marker: 'ps-2' });
      expect(second.get('snap_num')).toBe('1');
      expect(second.record('snapshot0').snap_name).toBe('ps-3');
      expect(second.get('next_marker')).toBe('');
      const one = await call(sock, 'LIST_SNAPSHOTS_REQ', { snap_name: 'ps-5' });
      expect(one.get('snap_num')).toBe('1');
      expect(one.record('snapshot0').vol_name).toBe('pg-01');
      expect((await call(sock, 'LIST_SNAPSHOTS_REQ', { snap_name: 'ps-none' })).get('snap_num')).toBe('0');
      expect(await code('LIST_SNAPSHOTS_REQ', { limit: 0 })).toBe(-900003);
    });
  });
});
