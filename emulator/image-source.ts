// Where an import reads from (a file in an image directory, or http(s)) and how its bytes land in a file.
import type { Hash } from 'node:crypto';
import { closeSync, createReadStream, promises as fsp, readSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Key } from '../src/protocol/catalog.js';
import { imageError, invalid } from './errors.js';
import { MiB } from './files.js';
import { openHttp, type HttpSource } from './image-http.js';
import { pathError, type ImageJobHost, type LiveJob } from './image-jobs.js';
import { openImageForRead, type OpenedImage } from './safe-paths.js';

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
const BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

export type Source =
  { kind: 'file'; path: string; fd: number; size: number; head: Buffer; othersCanWrite: boolean } | HttpSource;

/**
 * Formats recognised by their first bytes that this VBS cannot read. With image_format=auto they are refused
 * up front, rather than imported byte for byte as if they were a raw disk.
 */
export function unreadableFormat(head: Buffer): string | undefined {
  const at = (offset: number, magic: string): boolean =>
    head.length >= offset + magic.length && head.toString('latin1', offset, offset + magic.length) === magic;
  if (at(0, 'KDMV') || at(0, '# Disk DescriptorFile')) return 'vmdk';
  if (at(0, 'vhdxfile')) return 'vhdx';
  if (at(0, 'conectix')) return 'vhd';
  if (at(0, 'QED\0')) return 'qed';
  if (head.length >= 0x44 && head.readUInt32LE(0x40) === 0xbeda107f) return 'vdi';
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip-compressed';
  if (at(0, '\xfd7zXZ\0')) return 'xz-compressed';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd-compressed';
  if (at(0, 'BZh') && head.length >= 4 && head[3]! >= 0x31 && head[3]! <= 0x39) return 'bzip2-compressed';
  return undefined;
}

export async function openSource(host: ImageJobHost, url: string): Promise<Source> {
  let path: string | undefined;
  if (url.startsWith('/')) path = url;
  else if (url.startsWith('file:')) {
    try {
      path = fileURLToPath(url);
    } catch {
      throw invalid(Key.IMAGE_URL, 'is not a valid file:// URL');
    }
  } else if (/^https?:\/\//i.test(url)) {
    return openHttp(url, host.urlAllow);
  } else {
    throw invalid(Key.IMAGE_URL, 'must be an absolute path, a file:// URL or an http(s):// URL');
  }
  let opened: OpenedImage;
  try {
    opened = openImageForRead(path, Key.IMAGE_URL, host.imageDirs());
  } catch (err) {
    throw pathError(err);
  }
  try {
    const head = Buffer.alloc(512);
    const n = readSync(opened.fd, head, 0, head.length, 0);
    return {
      kind: 'file',
      path: opened.real,
      fd: opened.fd,
      size: opened.size,
      head: head.subarray(0, n),
      othersCanWrite: opened.othersCanWrite,
    };
  } catch (err) {
    closeSync(opened.fd);
    throw imageError(`image_url: cannot read ${path}: ${(err as Error).message}`);
  }
}

export function closeSource(source: Source): void {
  if (source.kind === 'file') {
    try {
      closeSync(source.fd);
    } catch {
      /* already closed */
    }
  } else if (!source.response.destroyed) {
    source.response.destroy();
  }
}

/** The whole source as a stream of chunks: the probed head first, then the rest. */
export async function* sourceStream(source: Source): AsyncGenerator<Buffer> {
  if (source.kind === 'file') {
    const stream = createReadStream('', { fd: source.fd, start: 0, highWaterMark: MiB, autoClose: false });
    for await (const chunk of stream) yield chunk as Buffer;
    return;
  }
  if (source.head.length > 0) yield source.head;
  for await (const chunk of source.response as Readable) yield chunk as Buffer;
}

/** Writes a stream into a pre-sized sparse file, skipping all-zero 4 KiB blocks so the file stays sparse. */
export async function writeSparse(
  chunks: AsyncIterable<Buffer>,
  path: string,
  limit: number,
  hash: Hash | undefined,
  live: LiveJob,
  signal: AbortSignal,
): Promise<void> {
  const fh = await fsp.open(path, 'r+');
  try {
    const pending = Buffer.alloc(4 * MiB);
    let fill = 0;
    let offset = 0;
    const flush = async (final: boolean): Promise<void> => {
      const usable = final ? fill : fill - (fill % BLOCK);
      let runStart = -1;
      for (let i = 0; i < usable; i += BLOCK) {
        const end = Math.min(i + BLOCK, usable);
        const block = pending.subarray(i, end);
        const zero = block.length === BLOCK ? block.equals(ZERO_BLOCK) : block.every((b) => b === 0);
        if (!zero && runStart < 0) runStart = i;
        if (zero && runStart >= 0) {
          await fh.write(pending, runStart, i - runStart, offset + runStart);
          runStart = -1;
        }
      }
      if (runStart >= 0) await fh.write(pending, runStart, usable - runStart, offset + runStart);
      pending.copy(pending, 0, usable, fill);
      fill -= usable;
      offset += usable;
    };
    for await (const chunk of chunks) {
      if (signal.aborted) throw signal.reason;
      hash?.update(chunk);
      let pos = 0;
      while (pos < chunk.length) {
        const n = Math.min(chunk.length - pos, pending.length - fill);
        chunk.copy(pending, fill, pos, pos + n);
        fill += n;
        pos += n;
        if (offset + fill > limit) throw imageError(`the image is larger than the volume (${limit} bytes)`);
        if (fill === pending.length) await flush(false);
      }
      live.bytesDone = offset + fill;
    }
    await flush(true);
    live.bytesDone = offset;
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export async function hashFile(fd: number, hash: Hash, live: LiveJob, signal: AbortSignal): Promise<void> {
  const stream = createReadStream('', { fd, start: 0, highWaterMark: MiB, autoClose: false });
  live.bytesDone = 0;
  for await (const chunk of stream) {
    if (signal.aborted) throw signal.reason;
    hash.update(chunk as Buffer);
    live.bytesDone += (chunk as Buffer).length;
  }
}

export async function download(
  chunks: AsyncIterable<Buffer>,
  path: string,
  hash: Hash | undefined,
  live: LiveJob,
  signal: AbortSignal,
): Promise<void> {
  const fh = await fsp.open(path, 'wx', 0o600);
  try {
    live.bytesDone = 0;
    for await (const chunk of chunks) {
      if (signal.aborted) throw signal.reason;
      hash?.update(chunk);
      await fh.write(chunk);
      live.bytesDone += chunk.length;
    }
  } finally {
    await fh.close();
  }
}
