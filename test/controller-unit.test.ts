// Unit tests of the controller room: its pure helpers, and its handlers over a real gRPC socket in process
// with a fake back end (for what the real emulator cannot easily be made to do). The conformance suite
// (test/conformance-*.test.ts) drives the real driver and emulator processes.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  backendNameFor,
  checkCsiName,
  decodePageToken,
  encodePageToken,
  isKnownIdForm,
} from '../src/controller/ids.js';
import {
  parseMutableParameters,
  parseSnapshotParameters,
  parseVolumeParameters,
} from '../src/controller/parameters.js';
import { choosePool, poolCeilingBytes, PoolDirectory } from '../src/controller/placement.js';
import { chooseSize, parseCapacityRange, TOPOLOGY_HOST_KEY } from '../src/controller/validation.js';
import { GiB, MiB, type PoolInfo } from '../src/sds/backend.js';
import { CsiError, status } from '../src/server/errors.js';
import { failure, settle } from './support/csi-client.js';
import { FakeBackend } from './support/fake-backend.js';
import { startInProcess, type InProcessServer } from './support/in-process.js';

function codeOf(fn: () => unknown): status | 'ok' {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (err instanceof CsiError) return err.code;
    throw err;
  }
}
function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('expected a throw');
}

describe('CSI names → back-end names', () => {
  it('passes Kubernetes names through and hashes others into a disjoint H_ form', () => {
    expect(backendNameFor('pvc-6f1b2c9a-0d4e-4c1a-9b7e-1d2f3a4b5c6d')).toBe('pvc-6f1b2c9a-0d4e-4c1a-9b7e-1d2f3a4b5c6d');
    const hashed = backendNameFor('My Volume/ü');
    expect(hashed).toMatch(/^H_[0-9a-f]{40}$/);
    expect(backendNameFor('My Volume/ü')).toBe(hashed);
    expect(backendNameFor('a'.repeat(64))).toMatch(/^H_/);
    expect(backendNameFor('a'.repeat(63))).toBe('a'.repeat(63));
    expect(backendNameFor('Upper')).toMatch(/^H_/);
  });

  it('accepts names up to 128 bytes and refuses longer ones and banned control characters', () => {
    expect(codeOf(() => checkCsiName('name', 'é'.repeat(64)))).toBe('ok');
    expect(codeOf(() => checkCsiName('name', 'é'.repeat(64) + 'x'))).toBe(status.INVALID_ARGUMENT);
    expect(codeOf(() => checkCsiName('name', ''))).toBe(status.INVALID_ARGUMENT);
    for (const c of ['\u0000', '\u0008', '\u000b', '\u000c', '\u001f', '\u007f', '\u009f']) {
      expect(codeOf(() => checkCsiName('name', `a${c}b`))).toBe(status.INVALID_ARGUMENT);
    }
    for (const c of ['\t', '\n', '\r', ' ', '\u00a0']) expect(codeOf(() => checkCsiName('name', `a${c}b`))).toBe('ok');
    expect(messageOf(() => checkCsiName('name', 'a\u0001'))).toContain('U+0001');
  });

  it('tells ids that cannot exist from possible ones', () => {
    expect(isKnownIdForm('volume_id', 'pvc-1')).toBe(true);
    expect(isKnownIdForm('volume_id', '../etc')).toBe(false);
    expect(isKnownIdForm('volume_id', 'a\u0000b')).toBe(false);
    expect(isKnownIdForm('volume_id', 'x'.repeat(10_000))).toBe(false);
    expect(codeOf(() => isKnownIdForm('volume_id', ''))).toBe(status.INVALID_ARGUMENT);
  });

  it('round-trips pagination tokens and refuses foreign ones with ABORTED', () => {
    expect(encodePageToken('lv1', '')).toBe('');
    const token = encodePageToken('lv1', 'pvc-42');
    expect(decodePageToken('lv1', token)).toBe('pvc-42');
    expect(decodePageToken('lv1', '')).toBe('');
    // Another valid token decodes to its own marker: the tokens are not tied to one page.
    expect(decodePageToken('lv1', 'lv1.cHZjLTQz')).toBe('pvc-43');
    for (const bad of [
      'invalid-token',
      'ls1.cHZjLTQy',
      `lv1.${Buffer.from('../x').toString('base64url')}`,
      'lv1.',
      'lv1.cHZjLTQy=',
    ]) {
      expect(codeOf(() => decodePageToken('lv1', bad))).toBe(status.ABORTED);
    }
  });
});

