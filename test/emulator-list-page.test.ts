// LIST_VOLUMES_REQ reads a page's mappings and snapshot counts in one query each (emulator/records.ts,
// volumePageRecords): every record of a page must still say what QUERY_VOLUME_REQ says of that volume.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type Daemon, startDaemon, stopAndCheck } from './support/emulator.js';

describe('emulator LIST_VOLUMES_REQ pages', () => {
  let d: Daemon;
  let sock: string;
  const must = async (type: string, fields: Record<string, string | number>) =>
    expect((await call(sock, type, fields)).retcode).toBe(0);

  beforeAll(async () => {
    d = await startDaemon({ args: ['--pool', 'pool0:1G', '--extra-host', 'host-b', '--extra-host', 'host-c'] });
    sock = d.info.controlSocket;
    for (const name of ['lp-a', 'lp-b', 'lp-c', 'lp-d', 'lp-e']) {
      await must('CREATE_VOLUME_REQ', { vol_name: name, vol_size: 16, pool_id: 'pool0', thin_flag: 1 });
    }
    // lp-b: two hosts, read-only; lp-c: two snapshots; lp-d: one host and one snapshot; lp-a, lp-e: neither.
    await must('MAP_VOLUME_REQ', { vol_name: 'lp-b', host_id: 'host-b', access_mode: 'ro' });
    await must('MAP_VOLUME_REQ', { vol_name: 'lp-b', host_id: 'host-c', access_mode: 'ro' });
    await must('CREATE_SNAPSHOT_REQ', { snap_name: 'lp-c-1', vol_name: 'lp-c' });
    await must('CREATE_SNAPSHOT_REQ', { snap_name: 'lp-c-2', vol_name: 'lp-c' });
    await must('MAP_VOLUME_REQ', { vol_name: 'lp-d', host_id: 'host-c' });
    await must('CREATE_SNAPSHOT_REQ', { snap_name: 'lp-d-1', vol_name: 'lp-d' });
  });

  afterAll(async () => {
    expect(await stopAndCheck(d)).toEqual({ code: 0, loops: [], mounts: [] });
  });

  it('gives each record of every page the mappings and snapshot count of its own volume', async () => {
    const listed: Record<string, string>[] = [];
    let marker = '';
    do {
      const page = await call(sock, 'LIST_VOLUMES_REQ', { marker, limit: 2 });
      expect(page.retcode).toBe(0);
      const count = Number(page.get('vol_num'));
      for (let i = 0; i < count; i++) listed.push(page.record(`volume${i}`));
      marker = page.get('next_marker') ?? '';
    } while (marker !== '');

    expect(listed.map((r) => r.vol_name)).toEqual(['lp-a', 'lp-b', 'lp-c', 'lp-d', 'lp-e']);
    const summary = Object.fromEntries(listed.map((r) => [r.vol_name, [r.mapped_hosts, r.snap_num]]));
    expect(summary).toEqual({
      'lp-a': ['', '0'],
      'lp-b': ['host-b:host-c', '0'],
      'lp-c': ['', '2'],
      'lp-d': ['host-c', '1'],
      'lp-e': ['', '0'],
    });
    for (const record of listed) {
      const queried = (await call(sock, 'QUERY_VOLUME_REQ', { vol_name: record.vol_name! })).record('volume0');
      expect(record).toEqual(queried);
    }
  });
});
