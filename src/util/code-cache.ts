// A V8 code cache for the driver's bundle (dist/driver/*.cjs): the bytecode V8 compiled for it in a training
// start at build time (scripts/build.mjs), handed back to V8 at every start so that it deserializes instead of
// parsing and compiling. Compiling the bundle was a fifth of the CPU from spawn to the first ready Probe
// (docs/BENCHMARKS.md).
//
// Why a cache file of our own, not Node's compile cache: Node 20 has none for modules, and V8 checks a cache
// only against the source's length, the V8 version and its flags. A cache here is used only when it also
// carries the SHA-256 of the exact source, and only when it is trusted as much as the code beside it: a
// regular file (never followed through a symbolic link, never a FIFO that would block the start), owned by the
// source's owner and writable by no one the source is not. The driver itself never writes one: only a start
// with SDSHYPERVISOR_CSI_CODE_CACHE=write (the build's training start) does, into the build's own tree.
//
// V8 also rejects a cache made under other flags, and it stamps a cache with the flags in force when the cache
// is made, not when its file compiled. So the driver changes no V8 flag between main.ts's first line and the
// moment it serves (driver.ts, tuneForServing), the training start writes its cache at that moment, and
// caches are kept apart by the flags a file compiled under: node's own arguments, NODE_OPTIONS, and any set at
// run time (v8-flags.ts). The build trains one all-mode start (it loads every file either mode loads) under
// the deployed flags (src/config/deployed-node-args.ts); a start under other flags finds no cache and compiles
// as before.
import { createHash } from 'node:crypto';
import {
  closeSync,
  constants,
  fstatSync,
  mkdirSync,
  openSync,
  readSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import Module, { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import vm from 'node:vm';
import { nodeOptionsFromEnv } from '../config/environment.js';
import { runtimeV8Flags } from './v8-flags.js';

const HASH_BYTES = 32;
/** No bundle chunk's cache comes near this; a larger file is not read. */
const MAX_CACHE_BYTES = 64 * 1024 * 1024;

export type CacheOutcome = 'used' | 'rejected' | 'missing' | 'untrusted' | 'stale';

interface Compiled {
  script: vm.Script;
  sourceHash: Buffer;
  /** where its cache is (and is written): by the flags in force when it compiled */
  cachePath: string;
}

/** A short name for the V8 flags in force now: start flags, NODE_OPTIONS and those set at run time. */
export function flagsKey(): string {
  const flags = [...process.execArgv, `NODE_OPTIONS=${nodeOptionsFromEnv()}`, ...runtimeV8Flags()];
  return createHash('sha256').update(JSON.stringify(flags)).digest('hex').slice(0, 16);
}

type CompileFn = (this: Module, content: string, filename: string) => unknown;

export class CodeCache {
  /** What happened to each file's cache, by file name. */
  readonly outcomes = new Map<string, CacheOutcome>();
  private readonly compiled = new Map<string, Compiled>();

  /**
   * @param writable keep what write() needs: each file's compiled script, whose top-level code would
   *   otherwise be freed once it has run
   * @param cacheDir one per Node version and architecture: V8 rejects another's cache anyway
   */
  constructor(
    readonly bundleDir: string,
    readonly writable = false,
    readonly cacheDir: string = join(bundleDir, 'code-cache', `${process.version}-${process.arch}`),
  ) {}

  /**
   * Compiles every CommonJS file directly in the bundle's directory through the cache from now on; files
   * elsewhere (node_modules) load as before. Node 20 has no public hook for this (module.registerHooks came
   * in 22.15), so the loader's compile step is wrapped, as v8-compile-cache does.
   */
  install(): void {
    const proto = Module.prototype as unknown as { _compile: CompileFn };
    const original = proto._compile;
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the wrapper runs with the module as `this`
    const cache = this;
    proto._compile = function (this: Module, content: string, filename: string): unknown {
      if (dirname(filename) !== cache.bundleDir) return original.call(this, content, filename);
      return cache.run(this, content, filename);
    };
  }

  /** Summary for the start's log line, e.g. "used 11 of 11". */
  summary(): string {
    const counts = new Map<CacheOutcome, number>();
    for (const outcome of this.outcomes.values()) counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
    const used = counts.get('used') ?? 0;
    const others = [...counts].filter(([k]) => k !== 'used').map(([k, n]) => `${n} ${k}`);
    return [`used ${used} of ${this.outcomes.size}`, ...others].join(', ');
  }

  /**
   * Writes the cache of every file compiled so far (with what V8 compiled of it by now), each replaced
   * atomically. Returns the number of files written.
   */
  write(): number {
    if (!this.writable) throw new Error('this code cache was not made writable');
    let written = 0;
    for (const { script, sourceHash, cachePath: target } of this.compiled.values()) {
      mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
      const temporary = `${target}.tmp-${process.pid}`;
      writeFileSync(temporary, Buffer.concat([sourceHash, script.createCachedData()]), { mode: 0o644, flag: 'wx' });
      renameSync(temporary, target);
      written++;
    }
    return written;
  }

  private run(module: Module, content: string, filename: string): unknown {
    const sourceHash = createHash('sha256').update(content).digest();
    const cachePath = join(this.cacheDir, flagsKey(), `${basename(filename)}.cache`);
    const { data, outcome } = this.read(cachePath, filename, sourceHash);
    const script = new vm.Script(Module.wrap(content), {
      filename,
      ...(data ? { cachedData: data } : {}),
      // No dynamic-import callback: no bundle file imports dynamically (rolldown's CommonJS output requires;
      // test/code-cache.test.ts checks the build), and Node 20's callback for it is experimental.
    });
    this.outcomes.set(basename(filename), data && script.cachedDataRejected ? 'rejected' : outcome);
    if (this.writable) this.compiled.set(filename, { script, sourceHash, cachePath });
    const wrapper = script.runInThisContext() as (
      exports: unknown,
      require: NodeJS.Require,
      module: Module,
      filename: string,
      dirname: string,
    ) => unknown;
    return wrapper.call(module.exports, module.exports, createRequire(filename), module, filename, dirname(filename));
  }

  /** The V8 data of this file's cache, when there is one that may be used. */
  private read(cachePath: string, filename: string, sourceHash: Buffer): { data?: Buffer; outcome: CacheOutcome } {
    let fd: number;
    try {
      fd = openSync(cachePath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      return { outcome: (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : 'untrusted' };
    }
    try {
      const cache = fstatSync(fd);
      const source = statSync(filename);
      const tooWritable = (cache.mode & 0o022 & ~source.mode) !== 0;
      if (!cache.isFile() || cache.uid !== source.uid || tooWritable) return { outcome: 'untrusted' };
      if (cache.size <= HASH_BYTES || cache.size > MAX_CACHE_BYTES) return { outcome: 'untrusted' };
      const bytes = Buffer.allocUnsafe(cache.size);
      let filled = 0;
      while (filled < bytes.length) {
        const n = readSync(fd, bytes, filled, bytes.length - filled, filled);
        if (n === 0) break;
        filled += n;
      }
      if (filled !== bytes.length) return { outcome: 'untrusted' };
      if (!bytes.subarray(0, HASH_BYTES).equals(sourceHash)) return { outcome: 'stale' };
      return { data: bytes.subarray(HASH_BYTES), outcome: 'used' };
    } finally {
      closeSync(fd);
    }
  }
}