describe('StorageClass parameters', () => {
  it('parses every key with defaults, Kubernetes metadata keys accepted and dropped', () => {
    expect(parseVolumeParameters({})).toEqual({ qos: {}, thin: true, allowPvcImageSource: false });
    const p = parseVolumeParameters({
      pool: 'pool0',
      cloneMode: 'full',
      thin: 'false',
      cache: 'read',
      maxIOPS: '500',
      maxMBps: '0',
      qosLevel: 'high',
      fsType: 'xfs',
      imageSource: 'https://images.example/a.qcow2',
      imageChecksum: `sha256:${'a'.repeat(64)}`,
      'csi.storage.k8s.io/pvc/name': 'data',
      'csi.storage.k8s.io/pvc/namespace': 'default',
      'csi.storage.k8s.io/pv/name': 'pvc-1',
    });
    expect(p).toEqual({
      poolId: 'pool0',
      cloneMode: 'full',
      thin: false,
      cachePolicy: 'read',
      qos: { maxIops: 500, maxMBps: 0, priority: 3 },
      fsType: 'xfs',
      image: { url: 'https://images.example/a.qcow2', checksum: `sha256:${'a'.repeat(64)}` },
      allowPvcImageSource: false,
    });
  });

  it('names the unknown key or the bad value', () => {
    expect(messageOf(() => parseVolumeParameters({ colour: 'blue' }))).toMatch(/parameters: unknown key "colour"/);
    expect(messageOf(() => parseVolumeParameters({ maxIOPS: '-1' }))).toMatch(/parameters\.maxIOPS/);
    expect(messageOf(() => parseVolumeParameters({ maxMBps: '1.5' }))).toMatch(/parameters\.maxMBps/);
    expect(messageOf(() => parseVolumeParameters({ thin: 'yes' }))).toMatch(
      /parameters\.thin: must be one of true, false/,
    );
    expect(messageOf(() => parseVolumeParameters({ cloneMode: 'deep' }))).toMatch(/parameters\.cloneMode/);
    expect(messageOf(() => parseVolumeParameters({ pool: '../p' }))).toMatch(/parameters\.pool/);
    expect(messageOf(() => parseVolumeParameters({ fsType: 'btrfs' }))).toMatch(/parameters\.fsType/);
    expect(messageOf(() => parseVolumeParameters({ imageSource: 'relative/a.img' }))).toMatch(
      /parameters\.imageSource/,
    );
    expect(messageOf(() => parseVolumeParameters({ imageSource: '/images/../etc/shadow' }))).toMatch(
      /parameters\.imageSource/,
    );
    expect(messageOf(() => parseVolumeParameters({ imageSource: '/a.img', imageChecksum: 'sha1:abc' }))).toMatch(
      /parameters\.imageChecksum/,
    );
    expect(messageOf(() => parseVolumeParameters({ imageChecksum: `md5:${'0'.repeat(32)}` }))).toMatch(
      /imageChecksum: needs parameters\.imageSource/,
    );
    expect(codeOf(() => parseVolumeParameters({ qosLevel: 'urgent' }))).toBe(status.INVALID_ARGUMENT);
  });

  it('lets mutable parameters win and refuses immutable keys among them', () => {
    const mutable = parseMutableParameters({ maxIOPS: '100', cache: 'none' });
    expect(parseVolumeParameters({ maxIOPS: '5', maxMBps: '7', cache: 'readwrite' }, mutable)).toMatchObject({
      qos: { maxIops: 100, maxMBps: 7 },
      cachePolicy: 'none',
    });
    expect(messageOf(() => parseMutableParameters({ pool: 'pool0' }))).toMatch(
      /mutable_parameters: unknown key "pool"/,
    );
    expect(codeOf(() => parseSnapshotParameters({ 'csi.storage.k8s.io/volumesnapshot/name': 's' }))).toBe('ok');
    expect(messageOf(() => parseSnapshotParameters({ retention: '1d' }))).toMatch(/unknown key "retention"/);
  });
});

