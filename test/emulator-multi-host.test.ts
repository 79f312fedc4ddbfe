// Several hosts of one emulator back end (emulator/hosts.ts): each host's socket API and KV data plane are
// its own, over one store and one set of pools. An attach needs a mapping to that very host; raw block is
// shared by two hosts at once, O_DIRECT writes on one read back byte for byte on the other; a host whose
// front end is killed -9 is reported down, a forced unmap drops its attachment, and when it comes back its
// sds_cli finds nothing attached. The store's migration of older attachment rows is checked too.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from '../emulator/store.js';
import { call, forceCleanup, leftovers, makeTempDir, sdsCli } from './support/emulator.js';
import { startFront, startHosts, stopAndCheckHosts, type Hosts } from './support/hosts.js';

let hosts: Hosts;

beforeAll(async () => {
  hosts = await startHosts(['host-a', 'host-b', 'host-c'], { args: ['--pool', 'pool0:1G'] });
}, 120_000);

afterAll(async () => {
  if (!hosts) return;
  await hosts.stop();
  forceCleanup(hosts.daemon.dir);
}, 120_000);

const front = (h: string) => hosts.fronts.get(h)!;
const directWrite = (device: string, file: string) =>
  execFileSync('dd', [`if=${file}`, `of=${device}`, 'bs=4096', 'count=16', 'oflag=direct,sync', 'status=none']);
const directRead = (device: string): Buffer =>
  execFileSync('dd', [`if=${device}`, 'bs=4096', 'count=16', 'iflag=direct', 'status=none']);

