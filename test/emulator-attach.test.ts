// The data plane end to end: the real sds_cli talks to the emulator's KV socket, volumes become loop
// devices, data written to a device reads back through a linked clone and a full copy of its snapshot;
// QoS lands in the blkio throttle; shutdown detaches idle devices and leaves busy ones.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { basename, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  call,
  type Daemon,
  extents,
  forceCleanup,
  leftovers,
  makeTempDir,
  MiB,
  SDS_CLI,
  sdsCli,
  snapshotPath,
  startDaemon,
  stopAndCheck,
  volumePath,
} from './support/emulator.js';
import { daemonForSuite } from './support/emulator-suite.js';
import { readAt, writeAt } from './support/block-io.js';

const THROTTLE = '/sys/fs/cgroup/blkio';

function devNumbers(device: string): string {
  return readFileSync(`/sys/block/${basename(device)}/dev`, 'utf8').trim();
}

function throttleLine(kind: string, device: string): string | undefined {
  const majMin = devNumbers(device);
  return readFileSync(join(THROTTLE, `blkio.throttle.${kind}_device`), 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${majMin} `));
}

function throttleWritable(): boolean {
  try {
    closeSync(openSync(join(THROTTLE, 'blkio.throttle.read_iops_device'), 'r+'));
    return true;
  } catch {
    return false;
  }
}

describe('sds_cli arguments and transport errors', () => {
  it.each([
    [[]],
    [['-c', 'attach']],
    [['-c', 'attach', '-v']],
    [['-c', 'bogus', '-v', 'vol1']],
    [['-v', 'vol1', '-c', 'attach']],
    [['-c', 'attach', '-v', 'vol1', 'extra']],
    [['-c', 'attach', '-v', '../etc']],
    [['--method', 'attach', '-v', 'vol1']],
  ])('prints ret_code=50159003 and exits 2 for %j', (args) => {
    const r = sdsCli('/nonexistent.sock', args);
    expect(r.status).toBe(2);
    expect(r.values.get('ret_code')).toBe('50159003');
    expect(r.stderr).toContain('usage');
  });

  it('prints ret_code=50159001 when the VBS cannot be reached, also on the default socket path', () => {
    const dir = makeTempDir();
    try {
      const r = sdsCli(join(dir, 'missing.sock'), ['-c', 'attach', '-v', 'vol1']);
      expect(r.status).toBe(0);
      expect(r.values.get('ret_code')).toBe('50159001');
      const def = sdsCli(undefined, ['-c', 'querydev', '-v', 'vol1']);
      if (!existsSync('/run/sdshypervisor/kv.sock')) {
        expect(def.values.get('ret_code')).toBe('50159001');
        expect(def.stderr).toContain('/run/sdshypervisor/kv.sock');
      }
    } finally {
      forceCleanup(dir);
    }
  });

  it('validates the reply: garbage is 50159006, key=value lines are printed as they came', async () => {
    const dir = makeTempDir();
    const sock = join(dir, 'fake.sock');
    let answer = '';
    const requests: string[] = [];
    const server = net.createServer((s) => {
      let got = '';
      s.on('data', (d) => {
        got += d.toString();
        if (got.endsWith('\n\n')) {
          requests.push(got);
          s.end(answer);
        }
      });
    });
    await new Promise<void>((r) => server.listen(sock, r));
    try {
      const run = (reply: string) => {
        answer = reply;
        return new Promise<{ status: number | null; stdout: string; code: string | undefined }>((resolve) => {
          // sds_cli blocks on the socket: run it asynchronously so the fake server can answer.
          const p = spawn(SDS_CLI, ['-c', 'attach', '-v', 'vol1'], { env: { ...process.env, SDS_KV_SOCKET: sock } });
          let out = '';
          p.stdout.on('data', (x: Buffer) => {
            out += x.toString();
          });
          p.on('close', (status) => resolve({ status, stdout: out, code: /^ret_code=(.*)$/m.exec(out)?.[1] }));
        });
      };
      const good = await run('ret_code=0\r\nret_desc="success"\ndev_addr=/dev/loop99\n');
      expect(good.status).toBe(0);
      expect(good.stdout).toBe('ret_code=0\nret_desc="success"\ndev_addr=/dev/loop99\n');
      expect(requests[0]).toBe('method=attach\nvolume=vol1\n\n');
      for (const garbage of ['hello\n', 'ret_code=abc\n', 'ret_desc="no code"\n', 'ret_code=0', 'Ret_Code=0\n', '']) {
        const r = await run(garbage);
        expect(r.status).toBe(0);
        expect(r.code).toBe('50159006');
      }
    } finally {
      server.close();
      forceCleanup(dir);
    }
  });
});

describe('attach through sds_cli', () => {
  let d: Daemon;
  let sock: string;
  let kv: string;
  const cli = (method: string, volume: string) => sdsCli(kv, ['-c', method, '-v', volume]);
  const chunks = [0, 5 * MiB + 4096, 40 * MiB].map((offset) => ({ offset, data: randomBytes(MiB) }));

  daemonForSuite({ args: ['--pool', 'pool0:4G'] }, (started) => {
    d = started;
    sock = started.info.controlSocket;
  });
  beforeAll(async () => {
    kv = d.info.kvSocket;
    expect((await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'data', vol_size: 64 })).retcode).toBe(0);
  });

  it('refuses to attach a volume not mapped to this host (50155007) or missing (50159002)', () => {
    expect(cli('attach', 'data').values.get('ret_code')).toBe('50155007');
    expect(cli('attach', 'no-such-volume').values.get('ret_code')).toBe('50159002');
    expect(cli('querydev', 'no-such-volume').values.get('ret_code')).toBe('50159002');
    expect(cli('querydev', 'data').values.get('ret_code')).toBe('50159004');
    expect(cli('detach', 'data').values.get('ret_code')).toBe('0');
  });

  it('attaches as a loop device over the volume file, idempotently', async () => {
    expect((await call(sock, 'MAP_VOLUME_REQ', { vol_name: 'data', host_id: d.info.hostId })).retcode).toBe(0);
    const a = cli('attach', 'data');
    expect(a.status).toBe(0);
    expect(a.values.get('ret_code')).toBe('0');
    const dev = a.values.get('dev_addr')!;
    expect(dev).toMatch(/^\/dev\/loop\d+$/);
    expect(readFileSync(`/sys/block/${basename(dev)}/loop/backing_file`, 'utf8').trim()).toBe(volumePath(d, 'data'));
    expect(Number(readFileSync(`/sys/block/${basename(dev)}/size`, 'utf8')) * 512).toBe(64 * MiB);
    // cache_policy=none: direct I/O into the file, no second page cache.
    expect(readFileSync(`/sys/block/${basename(dev)}/loop/dio`, 'utf8').trim()).toBe('1');
    const again = cli('attach', 'data');
    expect(again.values.get('ret_code')).toBe('50151401');
    expect(again.values.get('dev_addr')).toBe(dev);
    expect(cli('querydev', 'data').values.get('dev_addr')).toBe(dev);
    const hosts = await call(sock, 'QUERY_VOLUME_HOSTS_REQ', { vol_name: 'data' });
    expect(hosts.record('host0')).toEqual({
      host_id: d.info.hostId,
      access_mode: 'rw',
      attached: '1',
      dev_addr: dev,
      online: '1',
    });
    expect((await call(sock, 'DELETE_VOLUME_REQ', { vol_name: 'data' })).retcode).toBe(-900018);
    expect((await call(sock, 'UNMAP_VOLUME_REQ', { vol_name: 'data', host_id: d.info.hostId })).retcode).toBe(-900018);
  });

  it('serializes concurrent attaches of one volume onto one device', async () => {
    expect((await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'race', vol_size: 8 })).retcode).toBe(0);
    expect((await call(sock, 'MAP_VOLUME_REQ', { vol_name: 'race', host_id: d.info.hostId })).retcode).toBe(0);
    const runs = await Promise.all(
      Array.from(
        { length: 4 },
        () =>
          new Promise<string>((resolve) => {
            const p = spawn(SDS_CLI, ['-c', 'attach', '-v', 'race'], { env: { ...process.env, SDS_KV_SOCKET: kv } });
            let out = '';
            p.stdout.on('data', (x: Buffer) => {
              out += x.toString();
            });
            p.on('close', () => resolve(out));
          }),
      ),
    );
    const codes = runs.map((o) => /ret_code=(\d+)/.exec(o)![1]).sort();
    expect(codes).toEqual(['0', '50151401', '50151401', '50151401']);
    expect(new Set(runs.map((o) => /dev_addr=(\S+)/.exec(o)![1])).size).toBe(1);
    expect(cli('detach', 'race').values.get('ret_code')).toBe('0');
  });

  it('reads data written to the device back through a linked clone and a full copy of its snapshot', async () => {
    const dev = cli('querydev', 'data').values.get('dev_addr')!;
    for (const c of chunks) writeAt(dev, [{ offset: c.offset, data: c.data }]);
    // Taken while attached: the emulator flushes the device first.
    expect((await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'data-snap', vol_name: 'data' })).retcode).toBe(0);
    expect(
      (await call(sock, 'CREATE_VOLUME_FROM_SNAPSHOT_REQ', { vol_name: 'data-linked', snap_name_src: 'data-snap' }))
        .retcode,
    ).toBe(0);
    const full = await call(sock, 'CREATE_VOLUME_FROM_SNAPSHOT_REQ', {
      vol_name: 'data-full',
      snap_name_src: 'data-snap',
      clone_type: 'full',
    });
    expect(full.retcode).toBe(0);
    // The full copy holds the data only: 3 MiB written, not 64 MiB.
    expect(Number(full.record('volume0').alloc_size)).toBeGreaterThanOrEqual(3);
    expect(Number(full.record('volume0').alloc_size)).toBeLessThanOrEqual(4);
    // A write after the snapshot must not show in the clones.
    writeAt(dev, [{ offset: 0, data: Buffer.alloc(4096, 0xee) }]);

    for (const name of ['data-linked', 'data-full']) {
      expect((await call(sock, 'MAP_VOLUME_REQ', { vol_name: name, host_id: d.info.hostId })).retcode).toBe(0);
      const cdev = cli('attach', name).values.get('dev_addr')!;
      expect(cdev).toMatch(/^\/dev\/loop\d+$/);
      for (const c of chunks) expect(readAt(cdev, c.offset, MiB).equals(c.data)).toBe(true);
      expect(readAt(cdev, 20 * MiB, MiB).equals(Buffer.alloc(MiB))).toBe(true);
      expect(cli('detach', name).values.get('ret_code')).toBe('0');
    }
    expect(readAt(dev, 0, 4096).equals(Buffer.alloc(4096, 0xee))).toBe(true);
  });

  it('shares extents in the linked clone and none in the full copy', () => {
    const linked = extents(volumePath(d, 'data-linked'));
    const full = extents(volumePath(d, 'data-full'));
    const snap = extents(snapshotPath(d, 'data-snap'));
    expect(linked.data).toBeGreaterThan(0);
    expect(linked.shared).toBeGreaterThan(0);
    expect(snap.shared).toBeGreaterThan(0);
    expect(full.data).toBeGreaterThan(0);
    expect(full.shared).toBe(0);
  });

  it('applies QoS to the attached device through the blkio throttle and removes it at detach', async () => {
    const caps = (await call(sock, 'QUERY_CAPABILITY_REQ')).fields.getAll('capability');
    expect(caps.includes('qos_enforced')).toBe(throttleWritable());
    const dev = cli('querydev', 'data').values.get('dev_addr')!;
    const mod = await call(sock, 'MODIFY_VOLUME_REQ', { vol_name: 'data', max_iops: 300, max_mbps: 20, IOPRIORITY: 3 });
    expect(mod.record('volume0')).toMatchObject({ max_iops: '300', max_mbps: '20', IOPRIORITY: '3' });
    if (!throttleWritable()) return;
    const majMin = devNumbers(dev);
    expect(throttleLine('read_iops', dev)).toBe(`${majMin} 300`);
    expect(throttleLine('write_iops', dev)).toBe(`${majMin} 300`);
    expect(throttleLine('read_bps', dev)).toBe(`${majMin} 20000000`);
    expect(throttleLine('write_bps', dev)).toBe(`${majMin} 20000000`);
    await call(sock, 'MODIFY_VOLUME_REQ', { vol_name: 'data', max_iops: 0 });
    expect(throttleLine('read_iops', dev)).toBeUndefined();
    expect(throttleLine('write_bps', dev)).toBe(`${majMin} 20000000`);
    // A volume created with limits gets them at attach.
    expect(
      (await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'qos-born', vol_size: 8, max_iops: 77, max_mbps: 5 })).retcode,
    ).toBe(0);
    expect((await call(sock, 'MAP_VOLUME_REQ', { vol_name: 'qos-born', host_id: d.info.hostId })).retcode).toBe(0);
    const qdev = cli('attach', 'qos-born').values.get('dev_addr')!;
    expect(throttleLine('write_iops', qdev)).toBe(`${devNumbers(qdev)} 77`);
    expect(throttleLine('read_bps', qdev)).toBe(`${devNumbers(qdev)} 5000000`);
    const qMajMin = devNumbers(qdev);
    expect(cli('detach', 'qos-born').values.get('ret_code')).toBe('0');
    const lines = readFileSync(join(THROTTLE, 'blkio.throttle.write_iops_device'), 'utf8');
    expect(lines.split('\n').some((l) => l.startsWith(`${qMajMin} `))).toBe(false);
  });

  it('switches direct I/O with the cache policy of an attached volume', async () => {
    const dev = cli('querydev', 'data').values.get('dev_addr')!;
    const dio = () => readFileSync(`/sys/block/${basename(dev)}/loop/dio`, 'utf8').trim();
    expect((await call(sock, 'MODIFY_VOLUME_REQ', { vol_name: 'data', cache_policy: 'readwrite' })).retcode).toBe(0);
    expect(dio()).toBe('0');
    expect((await call(sock, 'MODIFY_VOLUME_REQ', { vol_name: 'data', cache_policy: 'none' })).retcode).toBe(0);
    expect(dio()).toBe('1');
  });

  it('extends an attached volume online: the device grows', async () => {
    const dev = cli('querydev', 'data').values.get('dev_addr')!;
    expect((await call(sock, 'EXTEND_VOLUME_REQ', { vol_name: 'data', vol_size: 96 })).retcode).toBe(0);
    expect(Number(readFileSync(`/sys/block/${basename(dev)}/size`, 'utf8')) * 512).toBe(96 * MiB);
    expect(readAt(dev, chunks[2]!.offset, MiB).equals(chunks[2]!.data)).toBe(true);
  });

  it('attaches a read-only mapping read-only', async () => {
    expect((await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'ro-vol', vol_size: 8 })).retcode).toBe(0);
    expect(
      (await call(sock, 'MAP_VOLUME_REQ', { vol_name: 'ro-vol', host_id: d.info.hostId, access_mode: 'ro' })).retcode,
    ).toBe(0);
    const dev = cli('attach', 'ro-vol').values.get('dev_addr')!;
    expect(readFileSync(`/sys/block/${basename(dev)}/ro`, 'utf8').trim()).toBe('1');
    expect(cli('detach', 'ro-vol').values.get('ret_code')).toBe('0');
  });

  it('refuses to detach a mounted device, detaches after unmount; unmap force detaches', async () => {
    const dev = cli('querydev', 'data').values.get('dev_addr')!;
    const mnt = join(d.dir, 'mnt');
    mkdirSync(mnt, { recursive: true });
    expect(spawnSync('mkfs.ext4', ['-q', '-F', dev]).status).toBe(0);
    expect(spawnSync('mount', [dev, mnt]).status).toBe(0);
    try {
      const busy = cli('detach', 'data');
      expect(busy.values.get('ret_code')).toBe('50159005');
      expect(cli('querydev', 'data').values.get('dev_addr')).toBe(dev);
    } finally {
      expect(spawnSync('umount', [mnt]).status).toBe(0);
    }
    expect(cli('detach', 'data').values.get('ret_code')).toBe('0');
    expect(cli('detach', 'data').values.get('ret_code')).toBe('0');
    expect(cli('querydev', 'data').values.get('ret_code')).toBe('50159004');
    expect(leftovers(d.dir).loops.filter((l) => l.includes('/volumes/data '))).toEqual([]);

    expect(cli('attach', 'data').values.get('ret_code')).toBe('0');
    expect((await call(sock, 'UNMAP_VOLUME_REQ', { vol_name: 'data', host_id: d.info.hostId, force: 1 })).retcode).toBe(
      0,
    );
    expect(cli('querydev', 'data').values.get('ret_code')).toBe('50159004');
    expect((await call(sock, 'DELETE_VOLUME_REQ', { vol_name: 'data' })).retcode).toBe(0);
  });
});

describe('shutdown with devices', () => {
  it('a stop returns only once the LUN device of a pool is gone, even while another process holds it', async () => {
    const d = await startDaemon({ args: ['--pool', 'pool0:1G'] });
    let holder: number | undefined;
    const letGo = (): void => {
      if (holder !== undefined) closeSync(holder);
      holder = undefined;
    };
    try {
      const lunDevice = /"device":"(\/dev\/loop\d+)"/.exec(d.stderr())?.[1];
      expect(lunDevice).toMatch(/^\/dev\/loop\d+$/);
      // A blkid or a udev probe does this: it opens the device just as the pool is unmounted. The kernel then
      // only sets autoclear and unbinds the device at the last close.
      holder = openSync(lunDevice!, 'r');
      const release = setTimeout(letGo, 600);
      expect(await d.stop()).toBe(0);
      const left = leftovers(d.dir);
      clearTimeout(release);
      letGo();
      expect(left).toEqual({ loops: [], mounts: [] });
    } finally {
      letGo();
      forceCleanup(d.dir);
    }
  });

  it('detaches idle devices, keeps a mounted one with its pool, and cleans up after the next start', async () => {
    const dir = makeTempDir();
    try {
      let d = await startDaemon({ dir, args: ['--pool', 'pool0:1G'] });
      const kv = d.info.kvSocket;
      for (const name of ['idle', 'busy']) {
        expect((await call(d.info.controlSocket, 'CREATE_VOLUME_REQ', { vol_name: name, vol_size: 32 })).retcode).toBe(
          0,
        );
        expect(
          (await call(d.info.controlSocket, 'MAP_VOLUME_REQ', { vol_name: name, host_id: d.info.hostId })).retcode,
        ).toBe(0);
        expect(sdsCli(kv, ['-c', 'attach', '-v', name]).values.get('ret_code')).toBe('0');
      }
      const busyDev = sdsCli(kv, ['-c', 'querydev', '-v', 'busy']).values.get('dev_addr')!;
      const mnt = join(dir, 'mnt');
      mkdirSync(mnt);
      expect(spawnSync('mkfs.ext4', ['-q', '-F', busyDev]).status).toBe(0);
      expect(spawnSync('mount', [busyDev, mnt]).status).toBe(0);
      expect(await d.stop()).toBe(0);
      const left = leftovers(dir);
      expect(left.loops.some((l) => l.includes('/volumes/busy'))).toBe(true);
      expect(left.loops.some((l) => l.includes('/volumes/idle'))).toBe(false);
      expect(left.mounts.some((m) => m.endsWith('/pools/pool0'))).toBe(true);
      expect(spawnSync('umount', [mnt]).status).toBe(0);

      d = await startDaemon({ dir });
      expect(sdsCli(d.info.kvSocket, ['-c', 'querydev', '-v', 'busy']).values.get('dev_addr')).toBe(busyDev);
      expect(sdsCli(d.info.kvSocket, ['-c', 'querydev', '-v', 'idle']).values.get('ret_code')).toBe('50159004');
      const r = await stopAndCheck(d);
      expect(r).toEqual({ code: 0, loops: [], mounts: [] });
    } finally {
      forceCleanup(dir);
    }
  });
});
