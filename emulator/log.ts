// JSON logs to stderr (pino), synchronous so that the last lines before a crash are not lost.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino(
    { name: 'sdshypervisor-emulator', level, base: { pid: process.pid } },
    pino.destination({ dest: 2, sync: true }),
  );
}
