// Reading and writing exact byte ranges of devices and files in tests, synchronously and durably.
import { closeSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';

/** `length` bytes from `offset`; a range running past the end is an error, not a short read. */
export function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, buf, done, length - done, offset + done);
      if (n === 0) throw new Error(`${path}: end at ${offset + done}, wanted ${length} bytes from ${offset}`);
      done += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

/** Writes each piece at its offset, then fsyncs, so the bytes are on the device before a snapshot. */
export function writeAt(path: string, pieces: ReadonlyArray<{ offset: number; data: Buffer }>): void {
  const fd = openSync(path, 'r+');
  try {
    for (const { offset, data } of pieces) {
      let done = 0;
      while (done < data.length) done += writeSync(fd, data, done, data.length - done, offset + done);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface ByteSpan {
  offset: number;
  length: number;
}

/** The spans sorted by offset, overlapping or touching ones joined: the form extent maps answer in. */
export function mergeSpans<T extends ByteSpan>(spans: readonly T[]): ByteSpan[] {
  const out: ByteSpan[] = [];
  for (const r of [...spans].sort((a, b) => a.offset - b.offset)) {
    const last = out[out.length - 1];
    if (last && last.offset + last.length >= r.offset)
      last.length = Math.max(last.offset + last.length, r.offset + r.length) - last.offset;
    else out.push({ offset: r.offset, length: r.length });
  }
  return out;
}
