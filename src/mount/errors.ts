// Typed errors of the mount room. The CSI layer maps `kind` to a gRPC code in one place
// (src/server/errors.ts, table `MountError`); nothing else should look at tool exit codes.
import { isRoomError, RoomError } from '../util/errors.js';

export type MountErrorKind =
  /** a path or device that must exist does not */
  | 'NotFound'
  /** a value the tools must not be given (a bad mount flag, a symlinked target) */
  | 'InvalidArgument'
  /** something else already sits where we would put ours (another filesystem on the device, another mount) */
  | 'Conflict'
  /** the mount point or device is in use */
  | 'Busy'
  /** a tool did not finish in time (it was killed), or the caller cancelled */
  | 'Timeout'
  /** any other failure of a tool */
  | 'Failed';

export class MountError extends RoomError<MountErrorKind> {}

export const isMountError = (err: unknown, kind?: MountErrorKind): err is MountError =>
  isRoomError(MountError, err, kind);
