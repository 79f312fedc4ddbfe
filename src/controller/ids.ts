// CSI names and ids ↔ back-end names, and the pagination tokens of ListVolumes / ListSnapshots.
//
// volume_id is the back-end vol_name and snapshot_id the back-end snap_name, so a restarted controller needs
// no table of its own. A CSI name that already is a good back-end name (Kubernetes' `pvc-<uuid>`,
// `snapshot-<uuid>`) is used as is; any other name is hashed into `H_<40 hex>`. Upper case and `_` never occur
// in pass-through names, so the two sets cannot collide.
import { createHash } from 'node:crypto';
import { isValidName } from '../protocol/vbs.js';
import { aborted, invalidArgument } from '../server/errors.js';

/** CSI string fields are limited to 128 bytes (spec "Size Limits"). */
export const MAX_CSI_STRING_BYTES = 128;

const PASSTHROUGH_NAME = /^[a-z0-9][a-z0-9.-]{0,62}$/;
// U+0000–U+0008, U+000B, U+000C, U+000E–U+001F, U+007F–U+009F are banned in CO-chosen names.
const BANNED_NAME_CHARACTERS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;

/** Checks a CO-chosen name (`CreateVolumeRequest.name`, `CreateSnapshotRequest.name`). */
export function checkCsiName(field: string, name: string): void {
  if (name === '') throw invalidArgument(`${field} is required`);
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > MAX_CSI_STRING_BYTES)
    throw invalidArgument(`${field} is ${bytes} bytes long; at most ${MAX_CSI_STRING_BYTES} are allowed`);
  const banned = BANNED_NAME_CHARACTERS.exec(name);
  if (banned) {
    const code = banned[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
    throw invalidArgument(`${field} contains the control character U+${code}, which CSI names may not hold`);
  }
}

/** The back-end name for a valid CSI name. Deterministic: the same CSI name always gives the same id. */
export function backendNameFor(csiName: string): string {
  if (PASSTHROUGH_NAME.test(csiName)) return csiName;
  return 'H_' + createHash('sha256').update(csiName, 'utf8').digest('hex').slice(0, 40);
}

/**
 * Checks a volume or snapshot id sent by the CO. Empty → INVALID_ARGUMENT. Returns false for an id that is no
 * valid back-end name: such an object can never exist, so the caller answers NOT_FOUND (or OK for deletes)
 * without asking the back end.
 */
export function isKnownIdForm(field: string, id: string): boolean {
  if (id === '') throw invalidArgument(`${field} is required`);
  return isValidName(id);
}

// Pagination tokens: a kind prefix and the back-end marker (the last name of the previous page).
export type TokenKind = 'lv1' | 'ls1';

export function encodePageToken(kind: TokenKind, marker: string): string {
  return marker === '' ? '' : `${kind}.${Buffer.from(marker, 'utf8').toString('base64url')}`;
}

/** The back-end marker in a `starting_token`; '' for none. A token we did not issue → ABORTED (spec). */
export function decodePageToken(kind: TokenKind, token: string): string {
  if (token === '') return '';
  const bad = () =>
    aborted(
      `starting_token ${JSON.stringify(token.length > 64 ? `${token.slice(0, 64)}…` : token)} is not valid; restart the listing without a token`,
    );
  if (!token.startsWith(`${kind}.`)) throw bad();
  const body = token.slice(kind.length + 1);
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(body)) throw bad();
  const marker = Buffer.from(body, 'base64url').toString('utf8');
  // base64url decoding is lenient: insist on the canonical form so only tokens we made are accepted.
  if (!isValidName(marker) || Buffer.from(marker, 'utf8').toString('base64url') !== body) throw bad();
  return marker;
}
