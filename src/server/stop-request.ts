// The process's stop signals, caught from the moment the entry module runs: a SIGINT, SIGTERM or SIGHUP
// at any point of the start (before, during or after the embedded emulator's start) becomes a stop
// request the start checks, instead of the default action that would kill the driver and leave the
// emulator — in a process group of its own — running with its pool mounted. A second, distinct signal
// while stopping calls the hard-stop hook and exits 1.

/** A repeat of the first stop signal this soon is the same signal delivered twice, not a second request. */
const DUPLICATE_SIGNAL_MS = 100;
const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export interface StopLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export class StopRequest {
  private readonly controller = new AbortController();
  private first: { signal: NodeJS.Signals; at: number } | undefined;
  private log: StopLog | undefined;
  private hardStop: (() => void) | undefined;
  private readonly onSignal = (signal: NodeJS.Signals): void => this.received(signal);

  constructor(private readonly exit: (code: number) => void = (code) => process.exit(code)) {
    for (const signal of STOP_SIGNALS) process.on(signal, this.onSignal);
  }

  /** Aborted on the first stop signal; its reason is the signal's name. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The signal that asked for the stop, if one did. */
  get requestedBy(): NodeJS.Signals | undefined {
    return this.first?.signal;
  }

  /** Where to say what happens, once a logger exists. */
  attachLog(log: StopLog): void {
    this.log = log;
  }

  /** What a second signal does before the process exits 1 (cut RPCs, signal the emulator without waiting). */
  onHardStop(hardStop: () => void): void {
    this.hardStop = hardStop;
  }

  /** Resolves with the signal's name once a stop is requested (at once if one already was). */
  requested(): Promise<NodeJS.Signals> {
    if (this.first) return Promise.resolve(this.first.signal);
    return new Promise((resolve) =>
      this.signal.addEventListener('abort', () => resolve(this.first!.signal), { once: true }),
    );
  }

  private received(signal: NodeJS.Signals): void {
    const first = this.first;
    // One Ctrl-C under `npm start` arrives twice within milliseconds: the terminal signals the foreground
    // process group, and npm forwards it to its child. That is still the first request.
    if (first && first.signal === signal && Date.now() - first.at < DUPLICATE_SIGNAL_MS) return;
    if (first) {
      this.log?.warn({ signal }, 'second signal: stopping at once');
      this.hardStop?.();
      this.exit(1);
      return;
    }
    this.first = { signal, at: Date.now() };
    this.log?.info({ signal }, 'stopping: draining in-flight calls');
    this.controller.abort(signal);
  }

  /** Removes the handlers (tests). */
  dispose(): void {
    for (const signal of STOP_SIGNALS) process.removeListener(signal, this.onSignal);
  }
}
