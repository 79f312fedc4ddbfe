// The leak finder every test relies on must see what a crashed test leaves at its worst: a volume's loop
// device over a file in a pool whose LUN is itself a loop device, after the pool was lazily unmounted.
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupLeaks, findLeaks } from './support/leaks.js';

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' }).trim();

describe('test support: leak finder', () => {
  const dir = mkdtempSync(join(tmpdir(), 'leaks-'));
  afterAll(() => {
    cleanupLeaks(dir);
    rmSync(dir, { recursive: true, force: true });
  });

  it('finds a nested loop device after its pool was lazily unmounted, and cleans up inside out', () => {
    const lun = join(dir, 'lun.img');
    execFileSync('truncate', ['-s', '64M', lun]);
    sh('mkfs.ext4', ['-q', '-F', lun]);
    const pool = join(dir, 'pool');
    mkdirSync(pool);
    sh('mount', ['-o', 'loop', lun, pool]);
    const volume = join(pool, 'vol');
    writeFileSync(volume, Buffer.alloc(1024 * 1024));
    const inner = sh('losetup', ['--find', '--show', volume]);
    sh('umount', ['--lazy', pool]);

    const leaks = findLeaks(dir);
    expect(leaks.mounts).toEqual([]);
    expect(leaks.loops).toHaveLength(2);
    expect(leaks.loops.some((l) => l.startsWith(`${inner} → `))).toBe(true);

    cleanupLeaks(dir);
    expect(findLeaks(dir)).toEqual({ loops: [], mounts: [] });
  });

  it('waits for a loop device that someone holds open for a moment (udev probing it) to go', () => {
    const img = join(dir, 'held.img');
    execFileSync('truncate', ['-s', '8M', img]);
    const device = sh('losetup', ['--find', '--show', img]);
    // Holds the device open for 300 ms, as udev's probe of a new device may: a detach meanwhile only marks it.
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const fd = require('fs').openSync(${JSON.stringify(device)}, 'r'); console.log('open'); setTimeout(() => require('fs').closeSync(fd), 300);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    return new Promise<void>((resolve, reject) => {
      holder.stdout!.once('data', () => {
        try {
          expect(findLeaks(dir).loops).toEqual([`${device} → ${img}`]);
          cleanupLeaks(dir);
          expect(findLeaks(dir)).toEqual({ loops: [], mounts: [] });
          resolve();
        } catch (err) {
          reject(err as Error);
        }
      });
    });
  });

  it('never reports what belongs to another directory', () => {
    const other = mkdtempSync(join(tmpdir(), 'leaks-other-'));
    try {
      const img = join(other, 'x.img');
      execFileSync('truncate', ['-s', '8M', img]);
      const device = sh('losetup', ['--find', '--show', img]);
      try {
        expect(findLeaks(dir)).toEqual({ loops: [], mounts: [] });
        expect(findLeaks(other).loops).toEqual([`${device} → ${img}`]);
      } finally {
        sh('losetup', ['--detach', device]);
      }
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
