// The demo's output and its stop request: a signal or a closed stdout ends the run after the step in flight;
// the clean-up then runs.
import { prettyLine } from '../log/logger.js';

let stopReason: string | undefined;
let stdoutOpen = true;

function requestStop(reason: string): void {
  if (stopReason) {
    if (stdoutOpen) process.stdout.write(`(${reason}: still cleaning up, please wait)\n`);
    return;
  }
  stopReason = reason;
}

/** Turns SIGINT, SIGTERM, SIGHUP and a closed stdout into a stop request. */
export function stopOnSignals(): void {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => requestStop(signal));
  // EPIPE once the reader has gone (`| head -12`): no more output, and stop as if interrupted.
  process.stdout.on('error', () => {
    stdoutOpen = false;
    requestStop('stdout closed');
  });
}

/** Why the demo was asked to stop; undefined while it runs on. */
export function stopRequested(): string | undefined {
  return stopReason;
}

/** Writes to stdout while someone reads it. */
export function out(text: string): void {
  if (stdoutOpen) process.stdout.write(text);
}

/**
 * Its driver's log lines (JSON, as the driver writes to a pipe) as the stream shows them: readable
 * (pino-pretty, ISO 8601 times) on a terminal, JSON as they are otherwise.
 */
export function driverLogText(text: string, stream: NodeJS.WriteStream = process.stdout): string {
  const lines = text.trim().split('\n');
  if (stream.isTTY !== true) return `${lines.join('\n')}\n`;
  return lines.map((line) => prettyLine(line)).join('');
}

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

/** `2 GiB`, `1.25 GiB`, `37 MiB`. */
export const size = (bytes: number): string =>
  bytes >= GiB && bytes % (GiB / 4) === 0 ? `${bytes / GiB} GiB` : `${Math.round(bytes / MiB)} MiB`;
