#!/usr/bin/env node
// sdshypervisor-csi's entry. Runs the build's bundle of driver.ts (dist/driver/, scripts/build.mjs) when it is
// there and not older than the last compile, else the compiled driver.js and its modules one by one. One
// bundle starts in about two thirds of the CPU of the ~300 modules it holds: each module costs a resolution,
// stats and a read before it compiles (docs/BENCHMARKS.md).
import { statSync } from 'node:fs';

const bundled = new URL('../driver/driver.js', import.meta.url);
const compiled = new URL('./driver.js', import.meta.url);

/** mtime of a file, or undefined when it is not there */
function modified(url: URL): number | undefined {
  try {
    return statSync(url).mtimeMs;
  } catch {
    return undefined;
  }
}

// tsc rewrites its build info whenever it emits: a bundle older than that may miss a change (a bare `tsc`).
const bundleTime = modified(bundled);
const compileTime = modified(new URL('../.tsbuildinfo', import.meta.url));
await import(
  (bundleTime !== undefined && (compileTime === undefined || bundleTime >= compileTime) ? bundled : compiled).href
);
