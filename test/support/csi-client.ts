// The CSI client for tests is the shared one (src/util/csi-client.ts); this adds the test-side helpers:
// `failure()` turns an expected failure into `{ code, codeName, message }`, `settle()` either outcome.
import type * as grpc from '@grpc/grpc-js';
import { CsiCallError } from '../../src/util/csi-client.js';

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
