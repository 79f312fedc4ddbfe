// The fallback pool when XFS or root is missing (forced here with --pool-type=directory): a plain
// directory on the host file system that refuses linked clones and makes sparse full copies.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { call, type Daemon, MiB, sdsCli, snapshotPath, volumePath } from './support/emulator.js';
import { daemonForSuite } from './support/emulator-suite.js';

describe('directory pool', () => {
  let d: Daemon;
  let sock: string;

  daemonForSuite({ args: ['--pool-type=directory', '--pool', 'pool0:2G'] }, (started) => {
    d = started;
    sock = started.info.controlSocket;
  });

  it('reports pool_type=directory, linked_clone=0, and no linked_clone capability', async () => {
    const pool = (await call(sock, 'QUERY_POOLS_CAPABILITY_REQ')).record('pool0');
    expect(pool).toMatchObject({ stor_id: 'pool0', pool_type: 'directory', linked_clone: '0', health: 'ok' });
    expect(Number(pool.total_capacity_mb)).toBeGreaterThan(0);
    const caps = (await call(sock, 'QUERY_CAPABILITY_REQ')).fields.getAll('capability');
    expect(caps).not.toContain('linked_clone');
    expect(caps).toContain('full_clone');
  });

  it('refuses linked clones with -900015 and makes sparse full copies', async () => {
    expect((await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'v', vol_size: 64 })).retcode).toBe(0);
    expect((await call(sock, 'MAP_VOLUME_REQ', { vol_name: 'v', host_id: d.info.hostId })).retcode).toBe(0);
    const dev = sdsCli(d.info.kvSocket, ['-c', 'attach', '-v', 'v']).values.get('dev_addr')!;
    expect(dev).toMatch(/^\/dev\/loop\d+$/);
    const data = randomBytes(MiB);
    const fd = openSync(dev, 'r+');
    writeSync(fd, data, 0, MiB, 10 * MiB);
    fsyncSync(fd);
    closeSync(fd);

    const snap = await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 's', vol_name: 'v' });
    expect(snap.retcode).toBe(0);
    expect(statSync(snapshotPath(d, 's')).blocks * 512).toBeLessThanOrEqual(2 * MiB);
    const linked = await call(sock, 'CREATE_VOLUME_FROM_SNAPSHOT_REQ', { vol_name: 'l', snap_name_src: 's' });
    expect(linked.retcode).toBe(-900015);
    expect(linked.get('ret_desc')).toMatch(/^clone_type:/);
    expect(
      (await call(sock, 'CLONE_VOLUME_REQ', { vol_name: 'l', src_vol_name: 'v', clone_type: 'linked' })).retcode,
    ).toBe(-900015);

    const full = await call(sock, 'CREATE_VOLUME_FROM_SNAPSHOT_REQ', {
      vol_name: 'f',
      snap_name_src: 's',
      clone_type: 'full',
      vol_size: 128,
    });
    expect(full.retcode).toBe(0);
    expect(full.record('volume0')).toMatchObject({ clone_type: 'full', vol_size: '128' });
    const st = statSync(volumePath(d, 'f'));
    expect(st.size).toBe(128 * MiB);
    expect(st.blocks * 512).toBeLessThanOrEqual(2 * MiB);
    const rfd = openSync(volumePath(d, 'f'), 'r');
    const back = Buffer.alloc(MiB);
    readSync(rfd, back, 0, MiB, 10 * MiB);
    closeSync(rfd);
    expect(back.equals(data)).toBe(true);

    expect(sdsCli(d.info.kvSocket, ['-c', 'detach', '-v', 'v']).values.get('ret_code')).toBe('0');
    for (const name of ['v', 'f']) expect((await call(sock, 'DELETE_VOLUME_REQ', { vol_name: name })).retcode).toBe(0);
  });
});
