// Spawn → the first Probe that answers ready=true, polled every 5 ms.
import { connectCsi } from './clients.js';
import { now, sleep } from './context.js';
import type { Driver } from './procs.js';

export async function waitProbeReady(driver: Driver, timeoutMs = 60_000): Promise<number> {
  const csi = connectCsi(driver.socket, { fastReconnect: true });
  try {
    const deadline = now() + timeoutMs;
    for (;;) {
      if (driver.child.exitCode !== null) {
        throw new Error(`driver ${driver.socket} exited with ${driver.child.exitCode}: see ${driver.logFile}`);
      }
      try {
        const probe = await csi.identity.Probe({}, { timeoutMs: 1_000 });
        if (probe.ready?.value) return now() - driver.spawnedAt;
      } catch {
        // not listening yet
      }
      if (now() > deadline)
        throw new Error(`driver ${driver.socket} not ready within ${timeoutMs} ms: see ${driver.logFile}`);
      await sleep(5);
    }
  } finally {
    csi.close();
  }
}
