// Image files written on this host: a block device (or a file) copied to a raw image keeping its holes, or
// converted to qcow2 by qemu-img, and the finished file put under its final name. Used by the export command;
// on the original level the device is a temporary clone attached here with sds_cli.
import { execFile } from 'node:child_process';
import { link, open, rename, unlink } from 'node:fs/promises';

const BLOCK = 4096;
const CHUNK = 4 * 1024 * 1024;

export interface CopyOptions {
  /** stops the copy between chunks (or kills qemu-img); the partial file is the caller's to remove */
  signal?: AbortSignal;
  /** told of the bytes read so far */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
}

/** A failure the export command reports as its message alone. */
export class ExportError extends Error {}

/** The target file already exists where the caller asked not to replace one. */
export class TargetExistsError extends Error {
  override name = 'TargetExistsError';
}

/** Copies `sizeBytes` of `src` to the new file `dst` keeping holes: all-zero 4 KiB blocks are not written. */
export async function copySparseRange(
  src: string,
  dst: string,
  sizeBytes: number,
  opts: CopyOptions = {},
): Promise<void> {
  const input = await open(src, 'r');
  try {
    const output = await open(dst, 'wx', 0o644);
    try {
      const buffer = Buffer.alloc(CHUNK);
      const zero = Buffer.alloc(BLOCK);
      for (let offset = 0; offset < sizeBytes;) {
        opts.signal?.throwIfAborted();
        const want = Math.min(CHUNK, sizeBytes - offset);
        const { bytesRead } = await input.read(buffer, 0, want, offset);
        if (bytesRead === 0) throw new Error(`${src}: ended at ${offset} bytes, ${sizeBytes} expected`);
        let run = -1;
        for (let i = 0; i <= bytesRead; i += BLOCK) {
          const end = Math.min(i + BLOCK, bytesRead);
          const isZero = i >= bytesRead || buffer.subarray(i, end).equals(zero.subarray(0, end - i));
          if (!isZero && run < 0) run = i;
          if ((isZero || end === bytesRead) && run >= 0) {
            const stop = isZero ? i : end;
            await output.write(buffer, run, stop - run, offset + run);
            run = -1;
          }
        }
        offset += bytesRead;
        opts.onProgress?.(offset, sizeBytes);
      }
      await output.truncate(sizeBytes);
      await output.sync();
    } finally {
      await output.close();
    }
  } finally {
    await input.close();
  }
}

/** Copies a whole file keeping its holes. */
export async function copySparse(src: string, dst: string): Promise<void> {
  const handle = await open(src, 'r');
  const size = (await handle.stat()).size;
  await handle.close();
  await copySparseRange(src, dst, size);
}

/**
 * Converts the raw device (or file) `src` to the qcow2 file `dst` with qemu-img. `-f raw` is said, never
 * probed: a guest's bytes must not choose the format they are read as.
 */
export async function convertToQcow2(
  src: string,
  dst: string,
  opts: CopyOptions & { qemuImg?: string; sizeBytes?: number } = {},
): Promise<void> {
  const argv = ['convert', '-p', '-f', 'raw', '-O', 'qcow2', src, dst];
  await new Promise<void>((resolve, reject) => {
    const child = execFile(
      opts.qemuImg ?? 'qemu-img',
      argv,
      { maxBuffer: 1024 * 1024, killSignal: 'SIGKILL', ...(opts.signal ? { signal: opts.signal } : {}) },
      (err, _stdout, stderr) => {
        if (!err) resolve();
        else if (opts.signal?.aborted) reject(opts.signal.reason instanceof Error ? opts.signal.reason : err);
        else
          reject(new Error(`qemu-img convert to qcow2 failed: ${String(stderr).trim().slice(0, 500) || err.message}`));
      },
    );
    // `-p` prints "(12.34/100%)" as it goes.
    child.stdout?.on('data', (chunk: Buffer | string) => {
      const shown = /\((\d+(?:\.\d+)?)\/100%\)[^(]*$/.exec(String(chunk));
      if (shown && opts.sizeBytes !== undefined)
        opts.onProgress?.(Math.floor((Number(shown[1]) / 100) * opts.sizeBytes), opts.sizeBytes);
    });
  });
}

/**
 * Puts the finished file `source` under the name `out`. With `overwrite` a rename (which replaces); without,
 * link(2), which refuses a file that appeared meanwhile where a rename would replace it.
 */
export async function publishFile(source: string, out: string, overwrite: boolean): Promise<void> {
  if (overwrite) {
    await rename(source, out);
    return;
  }
  try {
    await link(source, out);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST')
      throw new TargetExistsError(`--out: ${out} appeared meanwhile; add --overwrite to replace it`);
    throw err;
  }
  await unlink(source);
}
