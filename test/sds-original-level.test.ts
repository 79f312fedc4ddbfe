// The original protocol level, unit by unit: the negotiation of the level, the requests the client sends on
// it (all 22 CREATE keys, pools by id, no extension keys), status-only records, and how a generic failure is
// explained by follow-up queries. A fake VBS answers like the 2014 product (retcode=1 for every failure).
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MiB, GiB } from '../src/sds/backend.js';
import { SdsClient, type SdsClientOptions } from '../src/sds/client.js';
import { askLevel, negotiateLevel } from '../src/sds/level.js';
import { Key, ORIGINAL_CREATE_KEYS, isKnownAt } from '../src/protocol/catalog.js';
import { RetCode, type VbsRequest } from '../src/protocol/vbs.js';
import { reply, type FakeHandler } from './support/fake-vbs.js';
import { expectSdsError, sdsFixture } from './support/sds-fixture.js';

const sds = sdsFixture('sds-original-test');
const fake = sds.fake;
function client(address: string, extra: Partial<SdsClientOptions> = {}): SdsClient {
  return sds.client({
    addresses: address,
    retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 5 },
    requestTimeoutMs: 5_000,
    level: 'original',
    pools: ['P1'],
    ...extra,
  });
}

/** A VBS of the original level: the nine requests over a tiny state, status-only records, retcode=1 failures. */
function productVbs(state: { volumes: Map<string, number>; snapshots: Set<string>; freeGiB: number }): FakeHandler {
  return (req: VbsRequest) => {
    const f = (k: string) => req.fields.get(k) ?? '';
    if (!isKnownAt(req.type, 'original')) return reply(1);
    switch (req.type) {
      case 'QUERY_POOLS_CAPABILITY_REQ': {
        const ids = req.fields.getAll('pool_id');
        if (ids.some((id) => id !== 'P1')) return reply(1);
        return reply(
          0,
          ids.length
            ? { pool0: `[stor_id=P1,total_capacity=10,usable_capacity=${state.freeGiB},raid_level=0,iops=0]` }
            : {},
        );
      }
      case 'QUERY_VOLUME_REQ':
        return state.volumes.has(f('vol_name')) ? reply(0, { volume0: '[status=1]' }) : reply(RetCode.NOT_EXIST);
      case 'QUERY_SNAPSHOT_REQ':
        return state.snapshots.has(f('snap_name')) ? reply(0, { snapshot0: '[status=1]' }) : reply(RetCode.NOT_EXIST);
      case 'CREATE_VOLUME_REQ': {
        const mib = Number(f('vol_size'));
        if (state.volumes.has(f('vol_name')) || f('pool_id') !== 'P1' || mib > state.freeGiB * 1024) return reply(1);
        state.volumes.set(f('vol_name'), mib);
        return reply(0);
      }
      case 'CREATE_VOLUME_FROM_SNAPSHOT_REQ':
        if (state.volumes.has(f('vol_name')) || !state.snapshots.has(f('snap_name_src'))) return reply(1);
        state.volumes.set(f('vol_name'), Number(f('vol_size')));
        return reply(0);
      case 'CREATE_SNAPSHOT_REQ':
        if (state.snapshots.has(f('snap_name')) || !state.volumes.has(f('vol_name'))) return reply(1);
        state.snapshots.add(f('snap_name'));
        return reply(0);
      case 'DELETE_VOLUME_REQ':
        return state.volumes.delete(f('vol_name')) ? reply(0) : reply(1);
      case 'DELETE_SNAPSHOT_REQ':
        return state.snapshots.delete(f('snap_name')) ? reply(0) : reply(1);
      case 'EXTEND_VOLUME_REQ':
        if (!state.volumes.has(f('vol_name'))) return reply(1);
        state.volumes.set(f('vol_name'), Number(f('vol_size')));
        return reply(0);
      default:
        return reply(1);
    }
  };
}
const freshState = () => ({ volumes: new Map<string, number>(), snapshots: new Set<string>(), freeGiB: 5 });

