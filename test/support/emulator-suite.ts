// One emulator daemon (test/support/emulator.ts) for a describe block: started before its tests, stopped
// after them, which must leave no loop device or mount behind.
import { afterAll, beforeAll, expect } from 'vitest';
import { type Daemon, type DaemonOptions, startDaemon, stopAndCheck } from './emulator.js';

/**
 * Registers the hooks; `started` receives the daemon once it runs. `options` may be a function, for options
 * that need setup first (a temp dir with a token file, an image directory).
 */
export function daemonForSuite(
  options: DaemonOptions | (() => DaemonOptions),
  started: (daemon: Daemon) => void,
): void {
  let daemon: Daemon | undefined;
  beforeAll(async () => {
    daemon = await startDaemon(typeof options === 'function' ? options() : options);
    started(daemon);
  });
  afterAll(async () => {
    if (daemon) expect(await stopAndCheck(daemon)).toEqual({ code: 0, loops: [], mounts: [] });
  });
}
