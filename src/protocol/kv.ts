// The data-plane key=value format (docs/socket-api.md §3): what `sds_cli` prints and what its VBS answers.
// Pure functions, no I/O; shared by the driver's connector and the emulator.

export const MAX_KV_MESSAGE_BYTES = 4096;

/** Result codes of `sds_cli` (the product's, then ours in 5015900x). */
export const KvCode = {
  OK: 0,
  ALREADY_ATTACHED: 50151401,
  ATTACH_OF_THIS_NODE_DONE: 50151405,
  VBS_ABNORMAL: 50151209,
  NOT_MOUNT_NODE: 50155007,
  VBS_UNREACHABLE: 50159001,
  VOLUME_NOT_EXIST: 50159002,
  BAD_ARGUMENTS: 50159003,
  NOT_ATTACHED: 50159004,
  DEVICE_FAILED: 50159005,
  GARBLED_REPLY: 50159006,
  BUSY: 50159007,
} as const;

export type KvMethod = 'attach' | 'detach' | 'querydev';
export const KV_METHODS: readonly KvMethod[] = ['attach', 'detach', 'querydev'];

/** Encodes key=value lines; `terminate` adds the empty line that ends a KV request. */
export function encodeKv(fields: Record<string, string | number | undefined>, terminate: boolean): Buffer {
  const lines: string[] = [];
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const value = String(v);
    if (!/^[a-z_]+$/.test(k) || /[\u0000-\u001f\u007f]/.test(value)) {
      throw new Error(`kv: bad field ${JSON.stringify(k)}`);
    }
    lines.push(`${k}=${value}`);
  }
  return Buffer.from(lines.join('\n') + '\n' + (terminate ? '\n' : ''), 'utf8');
}

export interface KvParse {
  /** First value of each key; surrounding double quotes removed (`ret_desc="success"` → `success`). */
  fields: Map<string, string>;
  /** Lines that were not key=value, kept for error messages (truncated). */
  garbage: string[];
}

/**
 * Parses key=value lines tolerantly: output of a CLI we do not own may hold banners, blank lines, CRLF or
 * junk. Never throws; the caller decides what a missing key means.
 */
export function parseKv(text: string): KvParse {
  const fields = new Map<string, string>();
  const garbage: string[] = [];
  const bounded = text.length > 64 * 1024 ? text.slice(0, 64 * 1024) : text;
  for (const raw of bounded.split('\n')) {
    const line = raw.replace(/\r$/, '').trim();
    if (line === '') continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m || /\u0000/.test(line)) {
      if (garbage.length < 5) garbage.push(line.replace(/[\u0000-\u001f\u007f]/g, '?').slice(0, 120));
      continue;
    }
    let value = m[2]!;
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (!fields.has(m[1]!)) fields.set(m[1]!, value);
  }
  return { fields, garbage };
}
