// The VBS text protocol (docs/socket-api.md): pure encoding and decoding, no I/O.
// Shared by the driver's client (src/sds) and the emulator's server; nothing here may touch a socket or a file.

export const MAX_REQUEST_BYTES = 64 * 1024;
export const MAX_REPLY_BYTES = 1024 * 1024;
export const MAX_LIST_LIMIT = 1000;
export const DEFAULT_VBS_PORT = 10599;

/** Result codes of the socket API (docs/socket-api.md §2.7). */
export const RetCode = {
  OK: 0,
  NOT_EXIST: -900079,
  MALFORMED: -900001,
  UNKNOWN_REQUEST: -900002,
  INVALID_PARAMETER: -900003,
  AUTH_FAILED: -900004,
  TOO_LARGE: -900005,
  POOL_NOT_EXIST: -900010,
  ALREADY_EXISTS: -900011,
  NO_SPACE: -900012,
  BUSY: -900013,
  CANNOT_SHRINK: -900014,
  NOT_SUPPORTED: -900015,
  MAPPED_ELSEWHERE: -900016,
  HOST_NOT_EXIST: -900017,
  ATTACHED: -900018,
  IMAGE_ERROR: -900019,
  HAS_DEPENDENTS: -900020,
  MAP_CONFLICT: -900021,
  GROUP_MEMBER: -900022,
  INTERNAL: -900030,
  UNAVAILABLE: -900031,
} as const;
export type RetCodeName = keyof typeof RetCode;

const retCodeNames = new Map<number, RetCodeName>(
  Object.entries(RetCode).map(([name, code]) => [code, name as RetCodeName]),
);
export function retCodeName(code: number): RetCodeName | undefined {
  return retCodeNames.get(code);
}

/** A key=value pair; order is kept and keys may repeat (that is how the protocol sends lists). */
export type Field = readonly [key: string, value: string];
export type FieldInput = string | number | boolean | undefined | null | readonly (string | number)[];

const KEY_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
const TYPE_PATTERN = /^[A-Z][A-Z0-9_]*$/;
// Control characters other than TAB are never allowed in a line.
const CONTROL_PATTERN = /[\u0000-\u0008\u000a-\u001f\u007f]/;

