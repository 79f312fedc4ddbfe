// The one place where errors become gRPC status codes. Handlers throw CsiError for what they decide
// themselves (validation, spec rules); rooms throw their typed errors (SdsError, ConnectorError, KubeError,
// MountError), mapped here by kind, one table per room typed by its kind list so that a new kind cannot be
// forgotten. Anything else is INTERNAL, with its message.
import { status } from '@grpc/grpc-js';
import { ConnectorError, type ConnectorErrorKind } from '../connector/errors.js';
import { KubeError, type KubeErrorKind } from '../kube/errors.js';
import { MountError, type MountErrorKind } from '../mount/errors.js';
import { SdsError, type SdsErrorKind } from '../sds/errors.js';

export { status };

export class CsiError extends Error {
  constructor(
    readonly code: status,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CsiError';
  }
}

export const invalidArgument = (message: string) => new CsiError(status.INVALID_ARGUMENT, message);
export const notFound = (message: string) => new CsiError(status.NOT_FOUND, message);
export const alreadyExists = (message: string) => new CsiError(status.ALREADY_EXISTS, message);
export const outOfRange = (message: string) => new CsiError(status.OUT_OF_RANGE, message);
export const failedPrecondition = (message: string) => new CsiError(status.FAILED_PRECONDITION, message);
export const aborted = (message: string) => new CsiError(status.ABORTED, message);
export const unavailable = (message: string) => new CsiError(status.UNAVAILABLE, message);
export const unimplemented = (message: string) => new CsiError(status.UNIMPLEMENTED, message);
export const resourceExhausted = (message: string) => new CsiError(status.RESOURCE_EXHAUSTED, message);
export const internal = (message: string) => new CsiError(status.INTERNAL, message);

const sdsCodes: Record<SdsErrorKind, status> = {
  NotFound: status.NOT_FOUND,
  AlreadyExists: status.ALREADY_EXISTS,
  InvalidParameter: status.INVALID_ARGUMENT,
  AuthFailed: status.UNAUTHENTICATED,
  PoolNotFound: status.INVALID_ARGUMENT,
  NoSpace: status.RESOURCE_EXHAUSTED,
  Busy: status.ABORTED,
  CannotShrink: status.OUT_OF_RANGE,
  NotSupported: status.FAILED_PRECONDITION,
  MappedElsewhere: status.FAILED_PRECONDITION,
  MapConflict: status.ALREADY_EXISTS,
  HostNotFound: status.NOT_FOUND,
  Attached: status.FAILED_PRECONDITION,
  ImageError: status.INVALID_ARGUMENT,
  HasDependents: status.FAILED_PRECONDITION,
  // CSI DeleteSnapshot: "Snapshot is part of a group" is INVALID_ARGUMENT (the CO calls DeleteVolumeGroupSnapshot).
  GroupMember: status.INVALID_ARGUMENT,
  Unavailable: status.UNAVAILABLE,
  Timeout: status.DEADLINE_EXCEEDED,
  Protocol: status.INTERNAL,
  Internal: status.INTERNAL,
};

const connectorCodes: Record<ConnectorErrorKind, status> = {
  InvalidArgument: status.INVALID_ARGUMENT,
  CliMissing: status.FAILED_PRECONDITION,
  NotMapped: status.FAILED_PRECONDITION,
  VolumeNotFound: status.NOT_FOUND,
  Unavailable: status.UNAVAILABLE,
  Busy: status.ABORTED,
  Timeout: status.DEADLINE_EXCEEDED,
  DeviceTimeout: status.DEADLINE_EXCEEDED,
  Garbled: status.INTERNAL,
  Failed: status.INTERNAL,
};

const kubeCodes: Record<KubeErrorKind, status> = {
  Disabled: status.FAILED_PRECONDITION,
  Config: status.INTERNAL,
  InvalidArgument: status.INVALID_ARGUMENT,
  InvalidAnnotation: status.INVALID_ARGUMENT,
  NotFound: status.NOT_FOUND,
  Forbidden: status.PERMISSION_DENIED,
  Rejected: status.INTERNAL,
  Unavailable: status.UNAVAILABLE,
  Timeout: status.DEADLINE_EXCEEDED,
  Cancelled: status.CANCELLED,
};

const mountCodes: Record<MountErrorKind, status> = {
  NotFound: status.NOT_FOUND,
  InvalidArgument: status.INVALID_ARGUMENT,
  Conflict: status.ALREADY_EXISTS,
  Busy: status.FAILED_PRECONDITION,
  Timeout: status.DEADLINE_EXCEEDED,
  Failed: status.INTERNAL,
};

export interface GrpcFailure {
  code: status;
  details: string;
}

/** Maps any thrown value to a gRPC status and a message safe to return to the CO. */
export function toGrpcFailure(err: unknown): GrpcFailure {
  if (err instanceof CsiError) return { code: err.code, details: err.message };
  if (err instanceof SdsError) return { code: sdsCodes[err.kind], details: err.message };
  if (err instanceof ConnectorError) return { code: connectorCodes[err.kind], details: err.message };
  if (err instanceof KubeError) return { code: kubeCodes[err.kind], details: err.message };
  if (err instanceof MountError) return { code: mountCodes[err.kind], details: err.message };
  if (err instanceof Error) return { code: status.INTERNAL, details: err.message || err.name };
  return { code: status.INTERNAL, details: String(err) };
}

export function statusName(code: status): string {
  return status[code] ?? String(code);
}