describe('sizes', () => {
  const range = (required: number, limit = 0) =>
    parseCapacityRange('capacity_range', { required_bytes: String(required), limit_bytes: String(limit) });
  it('rounds up to MiB, defaults to 1 GiB and honours limit_bytes', () => {
    expect(chooseSize('c', range(0))).toBe(GiB);
    expect(chooseSize('c', range(1))).toBe(MiB);
    expect(chooseSize('c', range(MiB + 1))).toBe(2 * MiB);
    expect(chooseSize('c', range(0, 10 * MiB + 5))).toBe(10 * MiB);
    expect(codeOf(() => chooseSize('c', range(MiB + 1, MiB + 2)))).toBe(status.OUT_OF_RANGE);
    expect(codeOf(() => chooseSize('c', range(0, 1000)))).toBe(status.OUT_OF_RANGE);
    expect(codeOf(() => range(10, 5))).toBe(status.OUT_OF_RANGE);
    expect(codeOf(() => range(-1))).toBe(status.INVALID_ARGUMENT);
    expect(codeOf(() => chooseSize('c', range(Number.MAX_SAFE_INTEGER)))).toBe(status.OUT_OF_RANGE);
    expect(
      codeOf(() =>
        chooseSize('c', parseCapacityRange('c', { required_bytes: '9223372036854775807', limit_bytes: '0' })),
      ),
    ).toBe(status.OUT_OF_RANGE);
  });
  it('takes the source size by default and refuses less than it', () => {
    expect(chooseSize('c', range(0), 64 * MiB)).toBe(64 * MiB);
    expect(chooseSize('c', range(100 * MiB), 64 * MiB)).toBe(100 * MiB);
    expect(codeOf(() => chooseSize('c', range(32 * MiB), 64 * MiB))).toBe(status.OUT_OF_RANGE);
    expect(codeOf(() => chooseSize('c', range(0, 32 * MiB), 64 * MiB))).toBe(status.OUT_OF_RANGE);
  });
});

