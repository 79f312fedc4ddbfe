// JSON logs to stderr (pino), synchronous so that the last lines before a crash are not lost.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  const destination = pino.destination({ dest: 2, sync: true });
  // A closed stderr (the parent went away) must not take the daemon down with it.
  destination.on('error', () => undefined);
  // ISO 8601 like the driver's lines: one time format in a log stream that mixes both.
  return pino({ name: 'sdshypervisor-emulator', level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}
