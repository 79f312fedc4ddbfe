// The shape every room's typed error shares: a kind from the room's closed list, which src/server/errors.ts
// maps to a gRPC code (completeness checked by the type of each table), and a message safe to show the CO.

export class RoomError<K extends string> extends Error {
  constructor(
    readonly kind: K,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
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
