// The emulator's original level (--protocol original; docs/socket-api.md, "The original level"): the nine
// requests of the 2014 product with their original reply shapes, every other request refused with the
// generic retcode=1, extension keys ignored, no token, pools answered by id only, and the real sds_cli
// printing the original lines. A real daemon on real pools; what exists is checked in its data dir, not by
// asking it (the level has no list request).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, readSync, statSync, writeSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { Key, REQUEST_SPECS, requestTypesOf } from '../src/protocol/catalog.js';
import {
  call,
  type Daemon,
  EMULATOR_MAIN,
  exchange,
  extents,
  forceCleanup,
  makeTempDir,
  MiB,
  sdsCli,
  snapshotPath,
  startDaemon,
  stopAndCheck,
  volumePath,
  waitGone,
  waitForLog,
} from './support/emulator.js';
import { daemonForSuite } from './support/emulator-suite.js';
import { checkedAgainstCatalog, type Handler } from '../emulator/handlers.js';
import { backendObjects, poolFiles, storeRows } from './support/emulator-inventory.js';

/** Every key the Cinder driver sent with CREATE_VOLUME_REQ, at its neutral value. */
function cinderCreate(
  name: string,
  sizeMb: number,
  pool: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    vol_name: name,
    vol_size: String(sizeMb),
    pool_id: pool,
    thin_flag: '0',
    reserved: '',
    volume_space_reserved: '',
    force_provision_size: '',
    iops: '',
    max_iops: '',
    min_iops: '',
    cache_size: '',
    repicate_num: '',
    repicate_tolerant_num: '',
    encrypt_algorithm: '',
    consistency: '',
    stor_space_level: '',
    compress_algorithm: '',
    deduplication: '',
    snapshot: '',
    backup_cycle: '',
    tolerance_disk_failure: '',
    tolerance_cache_failure: '',
    ...extra,
  };
}

/** The extended level's requests (from the catalog) and a type nobody defined: the original level knows none. */
const EXTENSION_REQUESTS: Array<[string, Record<string, string>]> = [
  ...REQUEST_SPECS.filter((spec) => spec.level === 'extended').map((spec): [string, Record<string, string>] => [
    spec.type,
    Object.fromEntries(spec.keys.filter((k) => k.required).map((k) => [k.key, k.key === Key.VOL_SIZE ? '16' : 'base'])),
  ]),
  ['NO_SUCH_REQ', {}],
];

function writeFile(path: string, offset: number, data: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

function readFile(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, offset);
    return buf;
  } finally {
    closeSync(fd);
  }
}