describe('several hosts of one back end', () => {
  it("each host's socket API answers as that host and lists the others", async () => {
    for (const h of ['host-a', 'host-b']) {
      const caps = await call(front(h).info.controlSocket, 'QUERY_CAPABILITY_REQ');
      expect(caps.get('host_id')).toBe(h);
      const list = await call(front(h).info.controlSocket, 'QUERY_HOSTS_REQ');
      const records = Array.from({ length: Number(list.get('host_num')) }, (_, i) => list.record(`host${i}`));
      expect(records.find((r) => r.host_id === h)).toMatchObject({ local: '1', online: '1' });
      expect(records.filter((r) => r.local === '1')).toHaveLength(1);
    }
  });

  it('an attach needs a mapping to the host it is made on; a volume made on one host is managed from another', async () => {
    const a = front('host-a').info;
    const b = front('host-b').info;
    expect((await call(a.controlSocket, 'CREATE_VOLUME_REQ', { vol_name: 'rwo', vol_size: 16 })).retcode).toBe(0);
    expect((await call(b.controlSocket, 'MAP_VOLUME_REQ', { vol_name: 'rwo', host_id: 'host-a' })).retcode).toBe(0);
    const onB = sdsCli(b.kvSocket, ['-c', 'attach', '-v', 'rwo']);
    expect(onB.values.get('ret_code')).not.toBe('0');
    expect(onB.values.get('ret_desc')).toContain('not mapped to host host-b');
    const onA = sdsCli(a.kvSocket, ['-c', 'attach', '-v', 'rwo']);
    expect(onA.values.get('ret_code')).toBe('0');
    const hostsOf = await call(b.controlSocket, 'QUERY_VOLUME_HOSTS_REQ', { vol_name: 'rwo' });
    expect(hostsOf.record('host0')).toMatchObject({
      host_id: 'host-a',
      attached: '1',
      dev_addr: onA.values.get('dev_addr'),
    });
    expect(sdsCli(b.kvSocket, ['-c', 'querydev', '-v', 'rwo']).values.get('ret_code')).not.toBe('0');
    // An exclusive mapping (single-node modes) refuses a second host.
    expect(
      (await call(a.controlSocket, 'MAP_VOLUME_REQ', { vol_name: 'rwo', host_id: 'host-b', exclusive: 1 })).retcode,
    ).not.toBe(0);
    expect(sdsCli(a.kvSocket, ['-c', 'detach', '-v', 'rwo']).values.get('ret_code')).toBe('0');
    expect((await call(a.controlSocket, 'UNMAP_VOLUME_REQ', { vol_name: 'rwo', host_id: 'host-a' })).retcode).toBe(0);
    expect((await call(b.controlSocket, 'DELETE_VOLUME_REQ', { vol_name: 'rwo' })).retcode).toBe(0);
  });

  it('raw block on two hosts at once: O_DIRECT writes on one read back byte for byte on the other', async () => {
    const a = front('host-a').info;
    const b = front('host-b').info;
    expect(
      (await call(a.controlSocket, 'CREATE_VOLUME_REQ', { vol_name: 'rwx', vol_size: 16, cache_policy: 'none' }))
        .retcode,
    ).toBe(0);
    for (const h of ['host-a', 'host-b'])
      expect((await call(a.controlSocket, 'MAP_VOLUME_REQ', { vol_name: 'rwx', host_id: h })).retcode).toBe(0);
    const devA = sdsCli(a.kvSocket, ['-c', 'attach', '-v', 'rwx']).values.get('dev_addr')!;
    const devB = sdsCli(b.kvSocket, ['-c', 'attach', '-v', 'rwx']).values.get('dev_addr')!;
    expect(devA).toMatch(/^\/dev\/loop\d+$/);
    expect(devB).toMatch(/^\/dev\/loop\d+$/);
    expect(devB).not.toBe(devA);
    const data = randomBytes(16 * 4096);
    const file = join(hosts.daemon.dir, 'pattern');
    writeFileSync(file, data);
    directWrite(devA, file);
    expect(directRead(devB).equals(data)).toBe(true);
    const back = randomBytes(16 * 4096);
    writeFileSync(file, back);
    directWrite(devB, file);
    expect(directRead(devA).equals(back)).toBe(true);
    const hostsOf = await call(a.controlSocket, 'QUERY_VOLUME_HOSTS_REQ', { vol_name: 'rwx' });
    expect([hostsOf.record('host0').dev_addr, hostsOf.record('host1').dev_addr].sort()).toEqual([devA, devB].sort());
    // Deleting is refused while any host holds it.
    expect((await call(a.controlSocket, 'DELETE_VOLUME_REQ', { vol_name: 'rwx' })).retcode).toBe(-900018);
    // The migration ends on B: A lets go, B keeps its device and its data.
    expect(sdsCli(a.kvSocket, ['-c', 'detach', '-v', 'rwx']).values.get('ret_code')).toBe('0');
    expect((await call(a.controlSocket, 'UNMAP_VOLUME_REQ', { vol_name: 'rwx', host_id: 'host-a' })).retcode).toBe(0);
    expect(directRead(devB).equals(back)).toBe(true);
    expect(sdsCli(b.kvSocket, ['-c', 'detach', '-v', 'rwx']).values.get('ret_code')).toBe('0');
  });

  it('a host killed -9 is reported down; a forced unmap drops its attachment; back up, it finds nothing attached', async () => {
    const a = front('host-a').info;
    const c = front('host-c').info;
    expect((await call(c.controlSocket, 'CREATE_VOLUME_REQ', { vol_name: 'dies', vol_size: 16 })).retcode).toBe(0);
    expect((await call(c.controlSocket, 'MAP_VOLUME_REQ', { vol_name: 'dies', host_id: 'host-a' })).retcode).toBe(0);
    const dev = sdsCli(a.kvSocket, ['-c', 'attach', '-v', 'dies']).values.get('dev_addr')!;
    const data = randomBytes(16 * 4096);
    const file = join(hosts.daemon.dir, 'synced');
    writeFileSync(file, data);
    directWrite(dev, file);

    await front('host-a').kill9();
    const deadline = Date.now() + 30_000;
    let record: Record<string, string> = {};
    while (Date.now() < deadline) {
      record = (await call(c.controlSocket, 'QUERY_VOLUME_HOSTS_REQ', { vol_name: 'dies' })).record('host0');
      if (record.online === '0') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(record).toMatchObject({ host_id: 'host-a', online: '0', attached: '1' });
    expect((await call(c.controlSocket, 'UNMAP_VOLUME_REQ', { vol_name: 'dies', host_id: 'host-a' })).retcode).toBe(
      -900018,
    );
    expect(
      (await call(c.controlSocket, 'UNMAP_VOLUME_REQ', { vol_name: 'dies', host_id: 'host-a', force: 1 })).retcode,
    ).toBe(0);

    // Recovered on C, byte for byte.
    expect((await call(c.controlSocket, 'MAP_VOLUME_REQ', { vol_name: 'dies', host_id: 'host-c' })).retcode).toBe(0);
    const devC = sdsCli(c.kvSocket, ['-c', 'attach', '-v', 'dies']).values.get('dev_addr')!;
    expect(directRead(devC).equals(data)).toBe(true);

    const back = await startFront(hosts.daemon.dataDir, 'host-a');
    hosts.fronts.set('host-a', back);
    expect(sdsCli(back.info.kvSocket, ['-c', 'querydev', '-v', 'dies']).values.get('ret_code')).not.toBe('0');
    expect(sdsCli(back.info.kvSocket, ['-c', 'attach', '-v', 'dies']).values.get('ret_desc')).toContain('not mapped');
    const list = await call(back.info.controlSocket, 'QUERY_HOSTS_REQ');
    const records = Array.from({ length: Number(list.get('host_num')) }, (_, i) => list.record(`host${i}`));
    expect(records.find((r) => r.host_id === 'host-a')?.online).toBe('1');
    // A's old device is released: no loop device of the test's dir other than C's.
    const volumeLoops = leftovers(hosts.daemon.dir).loops.filter((l) => l.includes('/volumes/'));
    expect(volumeLoops).toEqual([`${devC} → ${join(hosts.daemon.dataDir, 'pools', 'pool0', 'volumes', 'dies')}`]);
    expect(sdsCli(c.kvSocket, ['-c', 'detach', '-v', 'dies']).values.get('ret_code')).toBe('0');
  });
});

describe('store migration', () => {
  it('attachment rows of a schema-2 database are kept, and a volume can then be attached on two hosts', () => {
    const dir = makeTempDir('emu-migrate-');
    try {
      const path = join(dir, 'emulator.db');
      const old = new Database(path);
      old.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '2');
        CREATE TABLE attachments (vol_id INTEGER PRIMARY KEY, host_id TEXT NOT NULL, state TEXT NOT NULL,
          device TEXT NOT NULL, dev_major INTEGER NOT NULL, dev_minor INTEGER NOT NULL, read_only INTEGER NOT NULL,
          attached_at INTEGER NOT NULL);
        INSERT INTO attachments VALUES (7, 'host-x', 'attached', '/dev/loop9', 7, 9, 0, 100);`);
      old.close();
      const store = new Store(path);
      try {
        expect(store.attachments(7)).toEqual([
          {
            vol_id: 7,
            host_id: 'host-x',
            state: 'attached',
            device: '/dev/loop9',
            dev_major: 7,
            dev_minor: 9,
            read_only: 0,
            attached_at: 100,
          },
        ]);
        store.upsertAttachment({
          vol_id: 7,
          host_id: 'host-y',
          state: 'attached',
          device: '/dev/loop10',
          dev_major: 7,
          dev_minor: 10,
          read_only: 0,
          attached_at: 101,
        });
        expect(store.attachments(7).map((a) => a.host_id)).toEqual(['host-x', 'host-y']);
        expect(store.attachment(7, 'host-y')?.device).toBe('/dev/loop10');
        const version = store.db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as {
          value: string;
        };
        expect(version.value).toBe('3');
      } finally {
        store.close();
      }
    } finally {
      forceCleanup(dir);
    }
  });
});

describe('several hosts on the original level', () => {
  it("attaches on any host without a mapping, each host's own device, as the product did", async () => {
    const orig = await startHosts(['host-a', 'host-b'], { protocol: 'original', args: ['--pool', 'pool0:1G'] });
    try {
      const a = orig.fronts.get('host-a')!.info;
      const b = orig.fronts.get('host-b')!.info;
      const blank = Object.fromEntries(
        [
          'thin_flag',
          'reserved',
          'volume_space_reserved',
          'force_provision_size',
          'iops',
          'max_iops',
          'min_iops',
          'cache_size',
          'repicate_num',
          'repicate_tolerant_num',
          'encrypt_algorithm',
          'consistency',
          'stor_space_level',
          'compress_algorithm',
          'deduplication',
          'snapshot',
          'backup_cycle',
          'tolerance_disk_failure',
          'tolerance_cache_failure',
        ].map((k) => [k, k === 'thin_flag' ? '0' : '']),
      );
      const made = await call(a.controlSocket, 'CREATE_VOLUME_REQ', {
        vol_name: 'orig-any',
        vol_size: '16',
        pool_id: 'pool0',
        ...blank,
      });
      expect(made.retcode).toBe(0);
      expect(sdsCli(b.kvSocket, ['-c', 'attach', '-v', 'orig-any']).stdout).toBe('ret_code=0\n');
      const q = sdsCli(b.kvSocket, ['-c', 'querydev', '-v', 'orig-any']);
      expect(q.stdout).toMatch(/^ret_code=0\ndev_addr=\/dev\/loop\d+\n$/);
      // Host A has nothing attached: the attachment is B's.
      expect(sdsCli(a.kvSocket, ['-c', 'querydev', '-v', 'orig-any']).stdout).toBe('ret_code=1\n');
      expect(sdsCli(b.kvSocket, ['-c', 'detach', '-v', 'orig-any']).values.get('ret_code')).toBe('0');
    } finally {
      expect(await stopAndCheckHosts(orig)).toEqual({ loops: [], mounts: [] });
    }
  }, 120_000);
});
