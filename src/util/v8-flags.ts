// V8 flags the driver sets at run time, recorded where the entry's code cache (code-cache.ts) can read them:
// V8 checks a code cache against every flag in force when a file compiles, so the cache of a file compiled
// after a change is kept apart from one compiled before. The record lives on globalThis because the entry
// (dist/src/main.js) and the bundle it loads each hold their own copy of this module.
import { setFlagsFromString } from 'node:v8';

const RECORD = Symbol.for('sdshypervisor-csi.runtime-v8-flags');

type Recorded = { [RECORD]?: string[] };

/** Sets a V8 flag now, and records it. */
export function setV8Flag(flag: string): void {
  setFlagsFromString(flag);
  ((globalThis as Recorded)[RECORD] ??= []).push(flag);
}

/** The flags set through setV8Flag so far, in order. */
export function runtimeV8Flags(): readonly string[] {
  return (globalThis as Recorded)[RECORD] ?? [];
}
