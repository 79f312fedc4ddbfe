// The image converter (qemu-img) as a child process: its checks of a qcow2 image, and its progress as bytes.
import { spawn } from 'node:child_process';
import { imageError } from './errors.js';
import type { LiveJob } from './image-jobs.js';

/** Refuses qcow2 images that would make qemu-img open other files, or that do not fit the volume. */
export async function checkQcow2(
  qemuImg: string,
  path: string,
  limit: number,
  signal: AbortSignal,
  fd: number | undefined,
): Promise<void> {
  const out = await runCapture(qemuImg, ['info', '--output=json', '-f', 'qcow2', path], signal, fd);
  let info: {
    'virtual-size'?: number;
    'backing-filename'?: string;
    'format-specific'?: { data?: { 'data-file'?: string } };
  };
  try {
    info = JSON.parse(out) as typeof info;
  } catch {
    throw imageError('qemu-img info printed no JSON');
  }
  if (info['backing-filename']) throw imageError('qcow2 images with a backing file are refused');
  if (info['format-specific']?.data?.['data-file'])
    throw imageError('qcow2 images with an external data file are refused');
  if ((info['virtual-size'] ?? 0) > limit)
    throw imageError(`the image (${info['virtual-size']} bytes) is larger than the volume (${limit} bytes)`);
}

function runCapture(cmd: string, args: string[], signal: AbortSignal, fd?: number): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe', ...(fd !== undefined ? [fd] : [])], signal });
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d.slice(0, 4096);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolvePromise(out);
      else reject(imageError(`${cmd} ${args[0]} failed: ${err.trim().split('\n').pop() ?? `exit ${code}`}`));
    });
  });
}

/** Runs qemu-img with -p and turns its "(NN.NN/100%)" lines into bytes_done. */
export function runWithProgress(
  cmd: string,
  args: string[],
  live: LiveJob,
  signal: AbortSignal,
  fd?: number,
): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe', ...(fd !== undefined ? [fd] : [])], signal });
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      const all = [...d.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)];
      const last = all[all.length - 1];
      if (last) live.bytesDone = Math.floor((Number(last[1]) / 100) * live.bytesTotal);
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d.slice(0, 4096);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`${cmd} ${args[0]} failed: ${err.trim().split('\n').pop() ?? `exit ${code}`}`));
    });
  });
}