describe('emulator original level: the nine requests', () => {
  let d: Daemon;
  let sock: string;
  let xfs: boolean;

  daemonForSuite(
    {
      protocol: 'original',
      args: ['--pool', 'pool0:3G', '--pool', 'pool1:2G', '--max-oversubscription', '1'],
    },
    (started) => {
      d = started;
      sock = started.info.controlSocket;
    },
  );
  beforeAll(async () => {
    // The "ready" line carries the level; earlier lines (the pool type) came down the pipe before it.
    await waitForLog(d, /"protocol":"original"/);
    xfs = /"poolType":"xfs-reflink"/.test(d.stderr());
  });

  it('QUERY_POOLS_CAPABILITY_REQ answers only the pools named by id, with the five fields in whole GiB', async () => {
    const one = await call(sock, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 1, pool_id: ['pool1'] });
    expect(one.retcode).toBe(0);
    expect(one.fields.list.map(([k]) => k)).toEqual(['retcode', 'pool0']);
    const rec = one.record('pool0');
    expect(Object.keys(rec)).toEqual(['stor_id', 'total_capacity', 'usable_capacity', 'raid_level', 'iops']);
    expect(rec.stor_id).toBe('pool1');
    for (const k of ['total_capacity', 'usable_capacity', 'raid_level', 'iops']) expect(rec[k]).toMatch(/^\d+$/);
    // A 2 GiB LUN holds a little less than 2 GiB of file system: rounded down. (A directory pool reports
    // the host file system it lives on.)
    if (xfs) expect(Number(rec.total_capacity)).toBe(1);
    expect(Number(rec.usable_capacity)).toBeLessThanOrEqual(Number(rec.total_capacity));

    const two = await call(sock, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 2, pool_id: ['pool1', 'pool0'] });
    expect(two.retcode).toBe(0);
    expect([two.record('pool0').stor_id, two.record('pool1').stor_id]).toEqual(['pool1', 'pool0']);
  });

  it('QUERY_POOLS_CAPABILITY_REQ with pool_num=0 or no ids answers no pool; an unknown id is retcode=1', async () => {
    expect((await call(sock, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 0 })).text).toBe('retcode=0\n');
    expect((await call(sock, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 0, pool_id: ['pool0'] })).text).toBe(
      'retcode=0\n',
    );
    expect((await call(sock, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 2 })).text).toBe('retcode=0\n');
    expect((await call(sock, 'QUERY_POOLS_CAPABILITY_REQ')).text).toBe('retcode=0\n');
    expect((await call(sock, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 1, pool_id: ['nope'] })).text).toBe(
      'retcode=1\n',
    );
    expect((await call(sock, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 'x', pool_id: ['pool0'] })).text).toBe(
      'retcode=1\n',
    );
  });

  it('CREATE_VOLUME_REQ with the 22 Cinder keys makes the volume: retcode=0 alone; the query carries status only', async () => {
    const a = await call(sock, 'CREATE_VOLUME_REQ', cinderCreate('orig-v1', 64, 'pool0'));
    expect(a.text).toBe('retcode=0\n');
    expect(statSync(volumePath(d, 'orig-v1')).size).toBe(64 * MiB);
    // thin_flag=0 is a thick volume: all of it allocated.
    expect(statSync(volumePath(d, 'orig-v1')).blocks * 512).toBeGreaterThanOrEqual(64 * MiB);
    expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'orig-v1' })).text).toBe(
      'retcode=0\nvolume0=[status=1]\n',
    );
  });

  it('CREATE_VOLUME_REQ failures are all retcode=1: a taken name, no pool, a full pool, a bad key value', async () => {
    await call(sock, 'CREATE_VOLUME_REQ', cinderCreate('orig-taken', 16, 'pool0'));
    const total = Number(
      (await call(sock, 'QUERY_POOLS_CAPABILITY_REQ', { pool_num: 1, pool_id: ['pool1'] })).record('pool0')
        .total_capacity,
    );
    const tooBigMb = (total + 1) * 1024;
    const cases: Array<Record<string, string>> = [
      cinderCreate('orig-taken', 16, 'pool0'),
      cinderCreate('orig-taken', 32, 'pool1'),
      cinderCreate('orig-nopool', 16, ''),
      cinderCreate('orig-badpool', 16, 'nope'),
      cinderCreate('orig-full', tooBigMb, 'pool1'),
      cinderCreate('orig-thinfull', tooBigMb, 'pool1', { thin_flag: '1' }),
      cinderCreate('orig-size', 0, 'pool0'),
      cinderCreate('orig-size2', 16, 'pool0', { vol_size: '1.5' }),
      cinderCreate('bad/name', 16, 'pool0'),
      cinderCreate('orig-crypt', 16, 'pool0', { encrypt_algorithm: 'aes' }),
    ];
    for (const fields of cases) {
      const a = await call(sock, 'CREATE_VOLUME_REQ', fields);
      expect({ fields, text: a.text }).toEqual({ fields, text: 'retcode=1\n' });
    }
    const files = poolFiles(d.dataDir);
    for (const name of [
      'orig-nopool',
      'orig-badpool',
      'orig-full',
      'orig-thinfull',
      'orig-size',
      'orig-size2',
      'orig-crypt',
    ]) {
      expect(files.volumes.some((v) => v.endsWith(`/${name}`))).toBe(false);
    }
    expect(files.volumes.filter((v) => v.endsWith('/orig-taken'))).toEqual(['pool0/orig-taken']);
    expect(statSync(volumePath(d, 'orig-taken')).size).toBe(16 * MiB);
  });

  it('ignores extension keys: no token, no request id echoed, no clone type, no cache policy', async () => {
    const a = await call(
      sock,
      'CREATE_VOLUME_REQ',
      cinderCreate('orig-ext', 16, 'pool0', {
        auth_token: 'wrong',
        request_id: 'req-1',
        cache_policy: 'bogus',
        clone_type: 'full',
        max_mbps: 'nonsense',
      }),
    );
    expect(a.text).toBe('retcode=0\n');
    const q = await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'orig-ext', request_id: 'x'.repeat(300) });
    expect(q.text).toBe('retcode=0\nvolume0=[status=1]\n');
  });

  it('QUERY_VOLUME_REQ: -900079 for a volume that does not exist, retcode=1 for a bad request', async () => {
    expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'orig-none' })).text).toBe('retcode=-900079\n');
    expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: '../x' })).text).toBe('retcode=1\n');
    expect((await call(sock, 'QUERY_VOLUME_REQ')).text).toBe('retcode=1\n');
  });

  it('EXTEND_VOLUME_REQ grows the volume; a shrink or a missing volume is retcode=1', async () => {
    await call(sock, 'CREATE_VOLUME_REQ', cinderCreate('orig-grow', 16, 'pool0'));
    expect((await call(sock, 'EXTEND_VOLUME_REQ', { vol_name: 'orig-grow', vol_size: 48 })).text).toBe('retcode=0\n');
    expect(statSync(volumePath(d, 'orig-grow')).size).toBe(48 * MiB);
    expect((await call(sock, 'EXTEND_VOLUME_REQ', { vol_name: 'orig-grow', vol_size: 16 })).text).toBe('retcode=1\n');
    expect((await call(sock, 'EXTEND_VOLUME_REQ', { vol_name: 'orig-none', vol_size: 64 })).text).toBe('retcode=1\n');
    expect(statSync(volumePath(d, 'orig-grow')).size).toBe(48 * MiB);
  });

  it('snapshots: CREATE, QUERY (status only), a taken name or a missing volume is retcode=1, missing is -900079', async () => {
    await call(sock, 'CREATE_VOLUME_REQ', cinderCreate('orig-src', 16, 'pool0'));
    const a = await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'orig-s1', vol_name: 'orig-src', smartflag: 1 });
    expect(a.text).toBe('retcode=0\n');
    expect(statSync(snapshotPath(d, 'orig-s1')).size).toBe(16 * MiB);
    expect((await call(sock, 'QUERY_SNAPSHOT_REQ', { snap_name: 'orig-s1' })).text).toBe(
      'retcode=0\nsnapshot0=[status=1]\n',
    );
    expect(
      (await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'orig-s1', vol_name: 'orig-src', smartflag: 1 })).text,
    ).toBe('retcode=1\n');
    expect(
      (await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'orig-s2', vol_name: 'orig-none', smartflag: 1 })).text,
    ).toBe('retcode=1\n');
    expect((await call(sock, 'QUERY_SNAPSHOT_REQ', { snap_name: 'orig-s2' })).text).toBe('retcode=-900079\n');
    expect(poolFiles(d.dataDir).snapshots).not.toContain('pool0/orig-s2');
  });

  it('CREATE_VOLUME_FROM_SNAPSHOT_REQ makes a linked clone of the snapshot (refused where the pool cannot)', async () => {
    await call(sock, 'CREATE_VOLUME_REQ', cinderCreate('orig-data', 16, 'pool0', { thin_flag: '1' }));
    const data = randomBytes(256 * 1024);
    writeFile(volumePath(d, 'orig-data'), 4 * MiB, data);
    expect(
      (await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'orig-data-s', vol_name: 'orig-data', smartflag: 1 }))
        .retcode,
    ).toBe(0);
    const a = await call(sock, 'CREATE_VOLUME_FROM_SNAPSHOT_REQ', {
      vol_name: 'orig-clone',
      vol_size: 32,
      snap_name_src: 'orig-data-s',
      vol_num: 1,
    });
    if (!xfs) {
      // A directory pool cannot share blocks: the product's generic failure, and nothing made.
      expect(a.text).toBe('retcode=1\n');
      expect(poolFiles(d.dataDir).volumes).not.toContain('pool0/orig-clone');
      return;
    }
    expect(a.text).toBe('retcode=0\n');
    expect(statSync(volumePath(d, 'orig-clone')).size).toBe(32 * MiB);
    expect(readFile(volumePath(d, 'orig-clone'), 4 * MiB, data.length).equals(data)).toBe(true);
    expect(extents(volumePath(d, 'orig-clone')).shared).toBeGreaterThan(0);
    expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'orig-clone' })).text).toBe(
      'retcode=0\nvolume0=[status=1]\n',
    );
    // A taken name, a missing source, a smaller size, vol_num other than 1: retcode=1.
    for (const fields of [
      { vol_name: 'orig-clone', vol_size: 32, snap_name_src: 'orig-data-s', vol_num: 1 },
      { vol_name: 'orig-clone2', vol_size: 32, snap_name_src: 'orig-none', vol_num: 1 },
      { vol_name: 'orig-clone3', vol_size: 8, snap_name_src: 'orig-data-s', vol_num: 1 },
      { vol_name: 'orig-clone4', vol_size: 32, snap_name_src: 'orig-data-s', vol_num: 2 },
    ]) {
      expect({ fields, text: (await call(sock, 'CREATE_VOLUME_FROM_SNAPSHOT_REQ', fields)).text }).toEqual({
        fields,
        text: 'retcode=1\n',
      });
    }
    // The snapshot a linked clone came from may be deleted (as on the extended level): the clone keeps its data.
    expect((await call(sock, 'DELETE_SNAPSHOT_REQ', { snap_name: 'orig-data-s' })).text).toBe('retcode=0\n');
    await waitGone(sock, 'QUERY_SNAPSHOT_REQ', { snap_name: 'orig-data-s' });
    expect(readFile(volumePath(d, 'orig-clone'), 4 * MiB, data.length).equals(data)).toBe(true);
  });

  it('deletes are asynchronous: retcode=0 alone, then the record (status 1) until the query answers -900079', async () => {
    await call(sock, 'CREATE_VOLUME_REQ', cinderCreate('orig-del', 16, 'pool0'));
    await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'orig-del-s', vol_name: 'orig-del', smartflag: 1 });
    expect((await call(sock, 'DELETE_SNAPSHOT_REQ', { snap_name: 'orig-del-s' })).text).toBe('retcode=0\n');
    expect(['retcode=0\nsnapshot0=[status=1]\n', 'retcode=-900079\n']).toContain(
      (await call(sock, 'QUERY_SNAPSHOT_REQ', { snap_name: 'orig-del-s' })).text,
    );
    await waitGone(sock, 'QUERY_SNAPSHOT_REQ', { snap_name: 'orig-del-s' });
    expect((await call(sock, 'DELETE_VOLUME_REQ', { vol_name: 'orig-del' })).text).toBe('retcode=0\n');
    expect(['retcode=0\nvolume0=[status=1]\n', 'retcode=-900079\n']).toContain(
      (await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'orig-del' })).text,
    );
    await waitGone(sock, 'QUERY_VOLUME_REQ', { vol_name: 'orig-del' });
    expect(poolFiles(d.dataDir).volumes).not.toContain('pool0/orig-del');
    // Deleting what is not there is a failure like any other.
    expect((await call(sock, 'DELETE_VOLUME_REQ', { vol_name: 'orig-del' })).text).toBe('retcode=1\n');
    expect((await call(sock, 'DELETE_SNAPSHOT_REQ', { snap_name: 'orig-del-s' })).text).toBe('retcode=1\n');
  });

  it('refuses every extended request type of the catalog', () => {
    const refused = EXTENSION_REQUESTS.map(([type]) => type);
    expect(refused.length).toBe(requestTypesOf('extended').length - requestTypesOf('original').length + 1);
    expect(refused).toContain('QUERY_CAPABILITY_REQ');
    expect(refused).toContain('MAP_VOLUME_REQ');
    expect(requestTypesOf('original')).toHaveLength(9);
  });

  it.each(EXTENSION_REQUESTS)('refuses %s with retcode=1 alone and changes nothing', async (type, fields) => {
    await call(sock, 'CREATE_VOLUME_REQ', cinderCreate('base', 16, 'pool0'));
    await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'base-snap', vol_name: 'base', smartflag: 1 });
    const before = poolFiles(d.dataDir);
    expect((await call(sock, type, fields)).text).toBe('retcode=1\n');
    expect(poolFiles(d.dataDir)).toEqual(before);
  });

  it('a malformed or oversized request is retcode=1 alone', async () => {
    const garbled = await exchange(sock, Buffer.from('CREATE_VOLUME_REQ\nvol_name=x\n\n'));
    expect(garbled.data.toString()).toBe('retcode=1\n');
    const nul = await exchange(sock, Buffer.from('[QUERY_VOLUME_REQ]\nvol_name=a\u0000b\n\n'));
    expect(nul.data.toString()).toBe('retcode=1\n');
    const huge = await exchange(sock, Buffer.from(`[QUERY_VOLUME_REQ]\nvol_name=a\npad=${'x'.repeat(70 * 1024)}\n\n`));
    expect(huge.data.toString()).toBe('retcode=1\n');
  });

  it('answers the original client form over the unix socket and TCP: one write, no empty line, never half-closed', async () => {
    const r = await exchange(sock, Buffer.from('[QUERY_VOLUME_REQ]\nvol_name=orig-v1\n'), { timeoutMs: 15_000 });
    expect(r.closedByServer).toBe(true);
    expect(r.data.toString()).toBe('retcode=0\nvolume0=[status=1]\n');
    // Over TCP, as the original client spoke it.
    expect(d.info.tcpPort).toBeGreaterThan(0);
    const tcp = await exchange({ port: d.info.tcpPort }, Buffer.from('[QUERY_VOLUME_REQ]\nvol_name=orig-v1\n'), {
      timeoutMs: 15_000,
    });
    expect(tcp.data.toString()).toBe('retcode=0\nvolume0=[status=1]\n');
    // The original client read one 1,024-byte recv: every original reply fits.
    expect(tcp.data.length).toBeLessThanOrEqual(1024);
  });
});