describe('pool placement', () => {
  const pool = (id: string, hosts: string[], extra: Partial<PoolInfo> = {}): PoolInfo => ({
    id,
    totalBytes: 10 * GiB,
    freeBytes: 10 * GiB,
    provisionedBytes: 0,
    allocatedBytes: 0,
    maxOversubscription: 3,
    thinCapacityBytes: 30 * GiB,
    thickCapacityBytes: 10 * GiB,
    linkedClone: true,
    type: 'xfs-reflink',
    hosts,
    healthy: true,
    ...extra,
  });
  const pools = [pool('p1', ['h1']), pool('p2', ['h2', 'h3'])];
  const seg = (host?: string, zone?: string) => ({
    segments: {
      ...(host ? { [TOPOLOGY_HOST_KEY]: host } : {}),
      ...(zone ? { 'topology.kubernetes.io/zone': zone } : {}),
    },
  });

  it('takes the named or first pool, and honours requisite and preferred hosts', () => {
    expect(choosePool(pools, undefined, null).id).toBe('p1');
    expect(choosePool(pools, 'p2', null).id).toBe('p2');
    expect(choosePool(pools, undefined, { requisite: [seg('h3', 'z1')], preferred: [] }).id).toBe('p2');
    expect(choosePool(pools, undefined, { requisite: [seg('h1'), seg('h2')], preferred: [seg('h2')] }).id).toBe('p2');
    expect(choosePool(pools, undefined, { requisite: [], preferred: [seg('h3')] }).id).toBe('p2');
  });
  it('ignores segments without our key, and refuses unreachable requirements', () => {
    expect(choosePool(pools, undefined, { requisite: [seg(undefined, 'z9')], preferred: [] }).id).toBe('p1');
    expect(codeOf(() => choosePool(pools, undefined, { requisite: [seg('h9')], preferred: [] }))).toBe(
      status.RESOURCE_EXHAUSTED,
    );
    expect(codeOf(() => choosePool(pools, 'p1', { requisite: [seg('h2')], preferred: [] }))).toBe(
      status.RESOURCE_EXHAUSTED,
    );
    expect(messageOf(() => choosePool(pools, 'nope', null))).toMatch(/parameters\.pool/);
  });
  it('caps thin volumes at total × over-subscription and thick ones at total', () => {
    expect(poolCeilingBytes(pools[0]!, true)).toBe(30 * GiB);
    expect(poolCeilingBytes(pools[0]!, false)).toBe(10 * GiB);
  });
  it('reads the pool layout through a short cache: one request for concurrent callers, none within the TTL, failures not kept', async () => {
    let fetches = 0;
    let fail = false;
    const directory = new PoolDirectory(async () => {
      fetches++;
      await new Promise((r) => setTimeout(r, 10));
      if (fail) throw new Error('VBS down');
      return pools;
    }, 50);
    const [a, b] = await Promise.all([directory.pools({}), directory.pools({})]);
    expect(a).toBe(b);
    expect(fetches).toBe(1);
    expect((await directory.pool('p2', {}))?.id).toBe('p2');
    expect(fetches).toBe(1);
    await new Promise((r) => setTimeout(r, 60));
    fail = true;
    await expect(directory.pools({})).rejects.toThrow('VBS down');
    fail = false;
    expect(await directory.pools({})).toBe(pools);
    expect(fetches).toBe(3);
  });
  it('stops a caller waiting for the pool list when its own call ends', async () => {
    const directory = new PoolDirectory(() => new Promise<PoolInfo[]>((r) => setTimeout(() => r(pools), 100)));
    const ended = new AbortController();
    const waiting = directory.pools({ signal: ended.signal });
    ended.abort(new Error('deadline'));
    await expect(waiting).rejects.toMatchObject({ name: 'SdsError', kind: 'Timeout' });
    expect(await directory.pools({})).toBe(pools);
  });
});

