// JSON logs to stderr (pino), synchronous so that the last lines before a crash are not lost; readable
// lines (pino-pretty) when stderr is a terminal, i.e. `npm run emulator` run by a person.
import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  // ISO 8601 like the driver's lines: one time format in a log stream that mixes both.
  const options = {
    name: 'sdshypervisor-emulator',
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (process.stderr.isTTY) {
    const pretty = createRequire(import.meta.url)('pino-pretty') as (
      o: Record<string, unknown>,
    ) => pino.DestinationStream;
    return pino(
      options,
      pretty({ destination: 2, sync: true, translateTime: "UTC:yyyy-mm-dd'T'HH:MM:ss.l'Z'", colorize: true }),
    );
  }
  const destination = pino.destination({ dest: 2, sync: true });
  // A closed stderr (the parent went away) must not take the daemon down with it.
  destination.on('error', () => undefined);
  return pino(options, destination);
}
