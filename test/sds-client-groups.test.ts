// SdsClient's group snapshot and extent-map methods against an in-test fake VBS: the requests they send,
// idempotent creates compared by member volumes, delete polling, extent pages checked strictly (a garbled
// page must never reach a backup tool), and the retry decisions of the new request types.
import { describe, expect, it } from 'vitest';
import { SdsClient, isRetriedAfterSend } from '../src/sds/client.js';
import { encodeRecord, RetCode } from '../src/protocol/vbs.js';
import { reply, snapshotRecord, type FakeHandler } from './support/fake-vbs.js';
import { expectSdsError, sdsFixture } from './support/sds-fixture.js';

const sds = sdsFixture('sds-client-groups');
async function fake(handler: FakeHandler): Promise<SdsClient> {
  const f = await sds.fake(handler);
  return sds.client({
    addresses: f.address,
    retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 },
    requestTimeoutMs: 5_000,
    deletePoll: { initialDelayMs: 1, maxDelayMs: 2 },
  });
}

const group = (over: Record<string, string | number> = {}) =>
  encodeRecord({
    status: 1,
    group_name: 'g1',
    pool_id: 'pool0',
    create_time: 1_700_000_000,
    snap_num: 2,
    vol_names: 'va:vb',
    quiesce: 'freeze',
    frozen_num: 2,
    health: 'ok',
    fault_reason: '',
    ...over,
  });
const groupReply = (retcode = 0, over: Record<string, string | number> = {}) =>
  reply(retcode, [
    ['group0', group(over)],
    ['snap_num', '2'],
    ['snapshot0', snapshotRecord({ snap_name: 'g1_a', vol_name: 'va', group_name: 'g1' })],
    ['snapshot1', snapshotRecord({ snap_name: 'g1_b', vol_name: 'vb', group_name: 'g1' })],
  ]);

describe('group snapshots', () => {
  it('sends the members sorted with quiesce and window, and reads the group with its members', async () => {
    let sent: Array<[string, string]> = [];
    const c = await fake((req) => {
      sent = req.fields.list.filter(([k]) => !['request_id'].includes(k)).map(([k, v]) => [k, v]);
      return groupReply();
    });
    const g = await c.createGroupSnapshot({
      name: 'g1',
      volumeNames: ['vb', 'va'],
      quiesce: 'freeze',
      freezeTimeoutMs: 5000,
    });
    expect(sent).toEqual([
      ['group_name', 'g1'],
      ['vol_name', 'va'],
      ['vol_name', 'vb'],
      ['quiesce', 'freeze'],
      ['freeze_timeout_ms', '5000'],
    ]);
    expect(g).toMatchObject({
      name: 'g1',
      state: 'available',
      poolId: 'pool0',
      volumeNames: ['va', 'vb'],
      quiesce: 'freeze',
      frozenCount: 2,
      healthy: true,
    });
    expect(g.snapshots.map((s) => [s.name, s.volumeName, s.groupName])).toEqual([
      ['g1_a', 'va', 'g1'],
      ['g1_b', 'vb', 'g1'],
    ]);
  });

  it('treats -900011 with the same members as success and other members as AlreadyExists', async () => {
    const c = await fake(() => groupReply(RetCode.ALREADY_EXISTS));
    expect((await c.createGroupSnapshot({ name: 'g1', volumeNames: ['va', 'vb'] })).name).toBe('g1');
    await expectSdsError(
      c.createGroupSnapshot({ name: 'g1', volumeNames: ['va'] }),
      'AlreadyExists',
      /member volumes are va, vb, asked va/,
    );
    await expectSdsError(
      c.createGroupSnapshot({ name: 'g1', volumeNames: ['va', 'vb'], quiesce: 'flush' }),
      'AlreadyExists',
      /quiesced by freeze/,
    );
  });

  it('refuses bad arguments before sending anything', async () => {
    const c = await fake(() => groupReply());
    await expectSdsError(c.createGroupSnapshot({ name: 'g1', volumeNames: [] }), 'InvalidParameter', /vol_name/);
    await expectSdsError(c.createGroupSnapshot({ name: 'g1', volumeNames: ['va', 'va'] }), 'InvalidParameter', /twice/);
    await expectSdsError(
      c.createGroupSnapshot({ name: 'bad name', volumeNames: ['va'] }),
      'InvalidParameter',
      /group_name/,
    );
    await expectSdsError(c.snapshotDelta('a', 'b', { limit: 0 }), 'InvalidParameter', /limit/);
  });

  it('maps -900022 on a member delete to GroupMember', async () => {
    const c = await fake(() =>
      reply(RetCode.GROUP_MEMBER, { ret_desc: 'snap_name: snapshot g1_a belongs to group snapshot g1' }),
    );
    await expectSdsError(c.deleteSnapshot('g1_a'), 'GroupMember', /belongs to group snapshot g1/);
  });

  it('deletes and waits until the group is gone; a missing group is success; an absent group reads undefined', async () => {
    let queries = 0;
    const c = await fake((req) => {
      if (req.type === 'DELETE_GROUP_SNAPSHOT_REQ') return reply(0);
      return ++queries < 3 ? groupReply(0, { status: 11 }) : reply(RetCode.NOT_EXIST);
    });
    await c.deleteGroupSnapshot('g1');
    expect(queries).toBe(3);
    expect(await c.getGroupSnapshot('g1')).toBeUndefined();
  });

  it('refuses a group reply that is cut short or garbled', async () => {
    const short = await fake(() =>
      reply(0, [
        ['group0', group()],
        ['snap_num', '2'],
        ['snapshot0', snapshotRecord()],
      ]),
    );
    await expectSdsError(short.getGroupSnapshot('g1'), 'Protocol', /snap_num=2 but 1 snapshot records/);
    const garbled = await fake(() => groupReply(0, { status: 7 }));
    await expectSdsError(garbled.getGroupSnapshot('g1'), 'Protocol', /unknown group status/);
  });
});

