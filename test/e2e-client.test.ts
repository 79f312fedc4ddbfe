// End to end: the driver's rooms — src/sds (SdsClient) and src/connector (KvConnector running the real C
// sds_cli) — against the real emulator daemon, started as a process from dist/ in a mkdtemp data dir
// (test/support/emulator.ts). Real XFS pool, real loop devices; nothing is left under the temp dir at the end.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvConnector } from '../src/connector/index.js';
import { MiB, SdsClient, SdsError } from '../src/sds/index.js';
import {
  type Daemon,
  exchange,
  forceCleanup,
  leftovers,
  makeTempDir,
  SDS_CLI,
  snapshotPath,
  startDaemon,
  stopAndCheck,
  volumePath,
} from './support/emulator.js';
import { readAt, writeAt } from './support/block-io.js';

const TOKEN = `e2e-${randomBytes(12).toString('hex')}`;
const WRONG_TOKEN = `wrong-${randomBytes(12).toString('hex')}`;

/** What the kernel says the block device's size is (sysfs counts 512-byte sectors). */
function deviceBytes(device: string): number {
  return Number(readFileSync(`/sys/block/${basename(device)}/size`, 'utf8').trim()) * 512;
}

/** Loop devices over a volume or snapshot file of this daemon (the pool's own LUN device is not one). */
function volumeLoops(d: Daemon): string[] {
  return leftovers(d.dir).loops.filter((l) => l.includes('/volumes/') || l.includes('/snapshots/'));
}

/** Like the product's bytes on the wire: one write, no empty line, never half-closed; read until the server closes. */
async function originalRequest(port: number, text: string): Promise<{ reply: string; closedByServer: boolean }> {
  const { data, closedByServer } = await exchange({ port }, Buffer.from(text), { halfClose: false, timeoutMs: 10_000 });
  return { reply: data.toString('utf8'), closedByServer };
}

function retcodeOf(reply: string): number {
  const first = reply.split('\n')[0]!;
  expect(first).toMatch(/^retcode=-?\d+$/);
  return Number(first.slice('retcode='.length));
}

/** Stops the daemon and checks that nothing is left under its temp dir, which is removed either way. */
async function stopAndExpectClean(dir: string, d: Daemon | undefined): Promise<void> {
  if (d === undefined) {
    forceCleanup(dir); // the daemon never started: nothing of it to check
    return;
  }
  const result = await stopAndCheck(d);
  expect(result).toEqual({ code: 0, loops: [], mounts: [] });
  expect(existsSync(dir)).toBe(false);
}