describe('emulator original level: the KV data plane through the real sds_cli', () => {
  let d: Daemon;
  let sock: string;
  const cli = (method: string, volume: string) => sdsCli(d.info.kvSocket, ['-c', method, '-v', volume]);

  daemonForSuite({ protocol: 'original', args: ['--pool', 'pool0:1G'] }, (started) => {
    d = started;
    sock = started.info.controlSocket;
  });
  beforeAll(async () => {
    expect(
      (await call(sock, 'CREATE_VOLUME_REQ', cinderCreate('kv-v1', 16, 'pool0', { thin_flag: '1' }))).retcode,
    ).toBe(0);
  });

  it('querydev of a volume that is not attached prints ret_code=1 alone, exit status 0', () => {
    const r = cli('querydev', 'kv-v1');
    expect({ status: r.status, stdout: r.stdout }).toEqual({ status: 0, stdout: 'ret_code=1\n' });
  });

  it('attach needs no mapping and prints only ret_code=0; querydev then gives the device', async () => {
    const a = cli('attach', 'kv-v1');
    expect({ status: a.status, stdout: a.stdout }).toEqual({ status: 0, stdout: 'ret_code=0\n' });
    const q = cli('querydev', 'kv-v1');
    expect(q.status).toBe(0);
    expect(q.stdout).toMatch(/^ret_code=0\ndev_addr=\/dev\/loop\d+\n$/);
    const device = q.values.get('dev_addr')!;
    expect(statSync(device).isBlockDevice()).toBe(true);
    const back = readFileSync(`/sys/block/${device.slice('/dev/'.length)}/loop/backing_file`, 'utf8').trim();
    expect(back).toBe(volumePath(d, 'kv-v1'));
    // Attached read-write, as os-brick attached.
    expect(readFileSync(`/sys/block/${device.slice('/dev/'.length)}/ro`, 'utf8').trim()).toBe('0');
    expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'kv-v1' })).text).toBe('retcode=0\nvolume0=[status=2]\n');
  });

  it('attach of an attached volume prints ret_code=50151401 alone', () => {
    const r = cli('attach', 'kv-v1');
    expect({ status: r.status, stdout: r.stdout }).toEqual({ status: 0, stdout: 'ret_code=50151401\n' });
  });

  it('an attached volume cannot be deleted (retcode=1)', async () => {
    expect((await call(sock, 'DELETE_VOLUME_REQ', { vol_name: 'kv-v1' })).text).toBe('retcode=1\n');
    expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'kv-v1' })).text).toBe('retcode=0\nvolume0=[status=2]\n');
  });

  it('detach prints ret_code=0; detach of a volume that is not attached prints ret_code=50155007', async () => {
    const device = cli('querydev', 'kv-v1').values.get('dev_addr')!;
    const r = cli('detach', 'kv-v1');
    expect({ status: r.status, stdout: r.stdout }).toEqual({ status: 0, stdout: 'ret_code=0\n' });
    const losetup = spawnSync('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE'], {
      encoding: 'utf8',
    }).stdout;
    expect(losetup.split('\n').some((l) => l.startsWith(`${device} `) && l.includes(volumePath(d, 'kv-v1')))).toBe(
      false,
    );
    const again = cli('detach', 'kv-v1');
    expect({ status: again.status, stdout: again.stdout }).toEqual({ status: 0, stdout: 'ret_code=50155007\n' });
    expect(cli('querydev', 'kv-v1').stdout).toBe('ret_code=1\n');
    expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'kv-v1' })).text).toBe('retcode=0\nvolume0=[status=1]\n');
  });

  it('a volume that does not exist gets a non-zero code outside every success set', () => {
    const success = { attach: ['0', '50151401', '50151405'], detach: ['0', '50151209', '50155007'], querydev: ['0'] };
    for (const method of ['attach', 'detach', 'querydev'] as const) {
      const r = cli(method, 'kv-none');
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(/^ret_code=-?\d+\n$/);
      expect(success[method]).not.toContain(r.values.get('ret_code'));
    }
  });

  it('deletes leave nothing in the pool', async () => {
    expect((await call(sock, 'DELETE_VOLUME_REQ', { vol_name: 'kv-v1' })).text).toBe('retcode=0\n');
    await waitGone(sock, 'QUERY_VOLUME_REQ', { vol_name: 'kv-v1' });
    expect(poolFiles(d.dataDir)).toEqual({ volumes: [], snapshots: [], tmp: [] });
  });
});

