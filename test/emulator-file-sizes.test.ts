// Start-up reconcile reads the volume files' sizes with one `find` (emulator/file-sizes.ts): it must see what
// statSync sees, entry by entry, and give up (so reconcile stats each file itself) rather than guess.
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MISSING, parseEntries, scanFileSizes, type FileSizes } from '../emulator/file-sizes.js';

describe('emulator file-size scan', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'emu-sizes-'));
    writeFileSync(join(dir, 'vol-a'), Buffer.alloc(4096));
    writeFileSync(join(dir, 'vol b.é'), '');
    writeFileSync(join(dir, 'target'), Buffer.alloc(100));
    symlinkSync(join(dir, 'target'), join(dir, 'link'));
    symlinkSync(join(dir, 'nowhere'), join(dir, 'dangling'));
    mkdirSync(join(dir, 'sub'));
  });

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('lists every entry with the size statSync gives, and a dangling link as missing', async () => {
    const sizes = await scanFileSizes(dir);
    expect(sizes).toBeDefined();
    expect([...sizes!.keys()].sort()).toEqual(['dangling', 'link', 'sub', 'target', 'vol b.é', 'vol-a']);
    for (const name of ['vol-a', 'vol b.é', 'target', 'link', 'sub']) {
      expect(sizes!.get(name)).toBe(statSync(join(dir, name)).size);
    }
    expect(sizes!.get('link')).toBe(100);
    expect(sizes!.get('dangling')).toBe(MISSING);
  });

  it('gives up on a directory it cannot read', async () => {
    expect(await scanFileSizes(join(dir, 'no-such-dir'))).toBeUndefined();
  });

  it('parses entries split across chunks, keeping the incomplete one for the next', () => {
    const out = Buffer.from('f4096/vol-a\0N7/dangling\0f12/vol-', 'utf8');
    const sizes: FileSizes = new Map();
    const used = parseEntries(out, sizes);
    expect(out.subarray(used).toString()).toBe('f12/vol-');
    expect(sizes).toEqual(
      new Map([
        ['vol-a', 4096],
        ['dangling', MISSING],
      ]),
    );
    expect(parseEntries(Buffer.concat([out.subarray(used), Buffer.from('c\0')]), sizes)).toBe(10);
    expect(sizes.get('vol-c')).toBe(12);
  });
});
