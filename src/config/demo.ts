// The demo's settings (npm run demo, docs/configuration.md): read from the environment here, the one place
// that may, and handed to src/demo/demo.ts.

export interface DemoSettings {
  /** how long a driver that answers "not ready" gets to become ready, ms (DEMO_NOT_READY_WAIT_MS) */
  notReadyWaitMs: number;
  /** the file system of the demo's mounted volume (DEMO_FS_TYPE) */
  fsType: 'ext4' | 'xfs';
  /** the CSI endpoint of a running driver (CSI_ENDPOINT); empty: the default one */
  endpoint: string | undefined;
}

export function demoSettings(env: NodeJS.ProcessEnv = process.env): DemoSettings {
  return {
    notReadyWaitMs: Number(env.DEMO_NOT_READY_WAIT_MS) || 15_000,
    fsType: (env.DEMO_FS_TYPE ?? 'xfs') as 'ext4' | 'xfs',
    endpoint: env.CSI_ENDPOINT || undefined,
  };
}