describe('emulator handler tables and the catalog', () => {
  const handler: Handler = () => ({ retcode: 0, fields: [] });

  it('accepts a table with exactly the types of its level and names what is missing or extra', () => {
    const table = (types: string[]) => new Map(types.map((t) => [t, handler]));
    const original = requestTypesOf('original');
    expect(checkedAgainstCatalog(table(original), 'original').size).toBe(9);
    expect(() => checkedAgainstCatalog(table(original.slice(1)), 'original')).toThrow(
      `missing ${original[0]}, extra none`,
    );
    expect(() => checkedAgainstCatalog(table([...original, 'MAP_VOLUME_REQ']), 'original')).toThrow(
      'missing none, extra MAP_VOLUME_REQ',
    );
    expect(() => checkedAgainstCatalog(table(original), 'extended')).toThrow(/missing QUERY_CAPABILITY_REQ/);
  });
});

describe('emulator original level: settings and the store after a stop', () => {
  it('SDS_EMULATOR_PROTOCOL=original selects it, a configured token is not asked for, and a stopped store lists what is left', async () => {
    const d = await startDaemon({
      env: { SDS_EMULATOR_PROTOCOL: 'original', SDS_VBS_TOKEN: 'secret-token' },
      args: ['--pool', 'pool0:1G'],
    });
    try {
      expect((await call(d.info.controlSocket, 'QUERY_CAPABILITY_REQ')).text).toBe('retcode=1\n');
      expect((await call(d.info.controlSocket, 'CREATE_VOLUME_REQ', cinderCreate('left-v', 16, 'pool0'))).text).toBe(
        'retcode=0\n',
      );
      expect(
        (
          await call(d.info.controlSocket, 'CREATE_SNAPSHOT_REQ', {
            snap_name: 'left-s',
            vol_name: 'left-v',
            smartflag: 1,
          })
        ).retcode,
      ).toBe(0);
      expect(poolFiles(d.dataDir)).toEqual({ volumes: ['pool0/left-v'], snapshots: ['pool0/left-s'], tmp: [] });
      // While the daemon runs, its store is locked: the listing comes from the pool files.
      expect(backendObjects(d.dataDir)).toEqual({ volumes: ['pool0/left-v'], snapshots: ['pool0/left-s'] });
      expect(await waitForLog(d, /checks no token/)).toBeTruthy();
    } finally {
      const r = await stopAndCheckKeeping(d);
      expect(r.leaks).toEqual({ code: 0, loops: [], mounts: [] });
      expect(r.rows).toEqual({
        volumes: [{ name: 'left-v', pool: 'pool0', state: 'available' }],
        snapshots: [{ name: 'left-s', vol_name: 'left-v', pool: 'pool0', state: 'available' }],
        attachments: [],
      });
    }
  });

  it('an unknown --protocol stops the daemon with exit status 2 naming the setting', () => {
    const dir = makeTempDir();
    try {
      const r = spawnSync(process.execPath, [EMULATOR_MAIN, '--data-dir', dir, '--protocol', 'v2'], {
        encoding: 'utf8',
      });
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/--protocol \(SDS_EMULATOR_PROTOCOL\)/);
    } finally {
      forceCleanup(dir);
    }
  });
});

/** Stops the daemon, reads its store read-only, then checks for leaks and removes the dir. */
async function stopAndCheckKeeping(
  d: Daemon,
): Promise<{ leaks: { code: number | null; loops: string[]; mounts: string[] }; rows: ReturnType<typeof storeRows> }> {
  const code = await d.stop();
  let rows: ReturnType<typeof storeRows>;
  try {
    rows = storeRows(d.dataDir);
    // Stopped (an XFS pool unmounted, so its files out of sight): the same listing now comes from the store.
    expect(backendObjects(d.dataDir)).toEqual({
      volumes: rows.volumes.map((v) => `${v.pool}/${v.name}`),
      snapshots: rows.snapshots.map((s) => `${s.pool}/${s.name}`),
    });
    if (/"poolType":"xfs-reflink"/.test(d.stderr()))
      expect(poolFiles(d.dataDir)).toEqual({ volumes: [], snapshots: [], tmp: [] });
  } catch (err) {
    forceCleanup(d.dir);
    throw err;
  }
  const leaks = await stopAndCheck(d);
  return { leaks: { ...leaks, code }, rows };
}
