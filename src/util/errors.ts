// The shape every room's typed error shares: a kind from the room's closed list, which src/server/errors.ts
// maps to a gRPC code (completeness checked by the type of each table), and a message safe to show the CO.

export class RoomError<K extends string> extends Error {
  constructor(
    readonly kind: K,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name; // ConnectorError, KubeError, ...: what a log line shows
  }
}

/**
 * A room error that also keeps the number the far side answered with, when it gave one (sds_cli's ret_code,
 * the API server's HTTP status); each room exposes it under the name of what it is.
 */
export class AnsweredRoomError<K extends string> extends RoomError<K> {
  constructor(
    kind: K,
    message: string,
    protected readonly answer?: number,
    options?: { cause?: unknown },
  ) {
    super(kind, message, options);
  }
}

/** `err` is an instance of `type` (of `kind`, when given). */
export function isRoomError<E extends RoomError<string>>(
  type: abstract new (...args: never[]) => E,
  err: unknown,
  kind?: E['kind'],
): err is E {
  return err instanceof type && (kind === undefined || err.kind === kind);
}
