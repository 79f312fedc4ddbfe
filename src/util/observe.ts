// Timing a call for a metrics observer: how it ended and how long it took, told once it is over.

/**
 * Runs `call` and tells `observe` what it was (`what`: a request type, a CLI method), how it ended
 * (`resultOf` a reply, `failureOf` a throw) and how long it took, in seconds. Without an observer it only
 * runs the call.
 */
export async function observed<W, T, R extends string>(
  observe: ((what: W, result: R, seconds: number) => void) | undefined,
  what: W,
  call: () => Promise<T>,
  resultOf: (reply: T) => R,
  failureOf: (err: unknown) => R,
): Promise<T> {
  if (observe === undefined) return call();
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1e3;
  try {
    const reply = await call();
    observe(what, resultOf(reply), seconds());
    return reply;
  } catch (err) {
    observe(what, failureOf(err), seconds());
    throw err;
  }
}
