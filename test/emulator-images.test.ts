// Image import (path, file://, http; raw and qcow2; checksums) and export (raw, qcow2) as asynchronous
// jobs, with their failure rules: a failed import leaves no volume, paths stay inside the image directories.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  writeSync,
} from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type Daemon, makeTempDir, MiB, sleep, volumePath, waitGone, waitJob } from './support/emulator.js';
import { serveImages, type ImageServer } from './support/image-server.js';
import { daemonForSuite } from './support/emulator-suite.js';

describe('image import and export', () => {
  let d: Daemon;
  let sock: string;
  let img: string;
  let raw: Buffer;
  let web: ImageServer;

  const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

  daemonForSuite(
    () => {
      const dir = makeTempDir();
      img = join(dir, 'img');
      mkdirSync(img);
      // The test's own http server listens on 127.0.0.1, which imports may reach only when allowlisted.
      return { dir, args: ['--pool', 'pool0:2G', '--image-dir', img, '--image-url-allow', '127.0.0.1'] };
    },
    (started) => {
      d = started;
      sock = started.info.controlSocket;
    },
  );
  beforeAll(async () => {
    // 24 MiB, mostly holes, with data at the start, in the middle and at the end.
    raw = Buffer.alloc(24 * MiB);
    randomBytes(MiB).copy(raw, 0);
    randomBytes(3 * MiB + 123).copy(raw, 12 * MiB);
    randomBytes(4096).copy(raw, 24 * MiB - 4096);
    const fd = openSync(join(img, 'disk.raw'), 'w');
    ftruncateSync(fd, raw.length);
    for (const [off, len] of [
      [0, MiB],
      [12 * MiB, 3 * MiB + 123],
      [24 * MiB - 4096, 4096],
    ] as const)
      writeSync(fd, raw, off, len, off);
    closeSync(fd);
    expect(
      spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', join(img, 'disk.raw'), join(img, 'disk.qcow2')])
        .status,
    ).toBe(0);

    web = await serveImages(img, Buffer.concat([randomBytes(64 * 1024), Buffer.alloc(8 * MiB - 64 * 1024)]), {
      '/redirect': (res) => {
        res.writeHead(302, { location: '/disk.raw' });
        res.end();
      },
    });
  });

  afterAll(() => web?.close());

  async function exportRaw(name: string): Promise<Buffer> {
    const target = join(img, `${name}.out`);
    const a = await call(sock, 'EXPORT_IMAGE_REQ', { vol_name: name, image_path: target, overwrite: 1 });
    expect(a.retcode).toBe(0);
    const job = await waitJob(sock, a.get('job_id')!);
    expect(job).toMatchObject({ status: 'done', job_type: 'export', vol_name: name, error: '' });
    return readFileSync(target);
  }

  function poolLeftovers(): string[] {
    const tmp = join(d.dataDir, 'pools', 'pool0', '.tmp');
    return readdirSync(tmp);
  }

  it('imports a raw file from a path, sparse, with a sha256 checksum; exports it back byte-equal', async () => {
    const a = await call(sock, 'IMPORT_IMAGE_REQ', {
      vol_name: 'im-raw',
      image_url: join(img, 'disk.raw'),
      checksum: `sha256:${sha256(raw)}`,
    });
    expect(a.retcode).toBe(0);
    expect(a.get('job_id')).toMatch(/^job-/);
    expect(a.record('volume0')).toMatchObject({ vol_name: 'im-raw', vol_size: '24', src_type: 'image' });
    const job = await waitJob(sock, a.get('job_id')!);
    expect(job).toMatchObject({
      status: 'done',
      job_type: 'import',
      vol_name: 'im-raw',
      bytes_done: String(raw.length),
    });
    const rec = (await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'im-raw' })).record('volume0');
    expect(rec).toMatchObject({ status: '1', vol_size: '24', health: 'ok' });
    expect(statSync(volumePath(d, 'im-raw')).blocks * 512).toBeLessThanOrEqual(6 * MiB);
    expect((await exportRaw('im-raw')).equals(raw)).toBe(true);
  });

  it('imports a qcow2 file by file:// URL (format detected) into a bigger volume', async () => {
    const a = await call(sock, 'IMPORT_IMAGE_REQ', {
      vol_name: 'im-qcow',
      image_url: `file://${join(img, 'disk.qcow2')}`,
      vol_size: 32,
    });
    expect(a.retcode).toBe(0);
    expect((await waitJob(sock, a.get('job_id')!)).status).toBe('done');
    const back = await exportRaw('im-qcow');
    expect(back.length).toBe(32 * MiB);
    expect(back.subarray(0, raw.length).equals(raw)).toBe(true);
    expect(back.subarray(raw.length).equals(Buffer.alloc(8 * MiB))).toBe(true);
  });

  it('imports raw and qcow2 over http with checksums, also through a redirect', async () => {
    const qcow = readFileSync(join(img, 'disk.qcow2'));
    const cases = [
      { name: 'h-raw', url: `${web.base}/disk.raw`, sum: `md5:${md5(raw)}` },
      { name: 'h-qcow', url: `${web.base}/disk.qcow2`, sum: `md5:${md5(qcow)}` },
      { name: 'h-redir', url: `${web.base}/redirect`, sum: `sha256:${sha256(raw)}` },
    ];
    for (const c of cases) {
      const a = await call(sock, 'IMPORT_IMAGE_REQ', {
        vol_name: c.name,
        image_url: c.url,
        checksum: c.sum,
        thin_flag: 0,
      });
      expect([a.retcode, a.get('ret_desc')]).toEqual([0, undefined]);
      expect((await waitJob(sock, a.get('job_id')!)).status).toBe('done');
      expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: c.name })).record('volume0')).toMatchObject({
        thin_flag: '0',
        alloc_size: '24',
      });
      expect((await exportRaw(c.name)).equals(raw)).toBe(true);
    }
  });

  it('fails an import with a checksum mismatch and leaves no volume and no file', async () => {
    for (const [name, url] of [
      ['bad-sum', join(img, 'disk.raw')],
      ['bad-sum-q', `${web.base}/disk.qcow2`],
    ] as const) {
      const a = await call(sock, 'IMPORT_IMAGE_REQ', {
        vol_name: name,
        image_url: url,
        checksum: `sha256:${'0'.repeat(64)}`,
      });
      expect([a.retcode, a.get('ret_desc')]).toEqual([0, undefined]);
      const job = await waitJob(sock, a.get('job_id')!);
      expect(job.status).toBe('failed');
      expect(job.error).toMatch(/checksum mismatch/);
      expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: name })).retcode).toBe(-900079);
      expect(existsSync(volumePath(d, name))).toBe(false);
    }
    expect(poolLeftovers()).toEqual([]);
  });

  it('refuses bad sources up front', async () => {
    const cases: Array<[Record<string, string | number>, number]> = [
      [{ image_url: '/etc/hostname' }, -900019],
      [{ image_url: join(d.dataDir, 'emulator.db') }, -900019],
      [{ image_url: volumePath(d, 'im-raw') }, -900019],
      [{ image_url: join(img, 'missing.raw') }, -900019],
      [{ image_url: 'relative/disk.raw' }, -900003],
      [{ image_url: 'ftp://x/y' }, -900003],
      [{ image_url: `${web.base}/missing` }, -900019],
      [{ image_url: join(img, 'disk.raw'), vol_size: 10 }, -900019],
      [{ image_url: join(img, 'disk.raw'), image_format: 'qcow2' }, -900019],
      [{ image_url: join(img, 'disk.raw'), image_format: 'vmdk' }, -900003],
      [{ image_url: join(img, 'disk.raw'), checksum: 'crc:1' }, -900003],
    ];
    for (const [fields, code] of cases) {
      const a = await call(sock, 'IMPORT_IMAGE_REQ', { vol_name: 'never', ...fields });
      expect([fields, a.retcode]).toEqual([fields, code]);
    }
    expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'never' })).retcode).toBe(-900079);
    expect(
      (await call(sock, 'IMPORT_IMAGE_REQ', { vol_name: 'im-raw', image_url: join(img, 'disk.raw') })).retcode,
    ).toBe(-900011);
  });

  it('refuses formats it cannot read by their first bytes (image_format=auto), naming them, before any volume exists', async () => {
    const vdi = Buffer.alloc(512);
    vdi.writeUInt32LE(0xbeda107f, 0x40);
    const heads: Array<[string, Buffer, string]> = [
      ['a.vmdk', Buffer.from('KDMV'), 'vmdk'],
      ['b.vmdk', Buffer.from('# Disk DescriptorFile\n'), 'vmdk'],
      ['c.vhdx', Buffer.from('vhdxfile'), 'vhdx'],
      ['d.vhd', Buffer.from('conectix'), 'vhd'],
      ['e.qed', Buffer.from('QED\0'), 'qed'],
      ['f.vdi', vdi, 'vdi'],
      ['g.gz', Buffer.from([0x1f, 0x8b, 8, 0]), 'gzip-compressed'],
      ['h.xz', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), 'xz-compressed'],
      ['i.zst', Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), 'zstd-compressed'],
      ['j.bz2', Buffer.from('BZh9'), 'bzip2-compressed'],
    ];
    for (const [file, head, format] of heads) {
      const path = join(img, file);
      const fd = openSync(path, 'w');
      writeSync(fd, head, 0, head.length, 0);
      ftruncateSync(fd, 4 * MiB);
      closeSync(fd);
      const a = await call(sock, 'IMPORT_IMAGE_REQ', { vol_name: 'foreign', image_url: path });
      expect([file, a.retcode]).toEqual([file, -900019]);
      expect(a.get('ret_desc')).toContain(`the image is ${format}, which this VBS cannot read`);
    }
    expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'foreign' })).retcode).toBe(-900079);
    // Asked for as raw, the same bytes are the caller's business: imported as they are.
    const raw = await call(sock, 'IMPORT_IMAGE_REQ', {
      vol_name: 'foreign',
      image_url: join(img, 'a.vmdk'),
      image_format: 'raw',
    });
    expect((await waitJob(sock, raw.get('job_id')!)).status).toBe('done');
    expect((await call(sock, 'DELETE_VOLUME_REQ', { vol_name: 'foreign' })).retcode).toBe(0);
    await waitGone(sock, 'QUERY_VOLUME_REQ', { vol_name: 'foreign' });
  });

  it('exports qcow2 and snapshots; refuses overwrites, bad paths and missing sources', async () => {
    const target = join(img, 'out.qcow2');
    const a = await call(sock, 'EXPORT_IMAGE_REQ', { vol_name: 'im-raw', image_path: target, image_format: 'qcow2' });
    expect(a.retcode).toBe(0);
    expect((await waitJob(sock, a.get('job_id')!)).status).toBe('done');
    expect(
      readFileSync(target)
        .subarray(0, 4)
        .equals(Buffer.from([0x51, 0x46, 0x49, 0xfb])),
    ).toBe(true);
    expect(spawnSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', target, join(img, 'check.raw')]).status).toBe(
      0,
    );
    expect(readFileSync(join(img, 'check.raw')).equals(raw)).toBe(true);

    const exists = await call(sock, 'EXPORT_IMAGE_REQ', { vol_name: 'im-raw', image_path: target });
    expect(exists.retcode).toBe(-900019);
    expect(exists.get('ret_desc')).toMatch(/overwrite/);

    expect((await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'im-snap', vol_name: 'im-raw' })).retcode).toBe(0);
    const s = await call(sock, 'EXPORT_IMAGE_REQ', { snap_name: 'im-snap', image_path: join(img, 'snap.raw') });
    expect(s.retcode).toBe(0);
    expect((await waitJob(sock, s.get('job_id')!)).status).toBe('done');
    expect(readFileSync(join(img, 'snap.raw')).equals(raw)).toBe(true);

    const cases: Array<[Record<string, string | number>, number]> = [
      [{ vol_name: 'im-raw', image_path: '/etc/out.raw' }, -900019],
      [{ vol_name: 'im-raw', image_path: join(d.dataDir, 'pools', 'pool0', 'volumes', 'x') }, -900019],
      [{ vol_name: 'im-raw', image_path: `${img}/../img/x.raw` }, -900003],
      [{ vol_name: 'im-raw', image_path: 'x.raw' }, -900003],
      [{ vol_name: 'im-raw', image_path: join(img, 'nodir', 'x.raw') }, -900019],
      [{ vol_name: 'nope', image_path: join(img, 'x.raw') }, -900079],
      [{ snap_name: 'nope', image_path: join(img, 'x.raw') }, -900079],
      [{ vol_name: 'im-raw', snap_name: 'im-snap', image_path: join(img, 'x.raw') }, -900003],
      [{ vol_name: 'im-raw', image_path: join(img, 'x.raw'), image_format: 'vmdk' }, -900003],
    ];
    for (const [fields, code] of cases) {
      const r = await call(sock, 'EXPORT_IMAGE_REQ', fields);
      expect([fields, r.retcode]).toEqual([fields, code]);
    }
    expect(existsSync(join(img, 'x.raw'))).toBe(false);
    expect(readdirSync(img).filter((f) => f.endsWith('.part'))).toEqual([]);
    expect((await call(sock, 'QUERY_IMAGE_JOB_REQ', { job_id: 'job-unknown' })).retcode).toBe(-900079);
  });

  it('keeps an importing volume busy (status 10, -900013) until the job ends', async () => {
    const a = await call(sock, 'IMPORT_IMAGE_REQ', { vol_name: 'slow', image_url: `${web.base}/stall` });
    expect(a.retcode).toBe(0);
    const jobId = a.get('job_id')!;
    expect(a.record('volume0')).toMatchObject({ status: '10', vol_size: '8', job_id: jobId });
    for (let i = 0; i < 100 && web.releaseStall === undefined; i++) await sleep(10);
    const running = (await call(sock, 'QUERY_IMAGE_JOB_REQ', { job_id: jobId })).record('job0');
    expect(running).toMatchObject({ status: 'running', bytes_total: String(8 * MiB) });
    expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'slow' })).record('volume0').status).toBe('10');
    expect((await call(sock, 'DELETE_VOLUME_REQ', { vol_name: 'slow' })).retcode).toBe(-900013);
    expect((await call(sock, 'MAP_VOLUME_REQ', { vol_name: 'slow', host_id: d.info.hostId })).retcode).toBe(-900013);
    expect((await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'slow', vol_size: 8 })).retcode).toBe(-900013);
    expect((await call(sock, 'CREATE_SNAPSHOT_REQ', { snap_name: 'slow-s', vol_name: 'slow' })).retcode).toBe(-900013);
    expect((await call(sock, 'EXTEND_VOLUME_REQ', { vol_name: 'slow', vol_size: 16 })).retcode).toBe(-900013);
    web.releaseStall!();
    expect((await waitJob(sock, jobId)).status).toBe('done');
    expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'slow' })).record('volume0').status).toBe('1');
    expect((await call(sock, 'DELETE_VOLUME_REQ', { vol_name: 'slow' })).retcode).toBe(0);
    await waitGone(sock, 'QUERY_VOLUME_REQ', { vol_name: 'slow' });
  });

  it('needs vol_size for a raw image of unknown size, and fails one that outgrows it', async () => {
    // A chunked body: the size is not known before the end.
    const chunkedServer = http.createServer((_req, res) => {
      res.writeHead(200, { 'transfer-encoding': 'chunked' });
      res.end(raw);
    });
    await new Promise<void>((r) => chunkedServer.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(chunkedServer.address() as AddressInfo).port}/any`;
      const noSize = await call(sock, 'IMPORT_IMAGE_REQ', { vol_name: 'chunk', image_url: url });
      expect(noSize.retcode).toBe(-900003);
      expect(noSize.get('ret_desc')).toMatch(/^vol_size:/);
      const small = await call(sock, 'IMPORT_IMAGE_REQ', { vol_name: 'chunk', image_url: url, vol_size: 20 });
      expect(small.retcode).toBe(0);
      const failed = await waitJob(sock, small.get('job_id')!);
      expect(failed.status).toBe('failed');
      expect(failed.error).toMatch(/larger than the volume/);
      expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'chunk' })).retcode).toBe(-900079);
      const fits = await call(sock, 'IMPORT_IMAGE_REQ', { vol_name: 'chunk', image_url: url, vol_size: 24 });
      expect((await waitJob(sock, fits.get('job_id')!)).status).toBe('done');
    } finally {
      chunkedServer.close();
    }
    expect((await exportRaw('chunk')).equals(raw)).toBe(true);
    expect(poolLeftovers()).toEqual([]);
  });
});
