// Image paths an unprivileged local user cannot turn against the root emulator (issue #15, items 1-3 and
// the safe defaults): the attacker is `nobody` swapping a directory it owns for a symlink to a root-only
// directory while the emulator imports or exports through it; FIFOs, devices, sockets and directories are
// refused without blocking; /tmp is no image directory by default; a directory others can write serves
// imports only, and not hard links in it. Every path is inside the test's own temp dir.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  existsSync,
  lchownSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RetCode } from '../src/protocol/vbs.js';
import {
  type Answer,
  call,
  type Daemon,
  makeTempDir,
  startDaemon,
  stopAndCheck,
  volumePath,
  waitJob,
} from './support/emulator.js';
import {
  buildFlipper,
  buildSwapper,
  NOBODY,
  NOGROUP,
  startFlipper,
  startSwapper,
  type Swapper,
} from './support/attacker.js';

const SECRET = `TOP-SECRET-${randomBytes(8).toString('hex')}\n`;
const HARMLESS = 'harmless image bytes\n';
const MiB = 1024 * 1024;

describe('image paths against an unprivileged local attacker', () => {
  let dir: string;
  let img: string;
  let play: string;
  let secret: string;
  let worldWritable: string;
  let swapper: string;
  let flipper: string;
  let d: Daemon;
  let sock: string;

  beforeAll(async () => {
    dir = makeTempDir('emu-sec-paths-');
    // nobody must be able to enter the test's dir to reach its own playground (and the swapper).
    chmodSync(dir, 0o711);
    img = join(dir, 'img');
    mkdirSync(img, { mode: 0o755 });
    // The attacker's directory inside the image directory: `sub` is in turn a directory of its own and a
    // symlink to a root-only directory (`alt` holds the other one).
    play = join(img, 'play');
    mkdirSync(play, { mode: 0o755 });
    secret = join(dir, 'secret');
    mkdirSync(secret, { mode: 0o700 });
    writeFileSync(join(secret, 'shadow'), SECRET, { mode: 0o600 });
    mkdirSync(join(play, 'sub'), { mode: 0o755 });
    writeFileSync(join(play, 'sub', 'shadow'), HARMLESS, { mode: 0o644 });
    symlinkSync(secret, join(play, 'alt'));
    for (const p of [play, join(play, 'sub'), join(play, 'sub', 'shadow')]) chownSync(p, NOBODY, NOGROUP);
    lchownSync(join(play, 'alt'), NOBODY, NOGROUP);
    worldWritable = join(dir, 'ww');
    mkdirSync(worldWritable);
    chmodSync(worldWritable, 0o1777);
    const bin = join(dir, 'bin');
    mkdirSync(bin, { mode: 0o755 });
    swapper = buildSwapper(bin);
    flipper = buildFlipper(bin);
    d = await startDaemon({ dir, args: ['--pool', 'pool0:1G', '--image-dir', img, '--image-dir', worldWritable] });
    sock = d.info.controlSocket;
    expect((await call(sock, 'CREATE_VOLUME_REQ', { vol_name: 'ex-src', vol_size: 1 })).retcode).toBe(0);
  });

  afterAll(async () => {
    if (d) expect(await stopAndCheck(d)).toEqual({ code: 0, loops: [], mounts: [] });
    expect(existsSync(dir)).toBe(false);
  });

  /**
   * Imports `rounds` volumes named `prefix-i` while the attacker runs, then stops it. Says how many imports
   * were done and which volumes leaked (by `leaks`, given the volume's bytes); `refused` judges a refusal.
   */
  async function importsDuring(
    attacker: Swapper,
    rounds: number,
    prefix: string,
    judge: {
      request: Record<string, string | number>;
      refused: (answer: Answer) => void;
      leaks: (volume: Buffer) => boolean;
    },
  ): Promise<{ accepted: number; leaked: string[] }> {
    let accepted = 0;
    const leaked: string[] = [];
    try {
      for (let i = 0; i < rounds; i++) {
        const name = `${prefix}-${i}`;
        const a = await call(sock, 'IMPORT_IMAGE_REQ', { vol_name: name, ...judge.request });
        if (a.retcode !== 0) {
          judge.refused(a);
          continue;
        }
        if ((await waitJob(sock, a.get('job_id')!)).status !== 'done') continue;
        accepted++;
        if (judge.leaks(readFileSync(volumePath(d, name)))) leaked.push(name);
      }
    } finally {
      await attacker.stop();
    }
    return { accepted, leaked };
  }

  it('export: a directory swapped for a symlink never puts a file outside the image directories', async () => {
    const attacker = startSwapper(swapper, join(play, 'sub'), join(play, 'alt'), join(play, 'stop-export'));
    const answers: number[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const a = await call(sock, 'EXPORT_IMAGE_REQ', {
          vol_name: 'ex-src',
          image_path: join(play, 'sub', 'x'),
          overwrite: 1,
        });
        answers.push(a.retcode);
        if (a.retcode === 0) await waitJob(sock, a.get('job_id')!);
      }
    } finally {
      await attacker.stop();
    }
    expect(readdirSync(secret)).toEqual(['shadow']);
    // The attacker's directory is writable by nobody: no export goes there, whatever `sub` is at the time.
    expect(
      answers.every((c) => c === RetCode.IMAGE_ERROR),
      answers.join(','),
    ).toBe(true);
  });

  it('import: a directory swapped for a symlink never reads a file outside the image directories', async () => {
    const attacker = startSwapper(swapper, join(play, 'sub'), join(play, 'alt'), join(play, 'stop-import'));
    const { accepted, leaked } = await importsDuring(attacker, 60, 'race', {
      request: { image_url: join(play, 'sub', 'shadow'), vol_size: 1 },
      refused: (a) => expect(a.retcode, a.text).toBe(RetCode.IMAGE_ERROR),
      leaks: (volume) => {
        const head = volume.subarray(0, SECRET.length).toString('latin1');
        if (head !== SECRET) expect(head.startsWith(HARMLESS)).toBe(true);
        return head === SECRET;
      },
    });
    expect(leaked).toEqual([]);
    // While `sub` is the attacker's own directory its own file is still imported: only symlinks are refused.
    expect(accepted).toBeGreaterThan(0);
  });

  it("qcow2: a file its owner rewrites between qemu-img's check and its read never brings in a backing file", async () => {
    // Two qcow2 headers of one size: `plain` has no backing file, `backed` has the root-only disk as one. The
    // emulator checks an image with `qemu-img info` (no backing file) and then reads it with `qemu-img
    // convert`: `nobody` rewrites its own file in place between the two, in a bounded loop.
    const disk = join(secret, 'disk.raw');
    writeFileSync(disk, Buffer.alloc(MiB, SECRET), { mode: 0o600 });
    const plain = join(play, 'plain.qcow2');
    const backed = join(play, 'backed.qcow2');
    expect(spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', plain, '1M']).status).toBe(0);
    expect(spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', disk, '-F', 'raw', backed, '1M']).status).toBe(
      0,
    );
    expect(statSync(plain).size).toBe(statSync(backed).size);
    const target = join(worldWritable, 'flip.qcow2');
    writeFileSync(target, readFileSync(plain));
    chownSync(target, NOBODY, NOGROUP);
    const attacker = startFlipper(flipper, target, plain, backed, join(play, 'stop-flip'));
    const { accepted, leaked } = await importsDuring(attacker, 40, 'flip', {
      request: { image_url: target, image_format: 'qcow2', vol_size: 1 },
      refused: () => {}, // either header may be what qemu-img saw: a refusal is fine
      leaks: (volume) => volume.includes(SECRET),
    });
    expect(leaked).toEqual([]);
    // The plain header, when it is what was copied, is still imported.
    expect(accepted).toBeGreaterThan(0);
  });

  it('FIFOs, devices, sockets and directories are refused at once; the daemon never blocks on them', async () => {
    const fifo = join(img, 'fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const device = join(img, 'null');
    expect(spawnSync('mknod', [device, 'c', '1', '3']).status).toBe(0);
    const socketPath = join(img, 'sock');
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(socketPath, r));
    const directory = join(img, 'adir');
    mkdirSync(directory);
    try {
      for (const [name, path] of [
        ['fifo', fifo],
        ['dev', device],
        ['sock', socketPath],
        ['dir', directory],
      ] as const) {
        // Offered together with another request: that one is answered whatever the import does.
        const [a, other] = await Promise.all([
          call(sock, 'IMPORT_IMAGE_REQ', { vol_name: `odd-${name}`, image_url: path, vol_size: 1 }),
          call(sock, 'QUERY_CAPABILITY_REQ'),
        ]);
        expect(other.retcode).toBe(0);
        expect([name, a.retcode, a.get('ret_desc')]).toEqual([
          name,
          RetCode.IMAGE_ERROR,
          expect.stringMatching(/not a regular file/),
        ]);
        expect((await call(sock, 'QUERY_VOLUME_REQ', { vol_name: `odd-${name}` })).retcode).toBe(RetCode.NOT_EXIST);
      }
      expect((await call(sock, 'QUERY_CAPABILITY_REQ')).retcode).toBe(0);
      // Nobody holds the FIFO open for reading: the daemon never opened it (ENXIO for a non-blocking writer).
      expect(() => openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK)).toThrow(
        expect.objectContaining({ code: 'ENXIO' }),
      );
    } finally {
      // Today's code blocks in open(2) on the FIFO: a writer lets it go, so the test can end.
      try {
        closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      } catch {
        /* nobody was blocked on it */
      }
      await new Promise((r) => server.close(r));
    }
  });

  it('an export is readable by root only, in a directory others may enter', async () => {
    for (const format of ['raw', 'qcow2']) {
      const target = join(img, `private.${format}`);
      const a = await call(sock, 'EXPORT_IMAGE_REQ', { vol_name: 'ex-src', image_path: target, image_format: format });
      expect(a.retcode, a.text).toBe(0);
      expect((await waitJob(sock, a.get('job_id')!)).status).toBe('done');
      expect([format, (statSync(target).mode & 0o777).toString(8)]).toEqual([format, '600']);
    }
  });

  it('a directory others can write serves imports of its own files only, and no exports', async () => {
    const own = join(worldWritable, 'own.raw');
    writeFileSync(own, HARMLESS);
    const a = await call(sock, 'IMPORT_IMAGE_REQ', { vol_name: 'ww-own', image_url: own, vol_size: 1 });
    expect(a.retcode, a.text).toBe(0);
    expect((await waitJob(sock, a.get('job_id')!)).status).toBe('done');
    // A hard link there could name a file its maker cannot read.
    const link = join(worldWritable, 'link');
    linkSync(join(secret, 'shadow'), link);
    const b = await call(sock, 'IMPORT_IMAGE_REQ', { vol_name: 'ww-link', image_url: link, vol_size: 1 });
    expect([b.retcode, b.get('ret_desc')]).toEqual([RetCode.IMAGE_ERROR, expect.stringMatching(/2 links/)]);
    const c = await call(sock, 'EXPORT_IMAGE_REQ', { vol_name: 'ex-src', image_path: join(worldWritable, 'out.raw') });
    expect([c.retcode, c.get('ret_desc')]).toEqual([
      RetCode.IMAGE_ERROR,
      expect.stringMatching(/can be written by users other than root/),
    ]);
    expect(existsSync(join(worldWritable, 'out.raw'))).toBe(false);
  });
});

describe('default image directories', () => {
  it('are <data>/images only: the system temp dir is not one', async () => {
    const d = await startDaemon({ args: ['--pool', 'pool0:1G'] });
    try {
      const caps = await call(d.info.controlSocket, 'QUERY_CAPABILITY_REQ');
      expect(caps.fields.getAll('image_dir')).toEqual([join(d.dataDir, 'images')]);
      const file = join(d.dir, 'disk.raw');
      writeFileSync(file, HARMLESS);
      const a = await call(d.info.controlSocket, 'IMPORT_IMAGE_REQ', {
        vol_name: 'from-tmp',
        image_url: file,
        vol_size: 1,
      });
      expect([a.retcode, a.get('ret_desc')]).toEqual([
        RetCode.IMAGE_ERROR,
        expect.stringMatching(/outside the image directories/),
      ]);
    } finally {
      expect(await stopAndCheck(d)).toEqual({ code: 0, loops: [], mounts: [] });
    }
  });
});
