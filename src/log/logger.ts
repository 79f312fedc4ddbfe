// pino JSON logs for the driver. Secrets never reach a log line: CSI secrets maps, tokens and mount flags
// (which may carry credentials) are redacted by path wherever they appear.
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

export const REDACT_PATHS = [
  'secrets',
  '*.secrets',
  'req.secrets',
  'request.secrets',
  'token',
  '*.token',
  'auth_token',
  '*.auth_token',
  'vbsToken',
  '*.vbsToken',
  'mount_flags',
  '*.mount_flags',
  '*.*.mount_flags',
  // a whole CSI request, should one ever be logged (we log none): its capability's flags
  '*.volume_capability.mount.mount_flags',
  '*.volume_capabilities[*].mount.mount_flags',
];

export function createLogger(options: { level?: string; name?: string } = {}, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      name: options.name ?? 'sdshypervisor-csi',
      level: options.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination ?? pino.destination({ fd: 2, sync: false }),
  );
}
