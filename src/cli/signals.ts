// The export's interrupt handling: both ways of running it stop the same way on SIGINT and SIGTERM.

/** Calls `onSignal` on each SIGINT/SIGTERM `emitter` sees; returns the function that stops listening. */
export function listenForInterrupts(emitter: NodeJS.EventEmitter, onSignal: () => void): () => void {
  emitter.on('SIGINT', onSignal);
  emitter.on('SIGTERM', onSignal);
  return () => {
    emitter.off('SIGINT', onSignal);
    emitter.off('SIGTERM', onSignal);
  };
}
