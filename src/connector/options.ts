// The KV connector's options: which CLI, its bounds and defaults, its logger and metrics observer, and the
// options of each call.
import type { ConnectorErrorKind } from './errors.js';
import type { KvMethod } from '../protocol/kv.js';

export const DEFAULT_CLI_PATH = '/usr/local/bin/sds/sds_cli';
export const CLI_PATH_ENV = 'HUAWEISDSHYPERVISORCLI_PATH';

/**
 * Told of every sds_cli run when it ends, for metrics: the method, its result (`ok`, or the ConnectorErrorKind)
 * and how long it took. Keep it cheap; it must not throw.
 */
export type ConnectorObserver = (method: KvMethod, result: 'ok' | ConnectorErrorKind, seconds: number) => void;

/** What the connector logs; pino's logger fits. */
export interface ConnectorLogger {
  warn(obj: Record<string, unknown>, msg: string): void;
  debug(obj: Record<string, unknown>, msg: string): void;
}

export interface KvConnectorOptions {
  /** the CLI; else `HUAWEISDSHYPERVISORCLI_PATH` from `env`, else /usr/local/bin/sds/sds_cli */
  cliPath?: string;
  /** environment of the CLI (it finds its VBS through SDS_KV_SOCKET); default the driver's own (src/config/environment.ts) */
  env?: NodeJS.ProcessEnv;
  /** how long one CLI run may take before it is killed */
  timeoutMs?: number;
  /** stdout or stderr longer than this is refused (and the CLI killed) */
  maxOutputBytes?: number;
  /** how long attach waits for the reported device to become a block device */
  deviceWaitMs?: number;
  /** a reported device must live under this directory */
  deviceDir?: string;
  logger?: ConnectorLogger;
  observer?: ConnectorObserver;
  /**
   * The product's CLI (the original level): `querydev` answers a non-zero code, `ret_code=1` included, for
   * a volume that is not attached, so any non-zero code of querydev means "not attached" (os-brick's reading).
   */
  originalCli?: boolean;
  /**
   * Whether the back end has the volume (the driver's VBS client answers it). The product CLI says only
   * "failed" for a volume that does not exist; with this, such a failure is told apart as VolumeNotFound.
   */
  volumeExists?: (volumeName: string, signal?: AbortSignal) => Promise<boolean>;
}

/** Per-call options. sds_cli takes no request id (the product CLI has none): it goes on our log lines only. */
export interface CallOptions {
  signal?: AbortSignal;
  /** the CSI call's request id, for the connector's log lines */
  requestId?: string;
}

export interface AttachOptions extends CallOptions {
  deviceWaitMs?: number;
}

export const CONNECTOR_DEFAULTS = {
  timeoutMs: 60_000,
  maxOutputBytes: 64 * 1024,
  deviceWaitMs: 10_000,
  deviceDir: '/dev',
} as const;