export class ProtocolError extends Error {
  constructor(
    readonly retcode: number,
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** An ordered, multi-valued view of the fields of a request or reply. */
export class Fields {
  constructor(readonly list: readonly Field[]) {}
  get(key: string): string | undefined {
    for (const [k, v] of this.list) if (k === key) return v;
    return undefined;
  }
  getAll(key: string): string[] {
    return this.list.filter(([k]) => k === key).map(([, v]) => v);
  }
  has(key: string): boolean {
    return this.list.some(([k]) => k === key);
  }
  /** Records `prefix0`, `prefix1`, ... in numeric order, each parsed from its bracketed body. */
  records(prefix: string): Record<string, string>[] {
    const found: Array<[number, Record<string, string>]> = [];
    const pattern = new RegExp(`^${prefix}(\\d+)$`);
    for (const [k, v] of this.list) {
      const m = pattern.exec(k);
      if (m) found.push([Number(m[1]), parseRecord(v)]);
    }
    return found.sort((a, b) => a[0] - b[0]).map(([, r]) => r);
  }
}

export interface VbsRequest {
  type: string;
  fields: Fields;
}

export interface VbsReply {
  retcode: number;
  fields: Fields;
}

/** Turns a field object or list into ordered fields; arrays repeat the key, undefined/null are left out. */
export function toFields(input: readonly Field[] | Record<string, FieldInput>): Field[] {
  if (Array.isArray(input)) return [...(input as readonly Field[])];
  const out: Field[] = [];
  for (const [key, value] of Object.entries(input as Record<string, FieldInput>)) {
    if (value === undefined || value === null) continue;
    if (Array.isArray(value)) for (const v of value) out.push([key, String(v)]);
    else out.push([key, typeof value === 'boolean' ? (value ? '1' : '0') : String(value)]);
  }
  return out;
}

function checkField(key: string, value: string): void {
  if (!KEY_PATTERN.test(key)) throw new ProtocolError(RetCode.MALFORMED, `bad key ${JSON.stringify(key)}`);
  if (CONTROL_PATTERN.test(value)) {
    throw new ProtocolError(RetCode.MALFORMED, `${key}: value holds a control character`);
  }
}

function encodeLines(lines: string[], terminate: boolean): Buffer {
  return Buffer.from(lines.join('\n') + '\n' + (terminate ? '\n' : ''), 'utf8');
}

/**
 * Encodes a request. `terminate` appends the empty line that ends a request at once (our extension);
 * without it the bytes are exactly what the original Cinder client sent.
 */
export function encodeRequest(
  type: string,
  input: readonly Field[] | Record<string, FieldInput>,
  options: { terminate?: boolean } = {},
): Buffer {
  if (!TYPE_PATTERN.test(type)) throw new ProtocolError(RetCode.MALFORMED, `bad request type ${JSON.stringify(type)}`);
  const fields = toFields(input);
  for (const [k, v] of fields) checkField(k, v);
  const bytes = encodeLines([`[${type}]`, ...fields.map(([k, v]) => `${k}=${v}`)], options.terminate ?? true);
  if (bytes.length > MAX_REQUEST_BYTES) {
    throw new ProtocolError(RetCode.TOO_LARGE, `request of ${bytes.length} bytes exceeds ${MAX_REQUEST_BYTES}`);
  }
  return bytes;
}

/**
 * Where a request ends in `buf`: the offset just past an empty line, or -1 when none was seen yet.
 * A request that ends by EOF or by the quiet period is framed by the caller, who owns the socket.
 */
export function findRequestEnd(buf: Buffer): number {
  for (let i = buf.indexOf(0x0a); i !== -1; i = buf.indexOf(0x0a, i + 1)) {
    const next = buf[i + 1];
    if (next === 0x0a) return i + 2;
    if (next === 0x0d && buf[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

function decodeLines(bytes: Uint8Array, what: string): string[] {
  if (bytes.includes(0)) throw new ProtocolError(RetCode.MALFORMED, `${what} holds a NUL byte`);
  let text: string;
  try {
    text = strictUtf8.decode(bytes);
  } catch {
    throw new ProtocolError(RetCode.MALFORMED, `${what} is not valid UTF-8`);
  }
  const lines = text.split('\n').map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

function parseFieldLine(line: string, what: string): Field {
  const eq = line.indexOf('=');
  if (eq <= 0)
    throw new ProtocolError(RetCode.MALFORMED, `${what}: line without key=value: ${JSON.stringify(line.slice(0, 80))}`);
  const key = line.slice(0, eq);
  const value = line.slice(eq + 1);
  checkField(key, value);
  return [key, value];
}

/** Parses one complete request (the bytes up to, optionally including, its terminating empty line). */
export function parseRequest(bytes: Uint8Array): VbsRequest {
  if (bytes.length > MAX_REQUEST_BYTES) {
    throw new ProtocolError(RetCode.TOO_LARGE, `request of ${bytes.length} bytes exceeds ${MAX_REQUEST_BYTES}`);
  }
  const lines = decodeLines(bytes, 'request');
  // An empty line ends the request; anything after it is not part of it.
  const end = lines.indexOf('');
  const body = end === -1 ? lines : lines.slice(0, end);
  const first = body[0];
  if (first === undefined) throw new ProtocolError(RetCode.MALFORMED, 'empty request');
  const m = /^\[([A-Za-z0-9_]+)\]$/.exec(first.trim());
  if (!m)
    throw new ProtocolError(
      RetCode.MALFORMED,
      `first line must be [REQ_TYPE], got ${JSON.stringify(first.slice(0, 80))}`,
    );
  const fields = body.slice(1).map((l) => parseFieldLine(l, 'request'));
  return { type: m[1]!, fields: new Fields(fields) };
}

const CONTROL_CHARACTERS = new RegExp(CONTROL_PATTERN.source, 'g');

/** Encodes a reply; `retcode` always comes first. */
export function encodeReply(retcode: number, input: readonly Field[] | Record<string, FieldInput> = []): Buffer {
  const fields = toFields(input).filter(([k]) => k !== 'retcode');
  const lines = [`retcode=${retcode}`];
  for (const [k, v] of fields) {
    // Replies never fail to encode: a value with control characters is sanitised, not refused.
    lines.push(`${k}=${CONTROL_PATTERN.test(v) ? v.replace(CONTROL_CHARACTERS, ' ') : v}`);
  }
  return encodeLines(lines, false);
}

/** Parses a complete reply (read to EOF). */
export function parseReply(bytes: Uint8Array): VbsReply {
  if (bytes.length > MAX_REPLY_BYTES) {
    throw new ProtocolError(RetCode.TOO_LARGE, `reply of ${bytes.length} bytes exceeds ${MAX_REPLY_BYTES}`);
  }
  const lines = decodeLines(bytes, 'reply').filter((l) => l !== '');
  if (lines.length === 0) throw new ProtocolError(RetCode.MALFORMED, 'empty reply');
  const fields = new Fields(lines.map((l) => parseFieldLine(l, 'reply')));
  const raw = fields.get('retcode');
  if (raw === undefined) throw new ProtocolError(RetCode.MALFORMED, 'reply has no retcode');
  if (!/^-?\d{1,10}$/.test(raw.trim()))
    throw new ProtocolError(RetCode.MALFORMED, `reply retcode is not a number: ${JSON.stringify(raw.slice(0, 40))}`);
  return { retcode: Number(raw.trim()), fields };
}

const RECORD_ESCAPE = /[%,=[\]\u0000-\u001f\u007f]/g;
const NEEDS_RECORD_ESCAPE = new RegExp(RECORD_ESCAPE.source);

/** Most values need no escaping: a test is cheaper than a replace that finds nothing. */
function escapeRecordValue(value: string): string {
  if (!NEEDS_RECORD_ESCAPE.test(value)) return value;
  return value.replace(RECORD_ESCAPE, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'));
}

/** Record keys already checked against KEY_PATTERN; a listing encodes the same few dozen thousands of times. */
const checkedRecordKeys = new Set<string>();

function checkRecordKey(key: string): void {
  if (checkedRecordKeys.has(key)) return;
  if (!KEY_PATTERN.test(key)) throw new ProtocolError(RetCode.MALFORMED, `bad record key ${JSON.stringify(key)}`);
  if (checkedRecordKeys.size < 1024) checkedRecordKeys.add(key);
}

function recordValue(v: string | number | boolean): string {
  if (typeof v === 'number') return String(v); // digits, '.', '-', 'e', '+': never escaped
  return escapeRecordValue(typeof v === 'boolean' ? (v ? '1' : '0') : v);
}

/** Encodes a record body: `[k=v,k=v]`, with `%`, `,`, `=`, `[`, `]` and control characters percent-encoded. */
export function encodeRecord(record: Record<string, string | number | boolean | undefined>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(record)) {
    if (v === undefined) continue;
    checkRecordKey(k);
    parts.push(`${k}=${recordValue(v)}`);
  }
  return `[${parts.join(',')}]`;
}

/** A record value, percent-decoded; most have no `%` at all, and a listing parses thousands of them. */
function decodeRecordValue(key: string, raw: string): string {
  if (!raw.includes('%')) return raw;
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new ProtocolError(RetCode.MALFORMED, `${key}: bad percent-encoding in record`);
  }
}

/** Parses a record body `[k=v,...]`. */
export function parseRecord(body: string): Record<string, string> {
  const s = body.trim();
  if (!s.startsWith('[') || !s.endsWith(']')) {
    throw new ProtocolError(RetCode.MALFORMED, `record is not bracketed: ${JSON.stringify(s.slice(0, 80))}`);
  }
  const inner = s.slice(1, -1);
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  if (inner.trim() === '') return out;
  for (const part of inner.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0)
      throw new ProtocolError(RetCode.MALFORMED, `record part without key=value: ${JSON.stringify(part.slice(0, 80))}`);
    const key = part.slice(0, eq).trim();
    checkRecordKey(key);
    out[key] = decodeRecordValue(key, part.slice(eq + 1));
  }
  return out;
}

/** Names of volumes, snapshots, pools and hosts on the wire (docs/socket-api.md §1.3). */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$/;
export function isValidName(name: string): boolean {
  return NAME_PATTERN.test(name);
}

/** Volume status codes in records. */
export const VolumeStatus = { AVAILABLE: 1, IN_USE: 2, BUSY: 10, DELETING: 11, FAULT: 12 } as const;
/** Snapshot status codes in records. */
export const SnapshotStatus = { AVAILABLE: 1, IN_USE: 2, CREATING: 10, DELETING: 11, FAULT: 12 } as const;
