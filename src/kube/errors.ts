// Typed errors of the Kubernetes client room. Like SdsError, the CSI layer maps `kind` to a gRPC code in one
// place (src/server/errors.ts); nothing else should look at HTTP statuses.
import { AnsweredRoomError, isRoomError } from '../util/errors.js';

export type KubeErrorKind =
  /** no in-cluster config and no kubeconfig: Kubernetes features are off */
  | 'Disabled'
  /** the kubeconfig named by --kubeconfig / KUBECONFIG cannot be read or has no usable context */
  | 'Config'
  /** a bad argument from our caller (empty name, bad label key) */
  | 'InvalidArgument'
  /** the object does not exist (HTTP 404) */
  | 'NotFound'
  /** our ServiceAccount may not do this (HTTP 401/403): the RBAC of the chart is missing or changed */
  | 'Forbidden'
  /** the object exists but an annotation we read has a bad value */
  | 'InvalidAnnotation'
  /** the API server refused the request for another 4xx reason (422 invalid object, 409 conflict, ...) */
  | 'Rejected'
  /** 429, 5xx or network errors until the deadline (no time left for another attempt, or the last one cut) */
  | 'Unavailable'
  /** the deadline passed and no attempt got an answer from the server */
  | 'Timeout'
  /** the caller's AbortSignal fired (e.g. the CSI RPC was cancelled) */
  | 'Cancelled';

export class KubeError extends AnsweredRoomError<KubeErrorKind> {
  /** the HTTP status of the last reply, when there was one */
  readonly httpStatus = this.answer;
}

export const isKubeError = (err: unknown, kind?: KubeErrorKind): err is KubeError => isRoomError(KubeError, err, kind);
