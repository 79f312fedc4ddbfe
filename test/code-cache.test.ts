// The driver bundle's V8 code cache (src/util/code-cache.ts), in real node processes: a cache is used only for
// the exact source it was made from, under the same flags, and only when it is trusted as much as the code
// beside it; anything else compiles the source as it is. And the build's training leaves a cache that a driver
// started with the deployed flags uses for every file it loads.
import { spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DEPLOYED_NODE_ARGS } from '../src/config/deployed-node-args.js';
import { projectRoot } from '../src/util/paths.js';
import { logLines } from './support/ops.js';

const scratch = realpathSync(mkdtempSync(join(tmpdir(), 'code-cache-')));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const codeCacheModule = join(projectRoot(), 'dist', 'src', 'util', 'code-cache.js');

/** A bundle directory: an entry that requires a chunk, each with a function whose answer tells its source. */
function makeBundle(name: string, answer = 'alpha'): string {
  const dir = join(scratch, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'entry.cjs'),
    `const chunk = require('./chunk.cjs');\nexports.answer = () => chunk.answer();\n`,
  );
  writeFileSync(join(dir, 'chunk.cjs'), `exports.answer = function answer() { return '${answer}'; };\n`);
  return dir;
}

interface Loaded {
  answer: string;
  outcomes: Record<string, string>;
  written: number;
}

/**
 * Loads the bundle through the cache in a fresh node process (the cache patches that process's loader). The
 * loader is a file, not `-e`: node's arguments are part of the cache's key.
 */
