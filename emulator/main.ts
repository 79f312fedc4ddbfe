#!/usr/bin/env node
// sdshypervisor-emulator: the SDSHypervisor emulator daemon (see emulator/README.md).
import { ConfigError, helpText, loadConfig, takeStopWithParent } from './config.js';
import { startEmulator, type RunningEmulator } from './daemon.js';
import { EMULATOR_VERSION } from './handlers.js';
import { createLogger } from './log.js';
import { StoreLockedError } from './store.js';

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = loadConfig(process.argv.slice(2));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`sdshypervisor-emulator: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  if (parsed.help) {
    process.stdout.write(helpText());
    return;
  }
  if (parsed.version) {
    process.stdout.write(`${EMULATOR_VERSION}\n`);
    return;
  }
  const config = parsed.config!;
  const log = createLogger(config.logLevel);
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception; exiting (reconcile repairs state at the next start)');
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    log.fatal({ err }, 'unhandled rejection; exiting (reconcile repairs state at the next start)');
    process.exit(1);
  });
  // Handlers go in before the start: a signal during start-up stops the daemon as soon as it is up,
  // instead of killing it half-way with the default action.
  let emulator: RunningEmulator | undefined;
  let stopRequested = false;
  let stopping = false;
  let signals = 0;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    emulator!.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    log.info({ signal }, 'signal received');
    stopRequested = true;
    if (emulator) stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // Started by the driver (src/server/embedded-emulator.ts): our stdin is a pipe from it, whose end means
  // the driver is gone however it went (even SIGKILL). Stop cleanly rather than live on without it; this
  // is not a "second signal" when the driver has already asked us to stop.
  if (takeStopWithParent()) {
    const parentGone = (): void => {
      if (stopRequested) return;
      log.warn('the driver that started this emulator is gone: stopping');
      stopRequested = true;
      if (emulator) stop();
    };
    process.stdin.on('end', parentGone);
    process.stdin.on('error', parentGone);
    process.stdin.resume();
  }
  try {
    emulator = await startEmulator({ ...config, logger: log });
  } catch (err) {
    log.fatal({ err }, err instanceof StoreLockedError ? err.message : 'start failed');
    process.exit(1);
  }
  if (stopRequested) stop();
}

void main();
