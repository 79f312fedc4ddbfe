// pino JSON logs for the driver. Secrets never reach a log line: CSI secrets maps, tokens and mount flags
// (which may carry credentials) are redacted by path wherever they appear.
import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/** pino-pretty's time format: ISO 8601 in UTC, the same instant format as the JSON lines' `time`. */
const PRETTY_TIME = "UTC:yyyy-mm-dd'T'HH:MM:ss.l'Z'";

type PrettyModule = {
  (options: Record<string, unknown>): pino.DestinationStream;
  prettyFactory(options: Record<string, unknown>): (line: string | object) => string;
};
let prettyModule: PrettyModule | undefined;
/** Loaded only for a terminal (a person reading): JSON for everything else costs nothing more. */
function pretty(): PrettyModule {
  prettyModule ??= createRequire(import.meta.url)('pino-pretty') as PrettyModule;
  return prettyModule;
}

/** Readable lines when stderr is a terminal, JSON lines otherwise (pipes, files, Kubernetes). */
export function stderrIsTerminal(): boolean {
  return process.stderr.isTTY === true;
}

/** Turns one JSON log line (the embedded emulator's, forwarded) into the readable form; other text as is. */
export function prettyLine(line: string): string {
  if (!line.startsWith('{')) return `${line}\n`;
  try {
    return pretty().prettyFactory({ translateTime: PRETTY_TIME, colorize: true })(line);
  } catch {
    return `${line}\n`;
  }
}

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

export function createLogger(
  options: { level?: string; name?: string; pretty?: boolean } = {},
  destination?: pino.DestinationStream,
): Logger {
  const readable = options.pretty ?? (destination === undefined && stderrIsTerminal());
  return pino(
    {
      name: options.name ?? 'sdshypervisor-csi',
      level: options.level ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    readable
      ? pretty()({
          destination: destination ?? 2,
          sync: true,
          translateTime: PRETTY_TIME,
          colorize: destination === undefined,
        })
      : (destination ?? pino.destination({ fd: 2, sync: false })),
  );
}