function load(dir: string, opts: { write?: boolean; nodeArgs?: string[] } = {}): Loaded {
  const loader = join(scratch, 'load.mjs');
  writeFileSync(
    loader,
    [
      `import { createRequire } from 'node:module';`,
      `import { join } from 'node:path';`,
      `import { CodeCache } from ${JSON.stringify(codeCacheModule)};`,
      `const [dir, write] = process.argv.slice(2);`,
      `const cache = new CodeCache(dir, write === 'write');`,
      `cache.install();`,
      `const answer = createRequire(import.meta.url)(join(dir, 'entry.cjs')).answer();`,
      `const written = write === 'write' ? cache.write() : 0;`,
      `console.log(JSON.stringify({ answer, outcomes: Object.fromEntries(cache.outcomes), written }));`,
    ].join('\n'),
  );
  const run = spawnSync(process.execPath, [...(opts.nodeArgs ?? []), loader, dir, opts.write ? 'write' : 'read'], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  expect(run.stderr).toBe('');
  expect(run.status).toBe(0);
  return JSON.parse(run.stdout) as Loaded;
}

/** The cache files of a bundle, for the flags of the runs above (one key directory). */
function cacheFiles(dir: string): { entry: string; chunk: string } {
  const versionDir = join(dir, 'code-cache', `${process.version}-${process.arch}`);
  const keys = readdirSync(versionDir);
  expect(keys).toHaveLength(1);
  return { entry: join(versionDir, keys[0]!, 'entry.cjs.cache'), chunk: join(versionDir, keys[0]!, 'chunk.cjs.cache') };
}

describe('the code cache', () => {
  it('is written by a training load and used by the next, with the same results', () => {
    const dir = makeBundle('used');
    const first = load(dir, { write: true });
    expect(first).toEqual({
      answer: 'alpha',
      outcomes: { 'entry.cjs': 'missing', 'chunk.cjs': 'missing' },
      written: 2,
    });
    const second = load(dir);
    expect(second).toEqual({ answer: 'alpha', outcomes: { 'entry.cjs': 'used', 'chunk.cjs': 'used' }, written: 0 });
  });

  it('is not offered for a changed source, even one of the same length (V8 checks only the length)', () => {
    const dir = makeBundle('stale', 'alpha');
    load(dir, { write: true });
    writeFileSync(join(dir, 'chunk.cjs'), `exports.answer = function answer() { return 'omega'; };\n`);
    const after = load(dir);
    expect(after.answer).toBe('omega');
    expect(after.outcomes).toEqual({ 'entry.cjs': 'used', 'chunk.cjs': 'stale' });
  });

  it('is kept apart by the node flags it was made under', () => {
    const dir = makeBundle('flags');
    load(dir, { write: true });
    const other = load(dir, { nodeArgs: ['--max-semi-space-size=8'] });
    expect(other).toMatchObject({ answer: 'alpha', outcomes: { 'entry.cjs': 'missing', 'chunk.cjs': 'missing' } });
  });

  it('is reported rejected, and the source compiled, when V8 refuses it (made under other flags)', () => {
    const dir = makeBundle('rejected');
    const elsewhere = makeBundle('rejected-source');
    // --no-opt: a flag every V8 counts in a cache's flag hash (newer ones leave out heap-size flags)
    load(elsewhere, { write: true, nodeArgs: ['--no-opt'] });
    const made = cacheFiles(elsewhere);
    load(dir, { write: true });
    const target = cacheFiles(dir);
    // Same sources, so the header's hash matches: only V8's own flag check can refuse it.
    copyFileSync(made.chunk, target.chunk);
    const after = load(dir);
    expect(after).toMatchObject({ answer: 'alpha', outcomes: { 'entry.cjs': 'used', 'chunk.cjs': 'rejected' } });
  });

  it('is not read when it is more writable than its source, owned by someone else, a link or a FIFO', () => {
    const cases: Array<[string, (cache: string) => void]> = [
      ['writable by others', (cache) => chmodSync(cache, 0o666)],
      ['owned by another user', (cache) => chownSync(cache, 65534, 65534)],
      [
        'a symbolic link',
        (cache) => {
          const real = `${cache}.real`;
          copyFileSync(cache, real);
          rmSync(cache);
          symlinkSync(real, cache);
        },
      ],
      [
        'a FIFO (opening must not block the start)',
        (cache) => {
          rmSync(cache);
          expect(spawnSync('mkfifo', [cache]).status).toBe(0);
        },
      ],
      ['too short to hold its header', (cache) => writeFileSync(cache, Buffer.alloc(8))],
    ];
    for (const [index, [name, spoil]] of cases.entries()) {
      const dir = makeBundle(`untrusted-${index}`);
      chmodSync(join(dir, 'chunk.cjs'), 0o644);
      load(dir, { write: true });
      spoil(cacheFiles(dir).chunk);
      const after = load(dir);
      expect(after, name).toMatchObject({
        answer: 'alpha',
        outcomes: { 'entry.cjs': 'used', 'chunk.cjs': 'untrusted' },
      });
    }
  });

  it('is never written by a load that was not made writable', () => {
    const script = [
      `import { CodeCache } from ${JSON.stringify(codeCacheModule)};`,
      `try { new CodeCache(${JSON.stringify(makeBundle('readonly'))}).write(); } catch (err) { console.log(err.message); }`,
    ].join('\n');
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(run.stdout.trim()).toBe('this code cache was not made writable');
  });
});

describe("the build's code cache", () => {
  /** Starts the driver in this mode, needing no VBS, and returns its start line's codeCache field. */
  async function startLine(mode: 'node' | 'controller', nodeArgs: readonly string[]): Promise<string> {
    const dir = mkdtempSync(join(scratch, `driver-${mode}-`));
    const child = spawn(
      process.execPath,
      [
        ...nodeArgs,
        join(projectRoot(), 'dist', 'src', 'main.js'),
        `--mode=${mode}`,
        '--vbs-protocol=extended',
        `--vbs-url=unix://${join(dir, 'no-vbs.sock')}`,
        `--endpoint=unix://${join(dir, 'csi.sock')}`,
        '--metrics-address=127.0.0.1:0',
        '--node-name=code-cache-test',
        '--host-id=code-cache-test',
      ],
      { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const started = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        output += chunk.toString();
        const line = logLines(output).find((l) => l.msg === 'sdshypervisor-csi started');
        if (line) resolve(line as unknown as Record<string, unknown>);
      };
      child.stdout!.on('data', onData);
      child.stderr!.on('data', onData);
      void exit.then(() => reject(new Error(`the driver exited before it started:\n${output}`)));
    });
    child.kill('SIGTERM');
    expect(await exit).toBe(0);
    return String(started.codeCache);
  }

  it('is used for every file a node plugin or a controller loads, when started with the deployed flags', async () => {
    for (const mode of ['node', 'controller'] as const) {
      const field = await startLine(mode, DEPLOYED_NODE_ARGS);
      const counts = /^used (\d+) of (\d+)$/.exec(field);
      expect(counts, `${mode}: ${field}`).not.toBeNull();
      expect(Number(counts![1]), `${mode}: ${field}`).toBeGreaterThan(10);
      expect(counts![1], `${mode}: ${field}`).toBe(counts![2]);
    }
  });

  it('compiles files that never import dynamically (they get no callback for it)', () => {
    const bundleDir = join(projectRoot(), 'dist', 'driver');
    const files = readdirSync(bundleDir).filter((f) => f.endsWith('.cjs'));
    expect(files).toContain('driver.cjs');
    for (const file of files) expect(readFileSync(join(bundleDir, file), 'utf8'), file).not.toMatch(/\bimport\s*\(/);
  });

  it('is not offered to a start under other flags, which compiles as before', async () => {
    expect(await startLine('node', [])).toMatch(/^used 0 of (\d+), \1 missing$/);
  });
});
