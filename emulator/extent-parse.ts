// Strict parsers of xfs_io's extent maps (`fiemap -v`, `seek -a -r`) for emulator/extents.ts: a misread
// map would lose data in a backup, so anything unexpected is refused.

const SECTOR = 512;

// FIEMAP extent flags (linux/fiemap.h).
const FLAG_UNKNOWN = 0x2;
const FLAG_DELALLOC = 0x4;
const FLAG_ENCODED = 0x8;
const FLAG_ENCRYPTED = 0x80;
const FLAG_NOT_ALIGNED = 0x100;
const FLAG_INLINE = 0x200;
const FLAG_TAIL = 0x400;
export const FLAG_UNWRITTEN = 0x800;
/** Mappings whose physical address says nothing reliable about the data: their bytes must be compared. */
export const AMBIGUOUS =
  FLAG_UNKNOWN | FLAG_DELALLOC | FLAG_ENCODED | FLAG_ENCRYPTED | FLAG_NOT_ALIGNED | FLAG_INLINE | FLAG_TAIL;

export interface ByteRange {
  offset: number;
  length: number;
}

/** One data extent, in bytes. */
export interface Mapping {
  logical: number;
  length: number;
  physical: number;
  flags: number;
}

export class ExtentMapError extends Error {
  override name = 'ExtentMapError';
}

const EXTENT_LINE = /^\s*\d+:\s+\[(\d+)\.\.(\d+)\]:\s+(?:(hole)|(\d+)\.\.(\d+))\s+(\d+)(?:\s+(0x[0-9a-fA-F]+))?\s*$/;

/**
 * Parses `xfs_io -c 'fiemap -v'` output: the data extents (holes dropped), in bytes. Anything that is not
 * the file-name line, the header or an extent line is refused: a misread map would lose data in a backup.
 */
export function parseFiemap(output: string): Mapping[] {
  const out: Mapping[] = [];
  let headerSeen = false;
  let lastEnd = -1;
  for (const line of output.split('\n')) {
    if (line.trim() === '') continue;
    if (!headerSeen) {
      if (/^\s*EXT:\s+FILE-OFFSET\s+BLOCK-RANGE\s+TOTAL(\s+FLAGS)?\s*$/.test(line)) headerSeen = true;
      else if (!line.endsWith(':'))
        throw new ExtentMapError(`unexpected fiemap line ${JSON.stringify(line.slice(0, 120))}`);
      continue;
    }
    const m = EXTENT_LINE.exec(line);
    if (!m) throw new ExtentMapError(`unexpected fiemap line ${JSON.stringify(line.slice(0, 120))}`);
    const start = Number(m[1]) * SECTOR;
    const end = (Number(m[2]) + 1) * SECTOR;
    if (!Number.isSafeInteger(end) || end <= start || start < lastEnd) {
      throw new ExtentMapError(`fiemap extents out of order at ${JSON.stringify(line.trim())}`);
    }
    lastEnd = end;
    if (m[3] === 'hole') continue;
    const physStart = Number(m[4]) * SECTOR;
    const physEnd = (Number(m[5]) + 1) * SECTOR;
    if (physEnd - physStart !== end - start)
      throw new ExtentMapError(`fiemap extent with unequal ranges: ${JSON.stringify(line.trim())}`);
    out.push({ logical: start, length: end - start, physical: physStart, flags: m[7] ? Number.parseInt(m[7], 16) : 0 });
  }
  return out;
}

/** Parses `xfs_io -c 'seek -a -r OFFSET'` output into data ranges, the last one ending at `size`. */
export function parseSeek(output: string, size: number): ByteRange[] {
  const out: ByteRange[] = [];
  let dataStart: number | undefined;
  let headerSeen = false;
  for (const line of output.split('\n')) {
    if (line.trim() === '') continue;
    if (!headerSeen) {
      if (/^Whence\s+Result$/.test(line.trim())) {
        headerSeen = true;
        continue;
      }
      throw new ExtentMapError(`unexpected seek line ${JSON.stringify(line.slice(0, 120))}`);
    }
    const m = /^(DATA|HOLE)\s+(\d+|EOF)$/.exec(line.trim());
    if (!m) throw new ExtentMapError(`unexpected seek line ${JSON.stringify(line.slice(0, 120))}`);
    const at = m[2] === 'EOF' ? size : Math.min(size, Number(m[2]));
    if (m[1] === 'DATA') {
      if (dataStart === undefined && at < size) dataStart = at;
    } else if (dataStart !== undefined) {
      if (at > dataStart) out.push({ offset: dataStart, length: at - dataStart });
      dataStart = undefined;
    }
  }
  if (dataStart !== undefined && size > dataStart) out.push({ offset: dataStart, length: size - dataStart });
  return out;
}
