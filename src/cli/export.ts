// `sdshypervisor-csi export`: copy volume to image (Cinder's "copy volume to image") from the command line.
// The VBS does the work (EXPORT_IMAGE_REQ: a volume is read through a temporary snapshot, so the image is
// consistent while the volume is written) and writes only inside its image directories. When --out lies
// outside them and the VBS is on this host (unix socket), the image is exported into one of its directories
// under a hidden name and moved (or copied, sparse) to --out by us. Either way --out appears under its final
// name only when complete.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { link, open, rename, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, relative, isAbsolute, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, parseExportSettings } from '../config/config.js';
import { isValidName } from '../protocol/vbs.js';
import type { ImageJob } from '../sds/backend.js';
import { SdsClient } from '../sds/client.js';
import { isSdsError } from '../sds/errors.js';
import { EMBEDDED_TOKEN_FILE } from '../server/embedded-emulator.js';

export const EXPORT_USAGE = `Usage: sdshypervisor-csi export (--volume ID | --snapshot ID) --out FILE [options]

Writes a volume or a snapshot to an image file (copy volume to image).

  --volume ID          the volume (its CSI volume_id); read through a temporary snapshot, so it may be in use
  --snapshot ID        the snapshot (its CSI snapshot_id)
  --out FILE           the image file to write; it appears under this name only when complete
  --format raw|qcow2   image format (default raw; raw output is sparse)
  --overwrite          replace FILE if it exists
  --vbs-url ADDRS      VBS addresses (default: SDS_VBS_URL, else the embedded emulator's socket under
                       SDS_DATA_DIR when present, else 127.0.0.1)
  --vbs-port N         port for addresses without one (default: SDS_VBS_PORT, else 10599)
  --vbs-token-file F   file holding the socket-API token (default: SDS_VBS_TOKEN_FILE; SDS_VBS_TOKEN holds it)
  --timeout-ms N       give up after N ms (default 21600000, 6 h)
  --quiet              no progress lines on stderr

Exit status: 0 written, 1 failed, 2 bad arguments, 130 interrupted.`;

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_INTERRUPTED = 130;
const BLOCK = 4096;
const MiB = 1024 * 1024;

class UsageError extends Error {}
class ExportError extends Error {}

export interface ExportIo {
  stderr: (text: string) => void;
  stdout: (text: string) => void;
  /** where the settings' variables are read; default the process's environment */
  env?: NodeJS.ProcessEnv;
  /** where SIGINT/SIGTERM are listened for (the process, by default) */
  signals?: NodeJS.EventEmitter;
}

interface ExportArgs {
  volume?: string;
  snapshot?: string;
  out: string;
  format: 'raw' | 'qcow2';
  overwrite: boolean;
  vbsUrl: string;
  vbsPort: number;
  token?: string;
  timeoutMs: number;
  quiet: boolean;
}

