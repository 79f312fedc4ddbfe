// Typed errors of the back-end client. The CSI layer maps `kind` to a gRPC code in one place
// (src/server/errors.ts); nothing else should look at retcodes.
import { RetCode, retCodeName } from '../protocol/vbs.js';

export type SdsErrorKind =
  | 'NotFound'
  | 'AlreadyExists'
  | 'InvalidParameter'
  | 'AuthFailed'
  | 'PoolNotFound'
  | 'NoSpace'
  | 'Busy'
  | 'CannotShrink'
  | 'NotSupported'
  | 'MappedElsewhere'
  | 'MapConflict'
  | 'HostNotFound'
  | 'Attached'
  | 'ImageError'
  | 'HasDependents'
  /** a snapshot that belongs to a group snapshot: only the group may be deleted */
  | 'GroupMember'
  /** the VBS could not be reached at any address, or said it is starting/stopping */
  | 'Unavailable'
  /** sent, but no complete reply before the deadline: the outcome is unknown */
  | 'Timeout'
  /** a reply we cannot parse, or a request the VBS called malformed */
  | 'Protocol'
  | 'Internal';

const kindByRetcode = new Map<number, SdsErrorKind>([
  [RetCode.NOT_EXIST, 'NotFound'],
  [RetCode.MALFORMED, 'Protocol'],
  [RetCode.UNKNOWN_REQUEST, 'NotSupported'],
  [RetCode.INVALID_PARAMETER, 'InvalidParameter'],
  [RetCode.AUTH_FAILED, 'AuthFailed'],
  [RetCode.TOO_LARGE, 'Protocol'],
  [RetCode.POOL_NOT_EXIST, 'PoolNotFound'],
  [RetCode.ALREADY_EXISTS, 'AlreadyExists'],
  [RetCode.NO_SPACE, 'NoSpace'],
  [RetCode.BUSY, 'Busy'],
  [RetCode.CANNOT_SHRINK, 'CannotShrink'],
  [RetCode.NOT_SUPPORTED, 'NotSupported'],
  [RetCode.MAPPED_ELSEWHERE, 'MappedElsewhere'],
  [RetCode.HOST_NOT_EXIST, 'HostNotFound'],
  [RetCode.ATTACHED, 'Attached'],
  [RetCode.IMAGE_ERROR, 'ImageError'],
  [RetCode.HAS_DEPENDENTS, 'HasDependents'],
  [RetCode.MAP_CONFLICT, 'MapConflict'],
  [RetCode.GROUP_MEMBER, 'GroupMember'],
  [RetCode.INTERNAL, 'Internal'],
  [RetCode.UNAVAILABLE, 'Unavailable'],
]);

/** The error kind a non-zero retcode stands for (unknown codes are 'Internal'). */
export function kindOfRetcode(retcode: number): SdsErrorKind {
  return kindByRetcode.get(retcode) ?? 'Internal';
}

export class SdsError extends Error {
  constructor(
    readonly kind: SdsErrorKind,
    message: string,
    readonly retcode?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'SdsError';
  }

  /** An error for a non-zero retcode; `desc` is the VBS's ret_desc. */
  static fromRetcode(requestType: string, retcode: number, desc: string | undefined): SdsError {
    const kind = kindOfRetcode(retcode);
    const name = retCodeName(retcode) ?? 'UNKNOWN';
    return new SdsError(kind, `${requestType} failed: ${name} (${retcode})${desc ? `: ${desc}` : ''}`, retcode);
  }
}

export function isSdsError(err: unknown, kind?: SdsErrorKind): err is SdsError {
  return err instanceof SdsError && (kind === undefined || err.kind === kind);
}
