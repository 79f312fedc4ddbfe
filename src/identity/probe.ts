// Readiness: does the SDSHypervisor daemon answer? One probe serves the CSI Identity.Probe and the HTTP
// /healthz, so both always say the same. The VBS client opens a connection per request, so there is nothing
// to re-establish after a VBS restart: the next probe that gets an answer is ready again.
import type { Logger } from '../log/logger.js';
import type { ProtocolLevel } from '../protocol/catalog.js';
import type { SdsBackend } from '../sds/backend.js';

export interface ProbeResult {
  ready: boolean;
  /** why not, when not ready */
  reason?: string;
}

export interface BackendProbeOptions {
  /** how long one probe may wait for the VBS */
  timeoutMs: number;
  log: Logger;
}

export type Probe = () => Promise<ProbeResult>;

/** What the probe asks: the capability query of the extended level, or a pool query on the original one. */
export type ProbedBackend = Pick<SdsBackend, 'systemInfo'> &
  Partial<Pick<SdsBackend, 'queryPools'>> & { readonly level?: ProtocolLevel };

/**
 * A probe asking the VBS `QUERY_CAPABILITY_REQ` (its ping); on the original level, which has no such
 * request, a pool query of the configured pools: any answer is ready. It never throws. It logs when readiness changes
 * (not on every probe), so an outage and the recovery are one warning and one info line.
 */
export function backendProbe(backend: ProbedBackend, options: BackendProbeOptions): Probe {
  let wasReady: boolean | undefined;
  return async () => {
    let result: ProbeResult;
    try {
      const opts = { signal: AbortSignal.timeout(options.timeoutMs) };
      if (backend.level === 'original' && backend.queryPools) await backend.queryPools(undefined, opts);
      else await backend.systemInfo(opts);
      result = { ready: true };
    } catch (err) {
      result = { ready: false, reason: err instanceof Error ? err.message : String(err) };
    }
    if (result.ready !== wasReady) {
      if (result.ready) options.log.info(wasReady === undefined ? 'back end ready' : 'back end ready again');
      else
        options.log.warn(
          { reason: result.reason },
          'back end not ready: Probe and /healthz report not ready until it answers',
        );
      wasReady = result.ready;
    }
    return result;
  };
}