describe('negotiating the level', () => {
  it('an answered QUERY_CAPABILITY_REQ is extended, with its capabilities', async () => {
    const f = await fake(() =>
      reply(0, [
        ['product', 'SDSHypervisor'],
        ['capability', 'list'],
        ['capability', 'map'],
      ]),
    );
    const got = await negotiateLevel(client(f.address, { level: 'extended' }), 'auto');
    expect(got).toMatchObject({ level: 'extended', how: 'answered' });
    expect(got.system?.capabilities).toEqual(['list', 'map']);
  });

  it.each([
    ['the generic failure retcode=1', () => reply(1)],
    ['an unknown-request answer', () => reply(RetCode.UNKNOWN_REQUEST)],
    ['a connection closed without a reply', () => ({ close: true as const })],
  ])('%s is the original level', async (_what, answer) => {
    const f = await fake(answer);
    expect(await negotiateLevel(client(f.address, { level: 'extended' }), 'auto')).toMatchObject({
      level: 'original',
      how: 'refused',
    });
  });

  it('a request taken and never answered is the original level (the least helpful reading)', async () => {
    const f = await fake(() => ({ hang: true }));
    expect(await askLevel(client(f.address, { level: 'extended' }), {}, 100)).toMatchObject({
      level: 'original',
      how: 'refused',
    });
  });

  it('a refused token is an extended answer (only that level has tokens)', async () => {
    const f = await fake(() => reply(RetCode.AUTH_FAILED));
    expect(await askLevel(client(f.address, { level: 'extended' }))).toMatchObject({ level: 'extended' });
  });

  it('forced original asks nothing; an unreachable VBS is asked again, then extended is assumed', async () => {
    const f = await fake(() => reply(0));
    expect(await negotiateLevel(client(f.address), 'original')).toEqual({ level: 'original', how: 'forced' });
    expect(f.seen).toHaveLength(0);
    const nowhere = client(`unix://${join(sds.dir, 'nobody.sock')}`, { level: 'extended' });
    const attempts: number[] = [];
    const got = await negotiateLevel(nowhere, 'auto', {
      retryDelayMs: 1,
      unreachableWaitMs: 20,
      onUnreachable: (a) => attempts.push(a),
    });
    expect(got).toEqual({ level: 'extended', how: 'assumed' });
    expect(attempts.length).toBeGreaterThan(0);
  });
});

