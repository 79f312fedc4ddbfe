// Typed errors of the KV connector (the node side of the data plane). The CSI layer maps `kind` to a gRPC
// code in one place; nothing else should look at sds_cli's ret_codes.
import { AnsweredRoomError, isRoomError } from '../util/errors.js';

export type ConnectorErrorKind =
  /** the CLI is not there or not executable */
  | 'CliMissing'
  /** a volume name the CLI must not be given */
  | 'InvalidArgument'
  /** the CLI did not finish in time (it was killed), or the caller cancelled */
  | 'Timeout'
  /** the CLI's output cannot be understood: empty, truncated, no ret_code, a bad dev_addr */
  | 'Garbled'
  /** the CLI reported a device that did not become a block device in time */
  | 'DeviceTimeout'
  /** attach: the volume is not mapped to this host (50155007) */
  | 'NotMapped'
  /** 50159002 */
  | 'VolumeNotFound'
  /** the CLI cannot reach its VBS (50159001) */
  | 'Unavailable'
  /** another attach/detach of the volume runs (50159007) */
  | 'Busy'
  /** any other failure code */
  | 'Failed';

export class ConnectorError extends AnsweredRoomError<ConnectorErrorKind> {
  /** sds_cli's ret_code, when it printed one */
  readonly code = this.answer;
}

export const isConnectorError = (err: unknown, kind?: ConnectorErrorKind): err is ConnectorError =>
  isRoomError(ConnectorError, err, kind);
