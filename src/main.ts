#!/usr/bin/env node
// sdshypervisor-csi's entry. Runs the build's bundle of driver.ts (dist/driver/, scripts/build.mjs) through its
// code cache (util/code-cache.ts) when the bundle is there and not older than the last compile, else the
// compiled driver.js and its modules one by one. One bundle starts in about two thirds of the CPU of the ~300
// modules it holds, and its code cache saves a fifth more (docs/BENCHMARKS.md).
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { codeCacheTraining } from './config/environment.js';
import { CodeCache } from './util/code-cache.js';
import { setV8Flag } from './util/v8-flags.js';
import type { DriverHooks } from './driver.js';

type DriverModule = typeof import('./driver.js');

const bundleDir = fileURLToPath(new URL('../driver', import.meta.url));
const bundled = `${bundleDir}/driver.cjs`;

/** mtime of a file, or undefined when it is not there */
function modified(path: string): number | undefined {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

/**
 * The build's training start (scripts/build.mjs) writes the cache once the socket serves, then stops as a
 * SIGTERM would stop it.
 */
function cacheHooks(cache: CodeCache, training: boolean): DriverHooks {
  return {
    onServing: () => {
      if (!training) return { codeCache: cache.summary() };
      const written = cache.write();
      process.kill(process.pid, 'SIGTERM');
      return { codeCache: `${cache.summary()}; wrote ${written} to ${cache.cacheDir}` };
    },
  };
}

// No optimizing compiler (TurboFan) during the start: the node plugin keeps it off for good (driver.ts says
// why), and a node plugin that let it optimize even a few functions of its start kept ~4 MiB more of node's own
// code resident. The other modes turn it back on once serving. Set here, before anything of the driver
// compiles, and changed again only once serving: V8 checks a code cache against the flags in force.
setV8Flag('--no-opt');

// tsc rewrites its build info whenever it emits: a bundle older than that may miss a change (a bare `tsc`).
const bundleTime = modified(bundled);
const compileTime = modified(fileURLToPath(new URL('../.tsbuildinfo', import.meta.url)));
const argv = process.argv.slice(2);
if (bundleTime !== undefined && (compileTime === undefined || bundleTime >= compileTime)) {
  const training = codeCacheTraining();
  const cache = new CodeCache(bundleDir, training);
  cache.install();
  (createRequire(import.meta.url)(bundled) as DriverModule).runDriver(argv, cacheHooks(cache, training));
} else {
  ((await import('./driver.js')) as DriverModule).runDriver(argv);
}
