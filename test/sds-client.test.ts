// SdsClient against an in-test fake VBS (test/support/fake-vbs.ts): transport, fail-over, retries, result
// codes, idempotent creates, delete polling, record parsing and the token's secrecy.
import { getEventListeners } from 'node:events';
import { Socket, createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { createLogger } from '../src/log/logger.js';
import { MiB, GiB } from '../src/sds/backend.js';
import { SdsClient, isRetriedAfterSend, type SdsClientOptions } from '../src/sds/client.js';
import { type SdsErrorKind } from '../src/sds/errors.js';
import { parseAddress, parseAddressList } from '../src/sds/transport.js';
import { encodeRecord, MAX_REPLY_BYTES, RetCode, type RetCodeName, type VbsRequest } from '../src/protocol/vbs.js';
import { startBlackhole } from './support/blackhole.js';
import { FakeVbs, reply, snapshotRecord, volumeRecord, type FakeHandler } from './support/fake-vbs.js';
import { expectSdsError, sdsFixture } from './support/sds-fixture.js';

const sds = sdsFixture('sds-client-test');
const fake = sds.fake;

const fastRetry = { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 };
function client(addresses: string | string[], extra: Partial<SdsClientOptions> = {}): SdsClient {
  return sds.client({ addresses, retry: fastRetry, requestTimeoutMs: 5_000, ...extra });
}

/** A port nothing listens on: bind one, note it, close it. */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen({ port: 0, host: '127.0.0.1' }, r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const ok = (fields: Record<string, string> = {}): Buffer => reply(0, fields);
const volumeReply = (overrides: Record<string, string | number> = {}): Buffer =>
  reply(0, { volume0: volumeRecord(overrides) });

describe('addresses', () => {
  it('parses every accepted form with the default port', () => {
    expect(parseAddress('tcp://10.0.0.1:1234')).toMatchObject({ kind: 'tcp', host: '10.0.0.1', port: 1234 });
    expect(parseAddress('vbs.example:99')).toMatchObject({ kind: 'tcp', host: 'vbs.example', port: 99 });
    expect(parseAddress('vbs.example')).toMatchObject({ kind: 'tcp', host: 'vbs.example', port: 10599 });
    expect(parseAddress('vbs.example', 7)).toMatchObject({ port: 7 });
    expect(parseAddress('[::1]:5')).toMatchObject({ kind: 'tcp', host: '::1', port: 5 });
    expect(parseAddress('::1')).toMatchObject({ kind: 'tcp', host: '::1', port: 10599 });
    expect(parseAddress('unix:///run/vbs.sock')).toMatchObject({ kind: 'unix', path: '/run/vbs.sock' });
    expect(parseAddressList(' a:1, unix:///x ,,b ').map((a) => a.text)).toEqual(['a:1', 'unix:///x', 'b']);
  });

  it.each(['', 'unix://relative', 'http://h:1', 'h:0', 'h:65536', 'h:x', 'h o:1'])('refuses %j', (text) => {
    expect(() => parseAddressList(text)).toThrow();
  });

  it('a bad address list fails the client at construction, naming the setting', () => {
    expect(() => new SdsClient({ addresses: 'h:99999' })).toThrow(/vbs-url/);
  });
});

describe('transport', () => {
  it('sends the whole request, ended by the empty line, in one write, and never half-closes', async () => {
    // The fake answers late, so a half-close by the client would have arrived before the reply.
    const f = await fake(async () => {
      await new Promise((r) => setTimeout(r, 50));
      return ok({ product: 'SDSHypervisor', host_id: 'h1', capability: 'list' });
    });
    const writes = vi.spyOn(Socket.prototype, 'write');
    try {
      const info = await client(f.address).systemInfo({ requestId: 'req-1' });
      expect(info).toMatchObject({ product: 'SDSHypervisor', hostId: 'h1', capabilities: ['list'] });
      const requestWrites = writes.mock.calls.filter(
        ([data]) => Buffer.isBuffer(data) && data.toString().includes('QUERY_CAPABILITY_REQ'),
      );
      expect(requestWrites.map(([data]) => String(data))).toEqual(['[QUERY_CAPABILITY_REQ]\nrequest_id=req-1\n\n']);
    } finally {
      writes.mockRestore();
    }
    expect(f.seen[0]!.raw.toString()).toBe('[QUERY_CAPABILITY_REQ]\nrequest_id=req-1\n\n');
    expect(f.seen[0]!.halfClosedBeforeReply).toBe(false);
  });

  it('reads a reply that arrives in many small chunks, to EOF', async () => {
    const server = createServer((s) => {
      const dribble = async (): Promise<void> => {
        const bytes = volumeReply({ vol_name: 'slow' });
        for (let i = 0; i < bytes.length; i += 7) {
          s.write(bytes.subarray(i, i + 7));
          await new Promise((r) => setTimeout(r, 1));
        }
        s.end();
      };
      s.once('data', () => void dribble());
    });
    const path = join(sds.dir, 'chunky.sock');
    await new Promise<void>((r) => server.listen(path, r));
    try {
      const v = await client(`unix://${path}`).getVolume('slow');
      expect(v?.name).toBe('slow');
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('refuses a reply over 1 MiB as a Protocol error', async () => {
    const f = await fake(() =>
      Buffer.concat([Buffer.from('retcode=0\nx='), Buffer.alloc(MAX_REPLY_BYTES, 0x61), Buffer.from('\n')]),
    );
    await expectSdsError(client(f.address).getVolume('v1'), 'Protocol', /exceeds 1048576 bytes/);
    expect(f.seen).toHaveLength(1); // not retried: the VBS answered, just not acceptably
  });
});

describe('fail-over', () => {
  it('skips refused and missing addresses in order, and stops at the first that takes the request', async () => {
    const a = await fake(() => ok({ host_id: 'a' }));
    const b = await fake(() => ok({ host_id: 'b' }));
    const port = await closedPort();
    const c = client([`127.0.0.1:${port}`, `unix://${join(sds.dir, 'missing.sock')}`, a.address, b.address]);
    expect((await c.systemInfo()).hostId).toBe('a');
    expect(a.seen).toHaveLength(1);
    expect(b.seen).toHaveLength(0);
  });

  it('remembers the last good address first, and still fails over', async () => {
    const aDir = { dir: sds.dir, name: 'sticky-a.sock' };
    let a = await FakeVbs.start(() => ok({ host_id: 'a' }), aDir);
    const b = await fake(() => ok({ host_id: 'b' }));
    const c = client([a.address, b.address]);
    expect((await c.systemInfo()).hostId).toBe('a');
    await a.stop();
    expect((await c.systemInfo()).hostId).toBe('b');
    // a is back, but b took the last request: b goes first now.
    a = await FakeVbs.start(() => ok({ host_id: 'a' }), aDir);
    sds.track(a);
    expect((await c.systemInfo()).hostId).toBe('b');
    expect(a.seen).toHaveLength(0);
    await b.stop();
    sds.forget(b);
    expect((await c.systemInfo()).hostId).toBe('a');
  });

  it('answers Unavailable when no address takes the connection, naming each failure', async () => {
    const port = await closedPort();
    const err = await expectSdsError(
      client([`127.0.0.1:${port}`, `unix://${join(sds.dir, 'none.sock')}`]).systemInfo(),
      'Unavailable',
    );
    expect(err.message).toContain(`127.0.0.1:${port}: ECONNREFUSED`);
    expect(err.message).toContain('none.sock: ENOENT');
  });

  it('gives up on an address whose connect hangs after the connect timeout, and moves on', async () => {
    const hole = await startBlackhole();
    try {
      const good = await fake(() => ok({ host_id: 'good' }));
      const logged: string[] = [];
      const logger = { debug: (o: Record<string, unknown>) => logged.push(JSON.stringify(o)), warn: () => undefined };
      const c = client([hole.address, good.address], { connectTimeoutMs: 200, logger });
      expect((await c.systemInfo()).hostId).toBe('good');
      expect(logged.some((l) => l.includes(hole.address) && l.includes('no connection within 200 ms'))).toBe(true);
      // Alone, the black hole is Unavailable (nothing was sent), not Timeout.
      await expectSdsError(
        client(hole.address, { connectTimeoutMs: 100 }).systemInfo(),
        'Unavailable',
        /no connection within 100 ms/,
      );
    } finally {
      await hole.close();
    }
  });

  it('a request that was sent and never answered is a Timeout, not retried, not failed over', async () => {
    const silent = await fake(() => ({ hang: true }));
    const other = await fake(() => ok());
    const err = await expectSdsError(
      client([silent.address, other.address], { requestTimeoutMs: 300 }).getVolume('v1'),
      'Timeout',
      /outcome is unknown/,
    );
    expect(err.message).toContain('300 ms');
    expect(silent.seen).toHaveLength(1);
    expect(other.seen).toHaveLength(0);
  });
});

describe('retries', () => {
  it('documents a retry decision for every request type', () => {
    const retried = [
      'QUERY_CAPABILITY_REQ',
      'QUERY_POOLS_CAPABILITY_REQ',
      'QUERY_VOLUME_REQ',
      'QUERY_SNAPSHOT_REQ',
      'QUERY_VOLUME_HOSTS_REQ',
      'QUERY_HOSTS_REQ',
      'QUERY_IMAGE_JOB_REQ',
      'LIST_VOLUMES_REQ',
      'LIST_SNAPSHOTS_REQ',
      'CREATE_VOLUME_REQ',
      'CREATE_SNAPSHOT_REQ',
      'CREATE_VOLUME_FROM_SNAPSHOT_REQ',
      'CLONE_VOLUME_REQ',
      'DELETE_VOLUME_REQ',
      'DELETE_SNAPSHOT_REQ',
      'EXTEND_VOLUME_REQ',
      'MAP_VOLUME_REQ',
      'UNMAP_VOLUME_REQ',
      'MODIFY_VOLUME_REQ',
    ];
    for (const t of retried) expect(isRetriedAfterSend(t)).toBe(true);
    for (const t of ['IMPORT_IMAGE_REQ', 'EXPORT_IMAGE_REQ', 'SOMETHING_NEW_REQ'])
      expect(isRetriedAfterSend(t)).toBe(false);
  });

  it.each([['close' as const], ['reset' as const]])('re-sends a query whose reply was lost (%s)', async (how) => {
    const f = await fake(
      (_req, i) => (i < 2 ? (how === 'close' ? { close: true } : { reset: true }) : volumeReply()),
      how === 'reset',
    );
    const v = await client(f.address).getVolume('v1');
    expect(v?.name).toBe('v1');
    expect(f.count('QUERY_VOLUME_REQ')).toBe(3);
  });

  it('re-sends a create whose reply was lost and takes the -900011 + identical record as success', async () => {
    let created = false;
    const f = await fake((req) => {
      if (!created) {
        created = true;
        return { close: true }; // done, but the reply is lost
      }
      return reply(RetCode.ALREADY_EXISTS, {
        volume0: volumeRecord({ vol_name: req.fields.get('vol_name')!, vol_size: 10 }),
      });
    });
    const v = await client(f.address).createVolume({ name: 'v1', sizeBytes: 10 * MiB, poolId: 'pool0' });
    expect(v).toMatchObject({ name: 'v1', sizeBytes: 10 * MiB, state: 'available' });
    expect(f.count('CREATE_VOLUME_REQ')).toBe(2);
  });

  it('does not re-send an import or an export whose reply was lost', async () => {
    const f = await fake(() => ({ close: true }));
    const c = client(f.address);
    await expectSdsError(c.importImage({ name: 'img', url: '/images/a.raw' }), 'Unavailable', /outcome is unknown/);
    await expectSdsError(
      c.exportImage({ volumeName: 'v1', path: '/images/out.raw' }),
      'Unavailable',
      /outcome is unknown/,
    );
    expect(f.types()).toEqual(['IMPORT_IMAGE_REQ', 'EXPORT_IMAGE_REQ']);
  });

  it('an import is still tried on the next address when the first refused the connection', async () => {
    const f = await fake(() =>
      reply(0, { job_id: 'job-1', volume0: volumeRecord({ vol_name: 'img', status: 10, src_type: 'image' }) }),
    );
    const res = await client([`127.0.0.1:${await closedPort()}`, f.address]).importImage({
      name: 'img',
      url: '/images/a.raw',
    });
    expect(res.job).toMatchObject({ id: 'job-1', type: 'import', state: 'running' });
    expect(res.volume.state).toBe('busy');
    expect(f.seen).toHaveLength(1);
  });

  it('gives up after the bound on lost replies', async () => {
    const f = await fake(() => ({ close: true }));
    await expectSdsError(client(f.address).getVolume('v1'), 'Unavailable', /closed without a reply/);
    expect(f.seen).toHaveLength(fastRetry.attempts + 1);
  });

  it('backs off on BUSY, then succeeds; any request type', async () => {
    const f = await fake((_r, i) => (i < 2 ? reply(RetCode.BUSY, { ret_desc: 'busy' }) : reply(0, { job_id: 'j9' })));
    const job = await client(f.address).exportImage({ snapshotName: 's1', path: '/images/x.qcow2', format: 'qcow2' });
    expect(job.id).toBe('j9');
    expect(f.count('EXPORT_IMAGE_REQ')).toBe(3);
  });

  it('surfaces Busy and Unavailable after the bound', async () => {
    const busy = await fake(() => reply(RetCode.BUSY, { ret_desc: 'volume v1 is being copied' }));
    await expectSdsError(client(busy.address).deleteVolume('v1'), 'Busy', /volume v1 is being copied/);
    expect(busy.seen).toHaveLength(fastRetry.attempts + 1);
    const starting = await fake(() => reply(RetCode.UNAVAILABLE, { ret_desc: 'starting' }));
    await expectSdsError(client(starting.address).systemInfo(), 'Unavailable', /starting/);
    expect(starting.seen).toHaveLength(fastRetry.attempts + 1);
  });

  it('a retry after BUSY that the deadline cuts is still Busy for a request safe to resend', async () => {
    let answered = 0;
    const f = await fake(() => (answered++ === 0 ? reply(RetCode.BUSY) : { hang: true }));
    const c = client(f.address, { requestTimeoutMs: 300, retry: { attempts: 5, baseDelayMs: 10, maxDelayMs: 10 } });
    await expectSdsError(c.getVolume('v1'), 'Busy');
    expect(f.seen.length).toBe(2);
  });

  it('stops backing off when the deadline would pass', async () => {
    const f = await fake(() => reply(RetCode.BUSY));
    const c = client(f.address, { requestTimeoutMs: 200, retry: { attempts: 100, baseDelayMs: 80, maxDelayMs: 80 } });
    await expectSdsError(c.getVolume('v1'), 'Busy');
    expect(f.seen.length).toBeLessThan(10);
  });
});

describe('result codes', () => {
  // Every retcode of the protocol but OK and the two retried ones (see 'retries'), by name: the type makes
  // a retcode added to the protocol without a kind here a compile error.
  const kindByRetcodeName: Record<Exclude<RetCodeName, 'OK' | 'BUSY' | 'UNAVAILABLE'>, SdsErrorKind> = {
    NOT_EXIST: 'NotFound',
    MALFORMED: 'Protocol',
    UNKNOWN_REQUEST: 'NotSupported',
    INVALID_PARAMETER: 'InvalidParameter',
    AUTH_FAILED: 'AuthFailed',
    TOO_LARGE: 'Protocol',
    POOL_NOT_EXIST: 'PoolNotFound',
    ALREADY_EXISTS: 'AlreadyExists',
    NO_SPACE: 'NoSpace',
    CANNOT_SHRINK: 'CannotShrink',
    NOT_SUPPORTED: 'NotSupported',
    MAPPED_ELSEWHERE: 'MappedElsewhere',
    HOST_NOT_EXIST: 'HostNotFound',
    ATTACHED: 'Attached',
    IMAGE_ERROR: 'ImageError',
    HAS_DEPENDENTS: 'HasDependents',
    MAP_CONFLICT: 'MapConflict',
    GROUP_MEMBER: 'GroupMember',
    INTERNAL: 'Internal',
  };
  it.each<[number, SdsErrorKind]>([
    ...Object.entries(kindByRetcodeName).map(([name, kind]): [number, SdsErrorKind] => [
      RetCode[name as RetCodeName],
      kind,
    ]),
    [-123, 'Internal'], // a retcode the protocol does not know
  ])('retcode %i → %s, with ret_desc in the message', async (code, kind) => {
    const f = await fake(() => reply(code, { ret_desc: 'vol_size: must be a whole number' }));
    const err = await expectSdsError(
      client(f.address).mapVolume('v1', 'h1', { readOnly: false, exclusive: true }),
      kind,
      /vol_size: must be a whole number/,
    );
    expect(err.retcode).toBe(code);
    expect(err.message).toContain('MAP_VOLUME_REQ');
  });

  it('a query answering NOT_EXIST is undefined, not an error', async () => {
    const f = await fake(() => reply(RetCode.NOT_EXIST));
    const c = client(f.address);
    expect(await c.getVolume('gone')).toBeUndefined();
    expect(await c.getSnapshot('gone')).toBeUndefined();
    expect(await c.getImageJob('job-1')).toBeUndefined();
  });
});

describe('idempotent creates', () => {
  const existing =
    (overrides: Record<string, string | number>): FakeHandler =>
    () =>
      reply(RetCode.ALREADY_EXISTS, { ret_desc: 'exists', volume0: volumeRecord(overrides) });

  it('returns an identical existing volume (size compared in MiB, rounded up)', async () => {
    const f = await fake(existing({ vol_name: 'v1', vol_size: 2, pool_id: 'pool0', thin_flag: 0 }));
    const v = await client(f.address).createVolume({ name: 'v1', sizeBytes: MiB + 1, poolId: 'pool0', thin: false });
    expect(v).toMatchObject({ name: 'v1', sizeBytes: 2 * MiB, thin: false });
    expect(f.seen[0]!.fields.get('vol_size')).toBe('2');
    expect(f.seen[0]!.fields.get('thin_flag')).toBe('0');
  });

  it('does not compare the pool when none was asked', async () => {
    const f = await fake(existing({ vol_size: 1024, pool_id: 'other' }));
    expect((await client(f.address).createVolume({ name: 'v1', sizeBytes: GiB })).poolId).toBe('other');
  });

  // The client reports what holds the name; CSI's rules are the controller's (test/controller-unit.test.ts).
  it.each([
    ['size', { vol_size: 2048 }, { sizeBytes: 2 * GiB }],
    ['pool', { pool_id: 'pool1' }, { poolId: 'pool1' }],
    ['thin', { thin_flag: 0 }, { thin: false }],
    [
      'source',
      { src_type: 'snapshot', src_name: 's1', clone_type: 'linked' },
      { source: { type: 'snapshot', name: 's1' } },
    ],
  ])('reports an existing volume with another %s as it is, without judging it', async (_what, overrides, shown) => {
    const f = await fake(existing(overrides));
    expect(await client(f.address).createVolume({ name: 'v1', sizeBytes: GiB, poolId: 'pool0' })).toMatchObject(shown);
  });

  it('a volume from a snapshot: sends the source and clone type, reports the existing volume', async () => {
    const same = await fake(existing({ src_type: 'snapshot', src_name: 's1', clone_type: 'full' }));
    const c = client(same.address);
    const v = await c.createVolumeFromSnapshot({ name: 'v1', sizeBytes: GiB, snapshotName: 's2', cloneType: 'linked' });
    expect(v).toMatchObject({ source: { type: 'snapshot', name: 's1' }, cloneType: 'full' });
    expect(same.seen[0]!.fields.get('snap_name_src')).toBe('s2');
    expect(same.seen[0]!.fields.get('clone_type')).toBe('linked');
    expect(same.seen[0]!.fields.get('vol_num')).toBe('1');
  });

  it('a clone: reports the existing volume with its own source', async () => {
    const f = await fake(existing({ src_type: 'volume', src_name: 'src', clone_type: 'linked' }));
    const c = client(f.address);
    expect(
      (await c.cloneVolume({ name: 'v1', sizeBytes: GiB, sourceVolumeName: 'other', cloneType: 'linked' })).source,
    ).toEqual({ type: 'volume', name: 'src' });
    expect(f.seen[0]!.fields.get('src_vol_name')).toBe('other');
  });

  it('an existing volume being deleted is Busy, not success', async () => {
    const f = await fake(existing({ status: 11 }));
    await expectSdsError(client(f.address).createVolume({ name: 'v1', sizeBytes: GiB }), 'Busy', /being deleted/);
  });

  it('snapshots: a taken name reports the existing snapshot with its source', async () => {
    const f = await fake(() =>
      reply(RetCode.ALREADY_EXISTS, { snapshot0: snapshotRecord({ snap_name: 's1', vol_name: 'v1' }) }),
    );
    const c = client(f.address);
    expect(await c.createSnapshot('s1', 'v1')).toMatchObject({ name: 's1', volumeName: 'v1', state: 'available' });
    expect(f.seen[0]!.fields.get('smartflag')).toBe('1');
    expect(await c.createSnapshot('s1', 'v2')).toMatchObject({ name: 's1', volumeName: 'v1' });
  });

  it('a part-1 VBS: bare retcode replies are completed by a query', async () => {
    const f = await fake((req) =>
      req.type === 'QUERY_VOLUME_REQ' ? volumeReply({ vol_name: 'old', vol_size: 4096 }) : ok(),
    );
    const v = await client(f.address).createVolume({ name: 'old', sizeBytes: 4 * GiB });
    expect(v.sizeBytes).toBe(4 * GiB);
    expect(f.types()).toEqual(['CREATE_VOLUME_REQ', 'QUERY_VOLUME_REQ']);
  });
});

describe('asynchronous deletes', () => {
  it('polls until the VBS says the volume is gone', async () => {
    let polls = 0;
    const f = await fake((req) => {
      if (req.type === 'DELETE_VOLUME_REQ') return ok();
      polls++;
      return polls < 5 ? volumeReply({ status: 11 }) : reply(RetCode.NOT_EXIST);
    });
    await client(f.address).deleteVolume('v1');
    expect(f.types()).toEqual(['DELETE_VOLUME_REQ', ...Array(5).fill('QUERY_VOLUME_REQ')]);
  });

  it.each<[string, FakeHandler]>([
    ['a missing volume or snapshot is success, with nothing to poll', () => reply(RetCode.NOT_EXIST)],
    [
      'does not poll when the VBS says the delete already completed (deleted=1)',
      (req) => (req.type.startsWith('DELETE_') ? ok({ deleted: '1' }) : volumeReply({ status: 11 })),
    ],
  ])('%s', async (_case, answer) => {
    const f = await fake(answer);
    const c = client(f.address);
    await c.deleteVolume('v1');
    await c.deleteSnapshot('s1');
    expect(f.types()).toEqual(['DELETE_VOLUME_REQ', 'DELETE_SNAPSHOT_REQ']);
  });

  it('is bounded: a delete that never completes is a Timeout naming the last state', async () => {
    const f = await fake((req) =>
      req.type === 'DELETE_SNAPSHOT_REQ' ? ok() : reply(0, { snapshot0: snapshotRecord({ status: 11 }) }),
    );
    await expectSdsError(
      client(f.address, { deleteTimeoutMs: 150 }).deleteSnapshot('s1'),
      'Timeout',
      /still there after 150 ms \(state deleting\)/,
    );
    // How many polls fit in 150 ms depends on the machine's load; that it polled at all and then gave up
    // naming the last state it saw is the behaviour.
    expect(f.count('QUERY_SNAPSHOT_REQ')).toBeGreaterThanOrEqual(1);
  });

  it("a poll cut short by the delete's own bound still names the last state, not an unknown outcome", async () => {
    // The first poll answers 'deleting'; the next one is never answered: it has only what is left of the 150 ms
    // (far less than the 5 s request timeout), as when a late wake-up on a loaded host leaves it a few ms.
    let polls = 0;
    const f = await fake((req) =>
      req.type === 'DELETE_SNAPSHOT_REQ'
        ? ok()
        : polls++ === 0
          ? reply(0, { snapshot0: snapshotRecord({ status: 11 }) })
          : { hang: true },
    );
    await expectSdsError(
      client(f.address, { deleteTimeoutMs: 150, requestTimeoutMs: 5_000 }).deleteSnapshot('s1'),
      'Timeout',
      /still there after 150 ms \(state deleting\)/,
    );
    expect(f.count('QUERY_SNAPSHOT_REQ')).toBe(2);
  });

  it('a refused delete surfaces its own error without polling', async () => {
    const f = await fake(() => reply(RetCode.ATTACHED, { ret_desc: 'attached on host h1' }));
    await expectSdsError(client(f.address).deleteVolume('v1'), 'Attached', /attached on host h1/);
    expect(f.types()).toEqual(['DELETE_VOLUME_REQ']);
  });
});

describe('records', () => {
  it('parses a full volume record into bytes and words', async () => {
    const f = await fake(() =>
      volumeReply({
        status: 2,
        vol_size: 3,
        alloc_size: 1,
        thin_flag: 0,
        src_type: 'snapshot',
        src_name: 's1',
        clone_type: 'linked',
        max_iops: 500,
        max_mbps: 40,
        IOPRIORITY: 3,
        cache_policy: 'readwrite',
        mapped_hosts: 'h1:h2',
        health: 'fault',
        fault_reason: 'file missing, see log',
        snap_num: 4,
        create_time: 1_700_000_001,
      }),
    );
    expect(await client(f.address).getVolume('v1')).toEqual({
      name: 'v1',
      sizeBytes: 3 * MiB,
      poolId: 'pool0',
      thin: false,
      state: 'in-use',
      status: 2,
      allocatedBytes: MiB,
      createdAt: new Date(1_700_000_001_000),
      source: { type: 'snapshot', name: 's1' },
      cloneType: 'linked',
      qos: { maxIops: 500, maxMBps: 40, priority: 3 },
      cachePolicy: 'readwrite',
      mappedHosts: ['h1', 'h2'],
      healthy: false,
      faultReason: 'file missing, see log',
      snapshotCount: 4,
    });
  });

  it('parses a minimal part-1 record with neutral defaults', async () => {
    const f = await fake(() => reply(0, { volume0: encodeRecord({ status: 1, vol_size: 1024 }) }));
    expect(await client(f.address).getVolume('legacy')).toMatchObject({
      name: 'legacy',
      sizeBytes: GiB,
      thin: true,
      state: 'available',
      mappedHosts: [],
    });
  });

  it('parses pools, preferring exact MiB fields over the original GiB ones', async () => {
    const f = await fake((req) => {
      expect(req.fields.get('pool_num')).toBe('2');
      expect(req.fields.getAll('pool_id')).toEqual(['pool0', 'old']);
      return reply(0, {
        pool0: encodeRecord({
          stor_id: 'pool0',
          total_capacity: 64,
          usable_capacity: 63,
          raid_level: 0,
          iops: 0,
          total_capacity_mb: 65536,
          usable_capacity_mb: 65000,
          provisioned_mb: 2048,
          allocated_mb: 10,
          max_oversubscription: '4.0',
          thin_capacity_mb: 260096,
          thick_capacity_mb: 65000,
          linked_clone: 1,
          pool_type: 'xfs-reflink',
          hosts: 'h1',
          health: 'ok',
        }),
        pool1: encodeRecord({ stor_id: 'old', total_capacity: 10, usable_capacity: 5, raid_level: 0, iops: 0 }),
      });
    });
    const [p0, old] = await client(f.address).queryPools(['pool0', 'old']);
    expect(p0).toEqual({
      id: 'pool0',
      totalBytes: 64 * GiB,
      freeBytes: 65000 * MiB,
      provisionedBytes: 2 * GiB,
      allocatedBytes: 10 * MiB,
      maxOversubscription: 4,
      thinCapacityBytes: 260096 * MiB,
      thickCapacityBytes: 65000 * MiB,
      linkedClone: true,
      type: 'xfs-reflink',
      hosts: ['h1'],
      healthy: true,
    });
    expect(old).toMatchObject({ id: 'old', totalBytes: 10 * GiB, freeBytes: 5 * GiB, thinCapacityBytes: 5 * GiB });
  });

  it.each([
    [
      'a non-numeric size',
      { volume0: volumeRecord({ vol_size: 'abc' }) },
      /volume record.*vol_size: not a whole number/,
    ],
    ['a size with a fraction', { volume0: volumeRecord({ vol_size: '1.5' }) }, /vol_size: not a whole number/],
    ['an unknown status', { volume0: volumeRecord({ status: 99 }) }, /status: unknown volume status/],
    [
      'an unknown cache policy',
      { volume0: volumeRecord({ cache_policy: 'writeback' }) },
      /cache_policy: must be one of/,
    ],
    ['an out-of-range priority', { volume0: volumeRecord({ IOPRIORITY: 7 }) }, /IOPRIORITY: above 3/],
    ['a bad flag', { volume0: volumeRecord({ thin_flag: 'yes' }) }, /thin_flag: must be 0 or 1/],
    [
      'a snapshot source without a name',
      { volume0: volumeRecord({ src_type: 'snapshot', src_name: '' }) },
      /src_name: empty/,
    ],
    ['a truncated record', { volume0: '[status=1,vol_name=v1,vol_si' }, /bracketed/],
    ['a missing size', { volume0: encodeRecord({ status: 1, vol_name: 'v1' }) }, /vol_size: missing/],
    ['no record at all', {}, /without volume0/],
    ['a huge size', { volume0: volumeRecord({ vol_size: '9999999999999999' }) }, /vol_size: (size )?out of range/],
  ])('refuses %s as a Protocol error naming the field', async (_what, fields, message) => {
    const f = await fake(() => reply(0, fields as Record<string, string>));
    await expectSdsError(client(f.address).getVolume('v1'), 'Protocol', message);
  });

  it('refuses a list whose count does not match its records', async () => {
    const f = await fake(() => reply(0, { vol_num: '2', volume0: volumeRecord(), next_marker: '' }));
    await expectSdsError(client(f.address).listVolumes({}), 'Protocol', /vol_num=2 but 1 volume records/);
  });

  it('lists with marker and limit', async () => {
    const f = await fake(() =>
      reply(0, {
        snap_num: '2',
        snapshot0: snapshotRecord({ snap_name: 'a' }),
        snapshot1: snapshotRecord({ snap_name: 'b' }),
        next_marker: 'b',
      }),
    );
    const page = await client(f.address).listSnapshots({ marker: 'x', limit: 2, volumeName: 'v1' });
    expect(page.items.map((s) => s.name)).toEqual(['a', 'b']);
    expect(page.nextMarker).toBe('b');
    expect(f.seen[0]!.fields.list).toEqual([
      ['marker', 'x'],
      ['limit', '2'],
      ['vol_name', 'v1'],
    ]);
  });

  it('parses host mappings and image jobs', async () => {
    const f = await fake((req) =>
      req.type === 'QUERY_VOLUME_HOSTS_REQ'
        ? reply(0, {
            host_num: '1',
            host0: encodeRecord({ host_id: 'h1', access_mode: 'ro', attached: 1, dev_addr: '/dev/loop9' }),
          })
        : reply(0, {
            job0: encodeRecord({
              job_id: 'j1',
              job_type: 'import',
              status: 'failed',
              vol_name: 'v1',
              snap_name: '',
              bytes_done: 5,
              bytes_total: 10,
              error: 'checksum mismatch, expected sha256:ab',
            }),
          }),
    );
    const c = client(f.address);
    expect(await c.volumeHosts('v1')).toEqual([
      { hostId: 'h1', accessMode: 'ro', attached: true, devAddr: '/dev/loop9', online: true },
    ]); // no online field: taken as up
    expect(await c.waitImageJob('j1', 1_000)).toEqual({
      id: 'j1',
      type: 'import',
      state: 'failed',
      volumeName: 'v1',
      bytesDone: 5,
      bytesTotal: 10,
      error: 'checksum mismatch, expected sha256:ab',
    });
  });

  it('waits for a running image job, bounded', async () => {
    const f = await fake((_r, i) =>
      reply(0, {
        job0: encodeRecord({
          job_id: 'j1',
          job_type: 'export',
          status: i < 3 ? 'running' : 'done',
          bytes_done: i,
          bytes_total: 3,
        }),
      }),
    );
    expect((await client(f.address).waitImageJob('j1', 5_000)).state).toBe('done');
    expect(f.seen).toHaveLength(4);
    const slow = await fake(() =>
      reply(0, { job0: encodeRecord({ job_id: 'j2', job_type: 'export', status: 'running' }) }),
    );
    await expectSdsError(client(slow.address).waitImageJob('j2', 100), 'Timeout', /still running/);
  });
});

describe('arguments', () => {
  it('refuses bad names, sizes and ids before sending anything', async () => {
    const f = await fake(() => ok());
    const c = client(f.address);
    await expectSdsError(c.createVolume({ name: '-rf', sizeBytes: MiB }), 'InvalidParameter', /vol_name/);
    await expectSdsError(c.createVolume({ name: 'v1\nx=1', sizeBytes: MiB }), 'InvalidParameter', /vol_name/);
    await expectSdsError(c.createVolume({ name: 'v1', sizeBytes: -1 }), 'InvalidParameter', /sizeBytes/);
    await expectSdsError(c.createVolume({ name: 'v1', sizeBytes: 1.5 }), 'InvalidParameter', /sizeBytes/);
    await expectSdsError(
      c.createVolume({ name: 'v1', sizeBytes: MiB, qos: { priority: 4 as 1 } }),
      'InvalidParameter',
      /priority/,
    );
    await expectSdsError(c.mapVolume('v1', 'h/1', { readOnly: true, exclusive: false }), 'InvalidParameter', /host_id/);
    await expectSdsError(c.listVolumes({ limit: 1001 }), 'InvalidParameter', /limit/);
    await expectSdsError(c.getVolume('v1', { requestId: 'a\nb' }), 'InvalidParameter', /request_id/);
    await expectSdsError(c.importImage({ name: 'v1', url: '/x\n' }), 'InvalidParameter', /image_url/);
    expect(f.seen).toHaveLength(0);
  });

  it('sends sizes in MiB rounded up, and QoS and cache keys', async () => {
    const f = await fake(() => volumeReply());
    await client(f.address).createVolume({
      name: 'v1',
      sizeBytes: 5 * MiB - 1,
      poolId: 'pool0',
      qos: { maxIops: 100, maxMBps: 20, priority: 1 },
      cachePolicy: 'read',
    });
    await client(f.address).extendVolume('v1', GiB + 1);
    expect(f.seen[0]!.fields.list).toEqual([
      ['vol_name', 'v1'],
      ['vol_size', '5'],
      ['pool_id', 'pool0'],
      ['thin_flag', '1'],
      ['max_iops', '100'],
      ['max_mbps', '20'],
      ['IOPRIORITY', '1'],
      ['cache_policy', 'read'],
    ]);
    expect(f.seen[1]!.fields.list).toEqual([
      ['vol_name', 'v1'],
      ['vol_size', '1025'],
    ]);
  });
});

describe('the token', () => {
  const TOKEN = 'S3cr3t-T0ken_value';

  it('is sent first on every request, with the request id', async () => {
    const f = await fake((req) => (req.type === 'QUERY_VOLUME_REQ' ? reply(RetCode.NOT_EXIST) : ok()));
    const c = client(f.address, { token: TOKEN });
    await c.getVolume('v1', { requestId: 'r1' });
    await c.mapVolume('v1', 'h1', { readOnly: false, exclusive: false }, { requestId: 'r2' });
    await c.unmapVolume('v1', 'h1');
    for (const req of f.seen) expect(req.fields.list[0]).toEqual(['auth_token', TOKEN]);
    expect(f.seen.map((r) => r.fields.get('request_id'))).toEqual(['r1', 'r2', undefined]);
  });

  it('never appears in an error message or a log line, even when the VBS echoes it', async () => {
    const logged: string[] = [];
    const logger = createLogger({ level: 'debug' }, { write: (line: string) => logged.push(line) });
    const f = await fake((req, i) => {
      const echoed = req.fields.get('auth_token')!;
      if (i === 0) return reply(RetCode.AUTH_FAILED, { ret_desc: `token ${echoed} is wrong` });
      if (i === 1) return Buffer.from(`retcode=0\nauth_token ${echoed}\n`);
      if (i === 2 || i === 3) return { close: true }; // lost twice: one retry (logged as a warning), then given up
      return reply(0, { volume0: volumeRecord({ vol_size: echoed }) });
    });
    const c = client(f.address, { token: TOKEN, logger, retry: { attempts: 1, baseDelayMs: 1, maxDelayMs: 1 } });
    const errors = [
      await expectSdsError(c.getVolume('v1'), 'AuthFailed'),
      await expectSdsError(c.getVolume('v1'), 'Protocol'),
      await expectSdsError(c.getVolume('v1'), 'Unavailable'),
      await expectSdsError(c.getVolume('v1'), 'Protocol', /vol_size/),
    ];
    for (const e of errors) {
      expect(e.message).not.toContain(TOKEN);
      expect(String(e.stack)).not.toContain(TOKEN);
    }
    expect(errors[0]!.message).toContain('<token>');
    expect(logged.length).toBeGreaterThanOrEqual(3);
    expect(logged.some((l) => l.includes('VBS reply lost'))).toBe(true);
    expect(logged.join('\n')).not.toContain(TOKEN);
  });

  it('a token that cannot be sent fails at construction without showing it', () => {
    expect(() => new SdsClient({ addresses: '127.0.0.1', token: 'bad\ntoken' })).toThrow(/vbs token/);
    try {
      new SdsClient({ addresses: '127.0.0.1', token: 'bad\ntoken' });
    } catch (e) {
      expect((e as Error).message).not.toContain('bad\ntoken');
    }
  });
});

describe('cancellation', () => {
  it('an aborted signal ends a hanging call as Timeout', async () => {
    const f = await fake(() => ({ hang: true }));
    const ctl = new AbortController();
    const p = client(f.address).getVolume('v1', { signal: ctl.signal });
    setTimeout(() => ctl.abort(), 50);
    await expectSdsError(p, 'Timeout', /cancelled after the request was sent/);
  });

  it('close() ends calls in flight and refuses new ones', async () => {
    const f = await fake(() => ({ hang: true }));
    const c = client(f.address);
    const p = c.getVolume('v1');
    await new Promise((r) => setTimeout(r, 50));
    c.close();
    await expectSdsError(p, 'Timeout', /cancelled/);
    await expectSdsError(c.getVolume('v1'), 'Unavailable', /closed/);
  });
});

describe('abort listeners', () => {
  const CONCURRENCY = 16;

  /** A fake that holds every request until `CONCURRENCY` of one type are in, so all of them are in flight at once. */
  async function gatheringFake(onAllIn: (type: string) => void, answer: (req: VbsRequest) => Buffer): Promise<FakeVbs> {
    const waiting = new Map<string, Array<() => void>>();
    return fake(async (req) => {
      const list = waiting.get(req.type) ?? [];
      waiting.set(req.type, list);
      await new Promise<void>((release) => {
        list.push(release);
        if (list.length === CONCURRENCY) {
          onAllIn(req.type);
          for (const r of list.splice(0)) r();
        }
      });
      return answer(req);
    });
  }

  /** The client's own closing signal (private): every call is linked to it. */
  const closingSignal = (c: SdsClient): AbortSignal =>
    (c as unknown as { s: { closing: AbortController } }).s.closing.signal;

  function captureWarnings(): { warnings: string[]; stop: () => void } {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(`${w.name}: ${w.message}`);
    };
    process.on('warning', onWarning);
    return { warnings, stop: () => process.off('warning', onWarning) };
  }

  it(`${CONCURRENCY} concurrent calls hang one listener on a shared signal while they run, none after, and no warning`, async () => {
    const shared = new AbortController();
    let c!: SdsClient;
    const samples: Array<{ type: string; caller: number; closing: number }> = [];
    let extends_ = 0;
    const polls = new Map<string, number>();
    const f = await gatheringFake(
      (type) =>
        samples.push({
          type,
          caller: getEventListeners(shared.signal, 'abort').length,
          closing: getEventListeners(closingSignal(c), 'abort').length,
        }),
      (req) => {
        // The first round of extends is BUSY (a backoff sleep, then a retry); each delete polls twice (a poll sleep).
        if (req.type === 'EXTEND_VOLUME_REQ')
          return ++extends_ <= CONCURRENCY ? reply(RetCode.BUSY) : volumeReply({ vol_size: 2048 });
        if (req.type === 'QUERY_VOLUME_REQ') {
          const name = req.fields.get('vol_name')!;
          const n = (polls.get(name) ?? 0) + 1;
          polls.set(name, n);
          return n === 1 ? volumeReply({ vol_name: name, status: 11 }) : reply(RetCode.NOT_EXIST);
        }
        return ok();
      },
    );
    c = client(f.address);
    const many = <T>(fn: (i: number) => Promise<T>): Promise<T[]> =>
      Promise.all(Array.from({ length: CONCURRENCY }, (_, i) => fn(i)));
    const { warnings, stop } = captureWarnings();
    try {
      await many(() => c.systemInfo()); // no caller signal: only the client's own
      await many(() => c.extendVolume('v1', 2 * GiB, { signal: shared.signal }));
      await many((i) => c.deleteVolume(`gone${i}`, { signal: shared.signal }));
      // Process warnings are emitted on a later tick.
      await new Promise((r) => setImmediate(r));
    } finally {
      stop();
    }
    expect(f.count('EXTEND_VOLUME_REQ')).toBe(2 * CONCURRENCY);
    expect(f.count('QUERY_VOLUME_REQ')).toBe(2 * CONCURRENCY);
    expect(samples.map((s) => s.type)).toEqual([
      'QUERY_CAPABILITY_REQ',
      'EXTEND_VOLUME_REQ',
      'EXTEND_VOLUME_REQ',
      'DELETE_VOLUME_REQ',
      'QUERY_VOLUME_REQ',
      'QUERY_VOLUME_REQ',
    ]);
    // All calls in flight at once: one listener per shared signal, not one per call.
    for (const sample of samples) {
      expect(sample.closing).toBe(1);
      expect(sample.caller).toBe(sample.type === 'QUERY_CAPABILITY_REQ' ? 0 : 1);
    }
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(0);
    expect(getEventListeners(closingSignal(c), 'abort')).toHaveLength(0);
    expect(warnings.filter((w) => w.includes('MaxListenersExceeded'))).toEqual([]);
  });

  it('a shared signal, aborted, still cancels every call linked to it, and leaves no listener', async () => {
    const shared = new AbortController();
    const f = await fake(() => ({ hang: true }));
    const c = client(f.address);
    const calls = Array.from({ length: CONCURRENCY }, (_, i) => c.getVolume(`v${i}`, { signal: shared.signal }));
    while (f.seen.length < CONCURRENCY) await new Promise((r) => setTimeout(r, 5));
    expect(getEventListeners(shared.signal, 'abort').length).toBeLessThanOrEqual(1);
    shared.abort();
    for (const p of calls) await expectSdsError(p, 'Timeout', /cancelled after the request was sent/);
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(0);
    expect(getEventListeners(closingSignal(c), 'abort')).toHaveLength(0);
  });

  it('a call that fails leaves no listener either', async () => {
    const shared = new AbortController();
    const c = client(`127.0.0.1:${await closedPort()}`);
    const calls = Array.from({ length: CONCURRENCY }, () => c.getVolume('v1', { signal: shared.signal }));
    for (const p of calls) await expectSdsError(p, 'Unavailable');
    expect(getEventListeners(shared.signal, 'abort')).toHaveLength(0);
    expect(getEventListeners(closingSignal(c), 'abort')).toHaveLength(0);
  });
});
