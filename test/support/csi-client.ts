// The CSI client for tests is the shared one (src/util/csi-client.ts); this adds the test-side helpers:
// `failure()` turns an expected failure into `{ code, codeName, message }`, `settle()` either outcome.
import type * as grpc from '@grpc/grpc-js';
import { connectCsi, CsiCallError } from '../../src/util/csi-client.js';

export * from '../../src/util/csi-client.js';

export interface Failure {
  code: grpc.status;
  codeName: string;
  message: string;
}

/** Awaits a call that must fail and returns its status; a success is a test failure. */
export async function failure(call: Promise<unknown>): Promise<Failure> {
  try {
    const value = await call;
    throw new Error(`expected the call to fail, but it succeeded with ${JSON.stringify(value)}`);
  } catch (err) {
    if (!(err instanceof CsiCallError)) throw err;
    return { code: err.code, codeName: err.codeName, message: err.details };
  }
}

/** The outcome of a call either way: the response, or its failure. */
export async function settle<T>(call: Promise<T>): Promise<{ ok: true; value: T } | ({ ok: false } & Failure)> {
  try {
    return { ok: true, value: await call };
  } catch (err) {
    if (!(err instanceof CsiCallError)) throw err;
    return { ok: false, code: err.code, codeName: err.codeName, message: err.details };
  }
}

/**
 * Polls Probe on `socket` until the driver says ready (ready means it reached its back end); throws with
 * `log()` once `deadlineMs` passed or `exited()` says the driver is gone.
 */
export async function waitProbeReady(
  socket: string,
  exited: () => boolean,
  log: () => string,
  deadlineMs = 30_000,
): Promise<void> {
  const clients = connectCsi(socket);
  try {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      const ready = await clients.identity.Probe({}, { timeoutMs: 2_000 }).then(
        (p) => p.ready?.value === true,
        () => false,
      );
      if (ready) return;
      if (Date.now() > deadline || exited()) throw new Error(`the driver did not get ready:\n${log()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    clients.close();
  }
}