describe('controller handlers over gRPC, fake back end', () => {
  let backend: FakeBackend;
  let server: InProcessServer;
  const mount = { mount: { fs_type: 'ext4' }, access_mode: { mode: 'SINGLE_NODE_WRITER' as const } };
  const block = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' as const } };
  /** A CreateVolume of `name` with one capability and these fields that fails: its error. */
  const createRefused = (name: string, cap: typeof mount | typeof block, fields: Record<string, unknown>) =>
    failure(server.csi.controller.CreateVolume({ name, volume_capabilities: [cap], ...fields }));

  beforeAll(async () => {
    backend = new FakeBackend();
    server = await startInProcess(backend);
  });
  afterAll(async () => server.stop());
  beforeEach(() => {
    backend.volumes.clear();
    backend.snapshots.clear();
    backend.mappings.clear();
    backend.unavailable = false;
    backend.delayMs = 0;
  });

  it('refuses a second concurrent operation on one name with ABORTED and makes one volume', async () => {
    backend.delayMs = 200;
    const req = { name: 'pvc-race', volume_capabilities: [mount] };
    const [a, b] = await Promise.all([
      settle(server.csi.controller.CreateVolume(req)),
      settle(server.csi.controller.CreateVolume(req)),
    ]);
    const outcomes = [a, b].map((r) => (r.ok ? 'OK' : r.codeName)).sort();
    expect(outcomes).toEqual(['ABORTED', 'OK']);
    const aborted = [a, b].find((r) => !r.ok) as { message: string };
    expect(aborted.message).toContain('an operation on volume pvc-race is already in progress');
    expect([...backend.volumes.keys()]).toEqual(['pvc-race']);
    backend.delayMs = 0;
    expect((await server.csi.controller.CreateVolume(req)).volume?.volume_id).toBe('pvc-race');
  });

  it('shares raw block among hosts with MULTI_NODE_MULTI_WRITER, refuses it for a mount volume naming the field', async () => {
    const rwx = { block: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' as const } };
    const { volume } = await server.csi.controller.CreateVolume({ name: 'pvc-rwx', volume_capabilities: [rwx] });
    for (const node of ['host-a', 'host-b'])
      await server.csi.controller.ControllerPublishVolume({
        volume_id: volume!.volume_id,
        node_id: node,
        volume_capability: rwx,
      });
    expect(backend.mappings.get('pvc-rwx')?.map((m) => [m.hostId, m.accessMode])).toEqual([
      ['host-a', 'rw'],
      ['host-b', 'rw'],
    ]);
    const rwxMount = { mount: { fs_type: 'ext4' }, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' as const } };
    const refused = await settle(
      server.csi.controller.CreateVolume({ name: 'pvc-rwx-fs', volume_capabilities: [rwxMount] }),
    );
    expect(refused.ok ? 'OK' : refused.codeName).toBe('INVALID_ARGUMENT');
    expect((refused as { message: string }).message).toMatch(
      /^volume_capabilities: .*not supported for a mount volume/,
    );
  });

  it('creates a plain volume with one back-end request, and judges a taken name by CSI rules, not exact sizes', async () => {
    const create = (name: string, range: { required_bytes: number; limit_bytes?: number }) =>
      server.csi.controller.CreateVolume({ name, capacity_range: range, volume_capabilities: [mount] });
    await create('pvc-warm', { required_bytes: GiB }); // the pool layout is cached from here on
    backend.calls.length = 0;
    expect((await create('pvc-one', { required_bytes: GiB })).volume?.capacity_bytes).toBe(String(GiB));
    expect(backend.calls).toEqual(['createVolume']);
    // The back end refuses a different exact size; CSI accepts any size inside the range: the same volume.
    backend.calls.length = 0;
    const again = await create('pvc-one', { required_bytes: 512 * MiB, limit_bytes: 2 * GiB });
    expect(again.volume?.capacity_bytes).toBe(String(GiB));
    expect(backend.calls).toEqual(['createVolume', 'getVolume']);
    const outside = await failure(create('pvc-one', { required_bytes: 2 * GiB }));
    expect(outside.code).toBe(status.ALREADY_EXISTS);
    expect(outside.message).toMatch(/outside the requested capacity_range/);
    expect([...backend.volumes.keys()].sort()).toEqual(['pvc-one', 'pvc-warm']);
  });

  it('answers UNAVAILABLE while the back end is unreachable', async () => {
    backend.unavailable = true;
    const f = await failure(server.csi.controller.CreateVolume({ name: 'pvc-x', volume_capabilities: [mount] }));
    expect(f.code).toBe(status.UNAVAILABLE);
    expect((await failure(server.csi.controller.ListVolumes({}))).code).toBe(status.UNAVAILABLE);
  });

  it('imports an image for imageSource, and reports a failed import as INVALID_ARGUMENT', async () => {
    const ok = await server.csi.controller.CreateVolume({
      name: 'pvc-img',
      volume_capabilities: [mount],
      parameters: { imageSource: '/images/base.raw', imageChecksum: `md5:${'1'.repeat(32)}` },
    });
    expect(ok.volume?.capacity_bytes).toBe(String(16 * MiB));
    expect(backend.volumes.get('pvc-img')?.source).toEqual({ type: 'image' });
    const f = await createRefused('pvc-img2', mount, { parameters: { imageSource: '/images/broken.raw' } });
    expect(f.code).toBe(status.INVALID_ARGUMENT);
    expect(f.message).toMatch(
      /parameters\.imageSource: the image \/images\/broken\.raw could not be imported into volume pvc-img2: unreadable image/,
    );
    expect(backend.volumes.has('pvc-img2')).toBe(false);
    const both = await createRefused('pvc-img3', mount, {
      parameters: { imageSource: '/images/base.raw' },
      volume_content_source: { volume: { volume_id: 'pvc-img' } },
    });
    expect(both.code).toBe(status.INVALID_ARGUMENT);
  });

  it('refuses linked clones on a pool that cannot link, and defaults to full copies there', async () => {
    await server.csi.controller.CreateVolume({
      name: 'pvc-src',
      volume_capabilities: [block],
      parameters: { pool: 'pool1' },
      capacity_range: { required_bytes: String(64 * MiB) },
    });
    const ofSource = { volume_content_source: { volume: { volume_id: 'pvc-src' } } };
    const linked = await createRefused('pvc-clone', block, { ...ofSource, parameters: { cloneMode: 'linked' } });
    expect(linked.code).toBe(status.FAILED_PRECONDITION);
    expect(linked.message).toMatch(/parameters\.cloneMode/);
    const clone = await server.csi.controller.CreateVolume({
      name: 'pvc-clone',
      volume_capabilities: [block],
      ...ofSource,
    });
    expect(clone.volume?.content_source?.volume?.volume_id).toBe('pvc-src');
    expect(backend.volumes.get('pvc-clone')?.cloneType).toBe('full');
    expect(clone.volume?.accessible_topology).toEqual([{ segments: { [TOPOLOGY_HOST_KEY]: 'host-c' } }]);
    const wrongPool = await createRefused('pvc-clone2', block, { ...ofSource, parameters: { pool: 'pool0' } });
    expect(wrongPool.code).toBe(status.INVALID_ARGUMENT);
  });

  it('reports thin and thick capacity per pool and topology', async () => {
    const thin = await server.csi.controller.GetCapacity({ parameters: { pool: 'pool0' } });
    expect(thin.available_capacity).toBe(String(256 * GiB));
    const thick = await server.csi.controller.GetCapacity({ parameters: { pool: 'pool0', thin: 'false' } });
    expect(thick.available_capacity).toBe(String(64 * GiB));
    const atC = await server.csi.controller.GetCapacity({
      accessible_topology: { segments: { [TOPOLOGY_HOST_KEY]: 'host-c' } },
    });
    expect(atC.available_capacity).toBe(String(8 * GiB));
    const nowhere = await server.csi.controller.GetCapacity({
      accessible_topology: { segments: { [TOPOLOGY_HOST_KEY]: 'host-z' } },
    });
    expect(nowhere.available_capacity).toBe('0');
    const unsupported = await server.csi.controller.GetCapacity({
      volume_capabilities: [{ block: {}, access_mode: { mode: 'MULTI_NODE_SINGLE_WRITER' } }],
    });
    expect(unsupported.available_capacity).toBe('0');
    expect((await failure(server.csi.controller.GetCapacity({ parameters: { speed: 'fast' } }))).message).toMatch(
      /unknown key "speed"/,
    );
  });

  it('pages through more volumes than one back-end page, and bounds unlimited responses', async () => {
    for (let i = 0; i < 2105; i++)
      backend.volumes.set(`v-${String(i).padStart(4, '0')}`, {
        ...(await backend.createVolume({ name: `tmp-${i}`, sizeBytes: MiB })),
        name: `v-${String(i).padStart(4, '0')}`,
      });
    for (const name of [...backend.volumes.keys()]) if (name.startsWith('tmp-')) backend.volumes.delete(name);
    const unlimited = await server.csi.controller.ListVolumes({});
    expect(unlimited.entries).toHaveLength(2000);
    const tail = await server.csi.controller.ListVolumes({ starting_token: unlimited.next_token });
    expect(tail.entries).toHaveLength(105);
    expect(tail.entries[0]?.volume?.volume_id).toBe('v-2000');
    expect(tail.next_token).toBe('');
    const first = await server.csi.controller.ListVolumes({ max_entries: 1100 });
    expect(first.entries).toHaveLength(1100);
    const rest = await server.csi.controller.ListVolumes({ starting_token: first.next_token, max_entries: 5000 });
    expect(rest.entries.map((e) => e.volume?.volume_id)[0]).toBe('v-1100');
    expect(rest.entries).toHaveLength(1005);
    expect(rest.next_token).toBe('');
  });
});
