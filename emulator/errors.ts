// Failures of the emulator carry the socket-API result code they answer with (docs/socket-api.md §2.7).
import type { Field } from '../src/protocol/vbs.js';
import { RetCode } from '../src/protocol/vbs.js';

export class VbsError extends Error {
  override name = 'VbsError';
  readonly retcode: number;
  /** extra reply fields, e.g. the existing record with ALREADY_EXISTS */
  readonly fields: Field[];

  constructor(retcode: number, message: string, fields: Field[] = []) {
    // These are answers, not bugs: no stack trace (capturing one costs more than the whole request).
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
    this.retcode = retcode;
    this.fields = fields;
  }
}

export const invalid = (key: string, why: string): VbsError =>
  new VbsError(RetCode.INVALID_PARAMETER, `${key}: ${why}`);
export const notExist = (what: string): VbsError => new VbsError(RetCode.NOT_EXIST, `${what} does not exist`);
export const imageError = (message: string): VbsError => new VbsError(RetCode.IMAGE_ERROR, message);
export const busy = (what: string, op?: string): VbsError =>
  new VbsError(RetCode.BUSY, `${what} is busy${op ? ` (${op} in progress)` : ''}; retry later`);

/** Maps an I/O error to a result code: a full pool is NO_SPACE, anything else INTERNAL. */
export function fromIoError(err: unknown, what: string): VbsError {
  if (err instanceof VbsError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'ENOSPC' || /No space left/i.test(e?.message ?? '')) {
    return new VbsError(RetCode.NO_SPACE, `${what}: the pool is out of space`);
  }
  return new VbsError(RetCode.INTERNAL, `${what}: ${e?.message ?? String(err)}`);
}
