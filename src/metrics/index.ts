// The driver's metrics room: Prometheus metrics (prom-client, own registry) and the HTTP listener serving
// them with /healthz. main.ts loads it only when --metrics-address is set.
export {
  BACKEND_STATS_DEFAULTS,
  BackendStatsCache,
  DriverMetrics,
  DURATION_BUCKETS,
  METRIC_PREFIX,
} from './metrics.js';
export type { BackendStats, BackendStatsOptions } from './metrics.js';
export { OpsHttpServer, parseListenAddress } from './http.js';
export type { OpsHttpOptions } from './http.js';