describe('the driver rooms against the emulator daemon', () => {
  const dir = makeTempDir('e2e-client-');
  let d!: Daemon; // undefined only if the start failed (afterAll checks)
  let client: SdsClient;
  let connector: KvConnector;

  beforeAll(async () => {
    d = await startDaemon({ dir, args: ['--pool', 'pool0:2G'] });
    // The driver's usual transport is TCP; the token test below uses the unix socket.
    client = new SdsClient({ addresses: `tcp://127.0.0.1:${d.info.tcpPort}` });
    connector = new KvConnector({ cliPath: SDS_CLI, env: { ...process.env, SDS_KV_SOCKET: d.info.kvSocket } });
  });

  afterAll(async () => {
    client?.close();
    await stopAndExpectClean(dir, d);
  });

  it('create, map, attach, write; snapshot; a linked clone and a full copy read the same bytes; extend; detach, unmap, delete', async () => {
    const host = (await client.systemInfo()).hostId;
    expect(host).toBe(d.info.hostId);
    const [pool] = await client.queryPools(['pool0']);
    expect(pool).toMatchObject({ id: 'pool0', type: 'xfs-reflink', linkedClone: true, healthy: true });

    const source = await client.createVolume({ name: 'e2e-src', sizeBytes: 64 * MiB, poolId: 'pool0' });
    expect(source).toMatchObject({
      name: 'e2e-src',
      sizeBytes: 64 * MiB,
      poolId: 'pool0',
      thin: true,
      state: 'available',
    });
    expect(existsSync(volumePath(d, 'e2e-src'))).toBe(true);

    await client.mapVolume('e2e-src', host, { readOnly: false, exclusive: true });
    expect(await client.volumeHosts('e2e-src')).toEqual([
      expect.objectContaining({ hostId: host, accessMode: 'rw', attached: false }),
    ]);
    const sourceDevice = await connector.attach('e2e-src');
    expect(sourceDevice).toMatch(/^\/dev\/loop\d+$/);
    expect(await connector.queryDevice('e2e-src')).toBe(sourceDevice);
    expect(deviceBytes(sourceDevice)).toBe(64 * MiB);
    expect(await client.volumeHosts('e2e-src')).toEqual([
      expect.objectContaining({ hostId: host, attached: true, devAddr: sourceDevice }),
    ]);

    // A pattern at the start, in the middle (not MiB-aligned) and in the last MiB.
    const pattern = [
      { offset: 0, data: randomBytes(MiB) },
      { offset: 17 * MiB + 4096, data: randomBytes(256 * 1024) },
      { offset: 63 * MiB, data: randomBytes(MiB) },
    ];
    for (const p of pattern) writeAt(sourceDevice, [{ offset: p.offset, data: p.data }]);

    const snapshot = await client.createSnapshot('e2e-snap', 'e2e-src');
    expect(snapshot).toMatchObject({ name: 'e2e-snap', volumeName: 'e2e-src', sizeBytes: 64 * MiB, poolId: 'pool0' });
    expect(existsSync(snapshotPath(d, 'e2e-snap'))).toBe(true);

    // Written after the snapshot: the source shows it, the clones must not.
    const later = randomBytes(64 * 1024);
    writeAt(sourceDevice, [{ offset: 0, data: later }]);
    expect(readAt(sourceDevice, 0, later.length).equals(later)).toBe(true);

    for (const [name, sizeBytes, cloneType] of [
      ['e2e-linked', 64 * MiB, 'linked'],
      ['e2e-full', 96 * MiB, 'full'],
    ] as const) {
      const clone = await client.createVolumeFromSnapshot({ name, sizeBytes, snapshotName: 'e2e-snap', cloneType });
      expect(clone).toMatchObject({ name, sizeBytes, source: { type: 'snapshot', name: 'e2e-snap' }, cloneType });
    }

    const cloneDevices = new Map<string, string>();
    for (const name of ['e2e-linked', 'e2e-full']) {
      await client.mapVolume(name, host, { readOnly: false, exclusive: true });
      const device = await connector.attach(name);
      expect(device).not.toBe(sourceDevice);
      expect([...cloneDevices.values()]).not.toContain(device);
      cloneDevices.set(name, device);
      for (const p of pattern) {
        expect(readAt(device, p.offset, p.data.length).equals(p.data), `${name} @ ${p.offset}`).toBe(true);
      }
    }
    expect(deviceBytes(cloneDevices.get('e2e-linked')!)).toBe(64 * MiB);
    // The full copy was made larger than its snapshot: the part past the snapshot reads as zeros.
    expect(deviceBytes(cloneDevices.get('e2e-full')!)).toBe(96 * MiB);
    expect(readAt(cloneDevices.get('e2e-full')!, 64 * MiB, MiB).equals(Buffer.alloc(MiB))).toBe(true);

    // Extend the attached source: the loop device grows with it, and the new range takes data.
    const extended = await client.extendVolume('e2e-src', 128 * MiB);
    expect(extended).toMatchObject({ name: 'e2e-src', sizeBytes: 128 * MiB });
    expect((await client.getVolume('e2e-src'))?.sizeBytes).toBe(128 * MiB);
    expect(deviceBytes(sourceDevice)).toBe(128 * MiB);
    const tail = randomBytes(MiB);
    writeAt(sourceDevice, [{ offset: 127 * MiB, data: tail }]);
    expect(readAt(sourceDevice, 127 * MiB, MiB).equals(tail)).toBe(true);

    // An attached volume cannot be deleted.
    await expect(client.deleteVolume('e2e-linked')).rejects.toMatchObject({ kind: 'Attached' });

    for (const name of ['e2e-src', 'e2e-linked', 'e2e-full']) {
      await connector.detach(name);
      await connector.detach(name); // detaching a detached volume succeeds
      expect(await connector.queryDevice(name)).toBeUndefined();
      await client.unmapVolume(name, host);
      expect(await client.volumeHosts(name)).toEqual([]);
    }
    expect(volumeLoops(d)).toEqual([]);

    for (const name of ['e2e-linked', 'e2e-full', 'e2e-src']) await client.deleteVolume(name);
    await client.deleteSnapshot('e2e-snap');

    // Gone from the back end: its answers, its listings and its pool's files.
    for (const name of ['e2e-src', 'e2e-linked', 'e2e-full']) {
      expect(await client.getVolume(name)).toBeUndefined();
      expect(existsSync(volumePath(d, name))).toBe(false);
    }
    expect(await client.getSnapshot('e2e-snap')).toBeUndefined();
    expect(existsSync(snapshotPath(d, 'e2e-snap'))).toBe(false);
    expect((await client.listVolumes({})).items).toEqual([]);
    expect((await client.listSnapshots({})).items).toEqual([]);
  });

  it('answers a request in the original Cinder format, sent in one write on a socket never half-closed, and closes', async () => {
    // The keys the Cinder driver sent for a create, with their neutral values; no empty line, no token.
    const create =
      [
        '[CREATE_VOLUME_REQ]',
        'vol_name=volume-1',
        'vol_size=1024',
        'pool_id=pool0',
        'thin_flag=1',
        'reserved=0',
        'volume_space_reserved=0',
        'force_provision_size=0',
        'iops=0',
        'max_iops=0',
        'min_iops=0',
        'cache_size=0',
        'repicate_num=1',
        'repicate_tolerant_num=0',
        'encrypt_algorithm=0',
        'consistency=0',
        'stor_space_level=0',
        'compress_algorithm=0',
        'deduplication=0',
        'snapshot=0',
        'backup_cycle=0',
        'tolerance_disk_failure=0',
        'tolerance_cache_failure=0',
      ].join('\n') + '\n';
    const created = await originalRequest(d.info.tcpPort, create);
    expect(created.closedByServer).toBe(true);
    expect(retcodeOf(created.reply)).toBe(0);
    // The original client read the reply with a single 1,024-byte recv().
    expect(Buffer.byteLength(created.reply)).toBeLessThanOrEqual(1024);

    const queried = await originalRequest(d.info.tcpPort, '[QUERY_VOLUME_REQ]\nvol_name=volume-1\n');
    expect(queried.closedByServer).toBe(true);
    expect(retcodeOf(queried.reply)).toBe(0);
    expect(queried.reply).toMatch(/^volume0=\[status=1,/m);
    expect(Buffer.byteLength(queried.reply)).toBeLessThanOrEqual(1024);
    // The driver's client sees the same volume.
    expect(await client.getVolume('volume-1')).toMatchObject({
      name: 'volume-1',
      sizeBytes: 1024 * MiB,
      poolId: 'pool0',
      thin: true,
    });

    // Delete, then poll as the Cinder driver did until -900079.
    const deleted = await originalRequest(d.info.tcpPort, '[DELETE_VOLUME_REQ]\nvol_name=volume-1\n');
    expect(deleted.closedByServer).toBe(true);
    expect(retcodeOf(deleted.reply)).toBe(0);
    let polls = 0;
    for (;;) {
      const poll = await originalRequest(d.info.tcpPort, '[QUERY_VOLUME_REQ]\nvol_name=volume-1\n');
      expect(poll.closedByServer).toBe(true);
      if (retcodeOf(poll.reply) === -900079) break;
      expect(++polls).toBeLessThan(200);
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await client.getVolume('volume-1')).toBeUndefined();
    expect(existsSync(volumePath(d, 'volume-1'))).toBe(false);
  });
});

describe('a daemon that requires a token', () => {
  const dir = makeTempDir('e2e-client-token-');
  let d!: Daemon; // undefined only if the start failed (afterAll checks)

  beforeAll(async () => {
    d = await startDaemon({ dir, args: ['--pool', 'pool0:1G'], env: { SDS_VBS_TOKEN: TOKEN } });
  });

  afterAll(async () => {
    await stopAndExpectClean(dir, d);
  });

  it('refuses a wrong or missing token as AuthFailed without showing it, and accepts the right one', async () => {
    const address = `unix://${d.info.controlSocket}`;
    const right = new SdsClient({ addresses: address, token: TOKEN });
    const wrong = new SdsClient({ addresses: address, token: WRONG_TOKEN });
    const none = new SdsClient({ addresses: address });
    try {
      for (const refused of [wrong, none]) {
        const err = await refused.systemInfo().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(SdsError);
        expect((err as SdsError).kind).toBe('AuthFailed');
        expect((err as SdsError).message).not.toContain(TOKEN);
        expect((err as SdsError).message).not.toContain(WRONG_TOKEN);
        await expect(refused.createVolume({ name: 'e2e-denied', sizeBytes: 16 * MiB })).rejects.toMatchObject({
          kind: 'AuthFailed',
        });
      }
      expect(await right.systemInfo()).toMatchObject({ product: 'SDSHypervisor', hostId: d.info.hostId });
      // Nothing a refused client asked for happened; the right token can work.
      expect(await right.getVolume('e2e-denied')).toBeUndefined();
      expect(await right.createVolume({ name: 'e2e-allowed', sizeBytes: 16 * MiB })).toMatchObject({
        name: 'e2e-allowed',
        sizeBytes: 16 * MiB,
      });
      await right.deleteVolume('e2e-allowed');
      expect(await right.getVolume('e2e-allowed')).toBeUndefined();
    } finally {
      right.close();
      wrong.close();
      none.close();
    }
  });

  it('refuses an original-format request without a token once a token is configured', async () => {
    const { reply, closedByServer } = await originalRequest(d.info.tcpPort, '[QUERY_VOLUME_REQ]\nvol_name=volume-1\n');
    expect(closedByServer).toBe(true);
    expect(retcodeOf(reply)).toBe(-900004);
    expect(reply).not.toContain(TOKEN);
  });
});