describe('extent pages', () => {
  const page = (fields: Array<[string, string]>) =>
    reply(0, [['size_bytes', '1048576'], ['block_size', '4096'], ...fields]);

  it('reads ranges and next_offset, and sends offset and limit', async () => {
    let seen: string[] = [];
    const c = await fake((req) => {
      seen = [
        req.fields.get('offset')!,
        req.fields.get('limit')!,
        req.fields.get('base_snap_name')!,
        req.fields.get('snap_name')!,
      ];
      return page([
        ['extent_num', '2'],
        ['extent0', encodeRecord({ offset: 8192, length: 4096 })],
        ['extent1', encodeRecord({ offset: 65536, length: 8192 })],
        ['next_offset', '73728'],
        ['method', 'shared_extents'],
      ]);
    });
    const p = await c.snapshotDelta('s1', 's2', { offset: 4096, limit: 2 });
    expect(seen).toEqual(['4096', '2', 's1', 's2']);
    expect(p).toEqual({
      sizeBytes: 1048576,
      blockSize: 4096,
      extents: [
        { offset: 8192, length: 4096 },
        { offset: 65536, length: 8192 },
      ],
      nextOffset: 73728,
      method: 'shared_extents',
    });
    const end = await fake(() =>
      page([
        ['extent_num', '0'],
        ['next_offset', ''],
      ]),
    );
    expect(await end.snapshotExtents('s1')).toEqual({ sizeBytes: 1048576, blockSize: 4096, extents: [] });
  });

  it.each([
    [
      'a count that does not match',
      [
        ['extent_num', '2'],
        ['extent0', encodeRecord({ offset: 0, length: 4096 })],
      ],
      /extent_num=2 but 1/,
    ],
    [
      'ranges out of order',
      [
        ['extent_num', '2'],
        ['extent0', encodeRecord({ offset: 8192, length: 4096 })],
        ['extent1', encodeRecord({ offset: 0, length: 4096 })],
      ],
      /out of order/,
    ],
    [
      'a range beyond the size',
      [
        ['extent_num', '1'],
        ['extent0', encodeRecord({ offset: 1048576, length: 4096 })],
      ],
      /beyond the size/,
    ],
    [
      'an empty range',
      [
        ['extent_num', '1'],
        ['extent0', encodeRecord({ offset: 0, length: 0 })],
      ],
      /length/,
    ],
    [
      'a next_offset that does not move forward',
      [
        ['extent_num', '0'],
        ['next_offset', '0'],
      ],
      /next_offset/,
    ],
    [
      'a next_offset inside the last range',
      [
        ['extent_num', '1'],
        ['extent0', encodeRecord({ offset: 0, length: 8192 })],
        ['next_offset', '4096'],
      ],
      /next_offset/,
    ],
  ] as Array<[string, Array<[string, string]>, RegExp]>)('refuses a page with %s', async (_what, fields, message) => {
    const c = await fake(() => page(fields));
    await expectSdsError(c.snapshotExtents('s1'), 'Protocol', message);
  });

  it('documents the retry decision of the new request types (all safe to send again)', () => {
    for (const t of [
      'CREATE_GROUP_SNAPSHOT_REQ',
      'DELETE_GROUP_SNAPSHOT_REQ',
      'QUERY_GROUP_SNAPSHOT_REQ',
      'QUERY_SNAPSHOT_EXTENTS_REQ',
      'QUERY_SNAPSHOT_DELTA_REQ',
    ]) {
      expect(isRetriedAfterSend(t)).toBe(true);
    }
  });
});