describe('requests on the original level', () => {
  it('CREATE_VOLUME_REQ carries the 22 keys with neutral values, no extension key; the answer comes from the request', async () => {
    const state = freshState();
    const f = await fake(productVbs(state));
    const v = await client(f.address, { token: 'secret-token' }).createVolume({
      name: 'v1',
      sizeBytes: GiB,
      poolId: 'P1',
      thin: false,
    });
    expect(v).toMatchObject({
      name: 'v1',
      sizeBytes: GiB,
      poolId: 'P1',
      thin: false,
      state: 'available',
      statusOnly: true,
    });
    const sent = f.seen.find((r) => r.type === 'CREATE_VOLUME_REQ')!;
    const keys = sent.fields.list.map(([k]) => k);
    expect(keys).toEqual([Key.VOL_NAME, Key.VOL_SIZE, ...ORIGINAL_CREATE_KEYS]);
    expect(keys).toHaveLength(22);
    expect(sent.fields.get('thin_flag')).toBe('0');
    expect(sent.fields.get('vol_size')).toBe('1024');
    for (const r of f.seen) expect(r.fields.has('auth_token') || r.fields.has('request_id')).toBe(false);
  });

  it('pools are asked by id: the configured ones, never pool_num=0', async () => {
    const f = await fake(productVbs(freshState()));
    const pools = await client(f.address).queryPools();
    expect(pools).toMatchObject([{ id: 'P1', totalBytes: 10 * GiB, freeBytes: 5 * GiB, hostsUnknown: true }]);
    expect(f.seen[0]!.fields.getAll('pool_id')).toEqual(['P1']);
    expect(f.seen[0]!.fields.get('pool_num')).toBe('1');
  });

  it('a configured pool the VBS does not know costs only itself', async () => {
    const f = await fake(productVbs(freshState()));
    const pools = await client(f.address, { pools: ['P1', 'gone'] }).queryPools();
    expect(pools.map((p) => p.id)).toEqual(['P1']);
  });

  it('the generic failure of a create: a taken name is AlreadyExists, a full pool NoSpace, an unknown pool PoolNotFound', async () => {
    const state = freshState();
    const f = await fake(productVbs(state));
    const c = client(f.address);
    await c.createVolume({ name: 'v1', sizeBytes: GiB, poolId: 'P1' });
    await expectSdsError(c.createVolume({ name: 'v1', sizeBytes: GiB, poolId: 'P1' }), 'AlreadyExists', /taken/);
    await expectSdsError(
      c.createVolume({ name: 'v2', sizeBytes: 8 * GiB, poolId: 'P1' }),
      'NoSpace',
      /P1 has 5120 MiB free/,
    );
    await expectSdsError(c.createVolume({ name: 'v3', sizeBytes: GiB, poolId: 'P9' }), 'PoolNotFound');
  });

  it('from a snapshot: a missing source is NotFound; a full clone is refused before anything is sent', async () => {
    const f = await fake(productVbs(freshState()));
    const c = client(f.address);
    await expectSdsError(
      c.createVolumeFromSnapshot({ name: 'v1', sizeBytes: GiB, poolId: 'P1', snapshotName: 's0', cloneType: 'linked' }),
      'NotFound',
      /s0/,
    );
    const before = f.seen.length;
    await expectSdsError(
      c.createVolumeFromSnapshot({ name: 'v1', sizeBytes: GiB, snapshotName: 's0', cloneType: 'full' }),
      'NotSupported',
    );
    expect(f.seen.length).toBe(before);
  });

  it('snapshots: status-only records completed from the request; a missing source volume is NotFound', async () => {
    const state = freshState();
    const f = await fake(productVbs(state));
    const c = client(f.address);
    await c.createVolume({ name: 'v1', sizeBytes: 16 * MiB, poolId: 'P1' });
    expect(await c.createSnapshot('s1', 'v1')).toMatchObject({
      name: 's1',
      volumeName: 'v1',
      state: 'available',
      statusOnly: true,
    });
    expect((await c.getSnapshot('s1'))?.statusOnly).toBe(true);
    await expectSdsError(c.createSnapshot('s2', 'nothing'), 'NotFound', /nothing/);
    await expectSdsError(c.createSnapshot('s1', 'v1'), 'AlreadyExists');
  });

  it('deletes poll until -900079; a delete of what is gone is success', async () => {
    const state = freshState();
    const f = await fake(productVbs(state));
    const c = client(f.address);
    await c.createVolume({ name: 'v1', sizeBytes: 16 * MiB, poolId: 'P1' });
    await c.deleteVolume('v1');
    await c.deleteVolume('v1');
    await c.deleteSnapshot('never');
    expect(state.volumes.size).toBe(0);
  });

  it('extension requests are refused without being sent', async () => {
    const f = await fake(productVbs(freshState()));
    const c = client(f.address);
    await expectSdsError(c.listVolumes({}), 'NotSupported');
    await expectSdsError(c.mapVolume('v1', 'h1', { readOnly: false, exclusive: true }), 'NotSupported');
    await expectSdsError(
      c.cloneVolume({ name: 'v2', sizeBytes: GiB, sourceVolumeName: 'v1', cloneType: 'linked' }),
      'NotSupported',
    );
    await expectSdsError(c.modifyVolume('v1', { qos: { maxIops: 5 } }), 'NotSupported');
    expect(f.seen).toHaveLength(0);
  });

  it('an extend of a missing volume is NotFound; a successful one reports the asked size', async () => {
    const state = freshState();
    const f = await fake(productVbs(state));
    const c = client(f.address);
    await expectSdsError(c.extendVolume('v1', GiB), 'NotFound');
    await c.createVolume({ name: 'v1', sizeBytes: 16 * MiB, poolId: 'P1' });
    expect((await c.extendVolume('v1', 32 * MiB)).sizeBytes).toBe(32 * MiB);
    expect(state.volumes.get('v1')).toBe(32);
  });
});