function parseExportArgs(argv: string[], env: NodeJS.ProcessEnv | undefined): ExportArgs | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        volume: { type: 'string' },
        snapshot: { type: 'string' },
        out: { type: 'string' },
        format: { type: 'string' },
        overwrite: { type: 'boolean' },
        'vbs-url': { type: 'string' },
        'vbs-port': { type: 'string' },
        'vbs-token-file': { type: 'string' },
        'timeout-ms': { type: 'string' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const v = parsed.values;
  if (v.help) return 'help';
  if ((v.volume === undefined) === (v.snapshot === undefined))
    throw new UsageError('give exactly one of --volume and --snapshot');
  const id = (v.volume ?? v.snapshot)!;
  const flag = v.volume !== undefined ? '--volume' : '--snapshot';
  if (!isValidName(id))
    throw new UsageError(
      `${flag}: ${JSON.stringify(id)} is not a volume or snapshot id (1-96 characters of [A-Za-z0-9_.-])`,
    );
  if (v.out === undefined || v.out === '') throw new UsageError('--out FILE is required');
  if (v.out.endsWith('/')) throw new UsageError('--out must name a file, not a directory');
  const format = v.format ?? 'raw';
  if (format !== 'raw' && format !== 'qcow2')
    throw new UsageError(`--format must be raw or qcow2, not ${JSON.stringify(format)}`);
  const timeoutText = v['timeout-ms'] ?? '21600000';
  if (!/^\d{1,10}$/.test(timeoutText) || Number(timeoutText) < 1)
    throw new UsageError('--timeout-ms must be a positive whole number');
  // --vbs-url, --vbs-port, --vbs-token-file and the data directory: the driver's own settings.
  let shared;
  try {
    shared = parseExportSettings(v, env);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  let token = shared.vbsToken;
  const vbsUrl = shared.vbsUrl ?? defaultVbsUrl(shared.dataDir);
  // The embedded emulator of `npm start` always requires a token; without one given, the one it was started with.
  if (!token && vbsUrl === `unix://${embeddedSocket(shared.dataDir)}`) token = embeddedToken(shared.dataDir);
  return {
    ...(v.volume !== undefined ? { volume: v.volume } : {}),
    ...(v.snapshot !== undefined ? { snapshot: v.snapshot } : {}),
    out: resolve(v.out),
    format,
    overwrite: v.overwrite ?? false,
    vbsUrl,
    vbsPort: shared.vbsPort,
    ...(token ? { token } : {}),
    timeoutMs: Number(timeoutText),
    quiet: v.quiet ?? false,
  };
}

/** The embedded emulator's socket of `npm start` when it is there, else the product's default address. */
function defaultVbsUrl(dataDir: string): string {
  const socket = embeddedSocket(dataDir);
  return existsSync(socket) ? `unix://${socket}` : '127.0.0.1';
}

const embeddedSocket = (dataDir: string): string => join(dataDir, 'vbs.sock');

/** The token the driver wrote for its embedded emulator (src/server/embedded-emulator.ts), if any. */
function embeddedToken(dataDir: string): string | undefined {
  try {
    return readFileSync(join(dataDir, EMBEDDED_TOKEN_FILE), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function isInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

/** Runs the export command; resolves with the exit status. */
export async function runExport(argv: string[], io: ExportIo): Promise<number> {
  let args: ExportArgs | 'help';
  try {
    args = parseExportArgs(argv, io.env);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`sdshypervisor-csi export: ${err.message}\n${EXPORT_USAGE.split('\n')[0]}\n`);
      return EXIT_USAGE;
    }
    throw err;
  }
  if (args === 'help') {
    io.stdout(`${EXPORT_USAGE}\n`);
    return EXIT_OK;
  }
  let client: SdsClient;
  try {
    client = new SdsClient({
      addresses: args.vbsUrl,
      defaultPort: args.vbsPort,
      ...(args.token ? { token: args.token } : {}),
      longRequestTimeoutMs: args.timeoutMs,
    });
  } catch (err) {
    io.stderr(`sdshypervisor-csi export: ${(err as Error).message}\n`);
    return EXIT_USAGE;
  }
  const run = new ExportRun(client, args, io);
  try {
    return await run.execute();
  } catch (err) {
    const message = err instanceof ExportError || isSdsError(err) ? err.message : String((err as Error)?.stack ?? err);
    io.stderr(`sdshypervisor-csi export: ${message}\n`);
    return run.interrupted ? EXIT_INTERRUPTED : EXIT_FAILED;
  } finally {
    await run.cleanUp();
    client.close();
  }
}

class ExportRun {
  interrupted = false;
  /** files of ours to remove unless the run completes: the staged export and our .part copy */
  private readonly leftovers = new Set<string>();
  private readonly abort = new AbortController();
  private readonly subject: string;

  constructor(
    private readonly client: SdsClient,
    private readonly args: ExportArgs,
    private readonly io: ExportIo,
  ) {
    this.subject = args.volume !== undefined ? `volume ${args.volume}` : `snapshot ${args.snapshot}`;
  }

  async execute(): Promise<number> {
    const { args } = this;
    const outDir = dirname(args.out);
    if (!existsSync(outDir) || !statSync(outDir).isDirectory())
      throw new ExportError(`--out: the directory ${outDir} does not exist`);
    const out = join(realpathOr(outDir), basename(args.out));
    if (existsSync(out) && !args.overwrite)
      throw new ExportError(`--out: ${args.out} exists; add --overwrite to replace it`);

    const info = await this.client.systemInfo();
    const found =
      args.volume !== undefined
        ? await this.client.getVolume(args.volume)
        : await this.client.getSnapshot(args.snapshot!);
    if (!found) throw new ExportError(`${this.subject} does not exist`);

    const imageDirs = info.imageDirs ?? [];
    const local = this.client.addressList.every((a) => a.kind === 'unix');
    const direct = imageDirs.length === 0 || imageDirs.some((d) => isInside(realpathOr(d), out));
    let target: string;
    let staged: string | undefined;
    if (direct) {
      target = out;
    } else if (local) {
      staged = join(this.stagingDir(imageDirs, outDir), `.sdshypervisor-export-${randomUUID()}.${args.format}`);
      target = staged;
    } else {
      throw new ExportError(
        `--out: ${args.out} is outside the VBS's image directories (${imageDirs.join(', ')}), and the VBS is not on this host ` +
          `(${this.client.addressList.map((a) => a.text).join(', ')}): give --out inside one of them (on the VBS host), or run this on the VBS host`,
      );
    }

    const stopOnSignal = this.listenForSignals(staged ?? out);
    try {
      if (staged) this.leftovers.add(staged);
      const started = Date.now();
      const job = await this.client.exportImage({
        ...(args.volume !== undefined ? { volumeName: args.volume } : { snapshotName: args.snapshot! }),
        path: target,
        format: args.format,
        ...(args.overwrite && !staged ? { overwrite: true } : {}),
      });
      this.progress(
        `export: job ${job.id}: ${this.subject} → ${staged ? `${staged} (then ${out})` : out} (${args.format})`,
      );
      let lastShown = -1;
      const done = await this.client.waitImageJob(
        job.id,
        args.timeoutMs,
        { signal: this.abort.signal },
        (j: ImageJob) => {
          const pct = j.bytesTotal > 0 ? Math.floor((j.bytesDone / j.bytesTotal) * 100) : 0;
          if (pct !== lastShown)
            this.progress(`export: ${pct}% (${Math.floor(j.bytesDone / MiB)}/${Math.ceil(j.bytesTotal / MiB)} MiB)`);
          lastShown = pct;
        },
      );
      if (done.state !== 'done')
        throw new ExportError(`the VBS could not export ${this.subject}: ${done.error ?? done.state}`);
      if (this.interrupted) {
        // The VBS finished what we could not stop; what it wrote for us goes.
        if (!staged) await rm(out, { force: true });
        throw new ExportError(`interrupted; ${staged ? 'the staged image was' : `${out} was`} removed`);
      }
      if (staged) await this.moveInto(staged, out);
      const size = (await stat(out)).size;
      this.progress(
        `export: done: ${out} (${size} bytes, ${args.format}) in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
      this.io.stdout(`${out}\n`);
      return EXIT_OK;
    } finally {
      stopOnSignal();
    }
  }

  /** An image directory this host sees, on the same file system as the target when one is (a rename, no copy). */
  private stagingDir(imageDirs: string[], outDir: string): string {
    const usable = imageDirs.filter((d) => {
      try {
        return statSync(d).isDirectory();
      } catch {
        return false;
      }
    });
    if (usable.length === 0) {
      throw new ExportError(
        `--out: ${this.args.out} is outside the VBS's image directories (${imageDirs.join(', ')}), and none of them exists here to stage the export in`,
      );
    }
    const device = statSync(outDir).dev;
    return usable.find((d) => statSync(d).dev === device) ?? usable[0]!;
  }

  /** Moves the finished staged image to `out`: a rename on one file system, else a sparse copy to `.part` + rename. */
  private async moveInto(staged: string, out: string): Promise<void> {
    let source = staged;
    if ((await stat(staged)).dev !== (await stat(dirname(out))).dev) {
      const part = join(dirname(out), `.${basename(out)}.${randomUUID()}.part`);
      this.leftovers.add(part);
      this.progress(`export: copying to ${dirname(out)}`);
      await copySparse(staged, part);
      await rm(staged, { force: true });
      this.leftovers.delete(staged);
      source = part;
    }
    if (this.args.overwrite) {
      await rename(source, out);
    } else {
      // link(2) refuses a file that appeared meanwhile, where a rename would replace it.
      try {
        await link(source, out);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST')
          throw new ExportError(`--out: ${out} appeared meanwhile; add --overwrite to replace it`);
        throw err;
      }
      await unlink(source);
    }
    this.leftovers.delete(source);
  }

  /** First SIGINT/SIGTERM: let the VBS job end, then remove its file; a second: stop at once. */
  private listenForSignals(file: string): () => void {
    const emitter = this.io.signals ?? process;
    const onSignal = (): void => {
      if (this.interrupted) {
        this.io.stderr(`sdshypervisor-csi export: stopping now; the VBS job still runs and will leave ${file}\n`);
        this.leftovers.clear();
        this.abort.abort(new Error('interrupted twice'));
        return;
      }
      this.interrupted = true;
      this.io.stderr(
        'sdshypervisor-csi export: interrupted; waiting for the VBS job to end to remove its file (interrupt again to stop now)\n',
      );
    };
    emitter.on('SIGINT', onSignal);
    emitter.on('SIGTERM', onSignal);
    return () => {
      emitter.off('SIGINT', onSignal);
      emitter.off('SIGTERM', onSignal);
    };
  }

  private progress(line: string): void {
    if (!this.args.quiet) this.io.stderr(`${line}\n`);
  }

  async cleanUp(): Promise<void> {
    for (const file of this.leftovers) await rm(file, { force: true }).catch(() => undefined);
    this.leftovers.clear();
  }
}

/** Copies a file keeping its holes: all-zero 4 KiB blocks are skipped, the length is set at the end. */
export async function copySparse(src: string, dst: string): Promise<void> {
  const input = await open(src, 'r');
  try {
    const output = await open(dst, 'wx', 0o644);
    try {
      const size = (await input.stat()).size;
      const buffer = Buffer.alloc(4 * MiB);
      const zero = Buffer.alloc(BLOCK);
      for (let offset = 0; offset < size;) {
        const { bytesRead } = await input.read(buffer, 0, buffer.length, offset);
        if (bytesRead === 0) break;
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
      }
      await output.truncate(size);
      await output.sync();
    } finally {
      await output.close();
    }
  } finally {
    await input.close();
  }
}
