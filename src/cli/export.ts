// `sdshypervisor-csi export`: copy volume to image (Cinder's "copy volume to image") from the command line.
// The VBS does the work (EXPORT_IMAGE_REQ: a volume is read through a temporary snapshot, so the image is
// consistent while the volume is written) and writes only inside its image directories. When --out lies
// outside them and the VBS is on this host (unix socket), the image is exported into one of its directories
// under a hidden name and moved (or copied, sparse) to --out by us. Either way --out appears under its final
// name only when complete. On the original level (no export request) this host copies the data itself
// through a temporary clone (host-export.ts).
import { randomUUID } from 'node:crypto';
import { existsSync, realpathSync, statSync } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, isAbsolute } from 'node:path';
import type { ImageJob } from '../sds/backend.js';
import { SdsClient } from '../sds/client.js';
import { isSdsError } from '../sds/errors.js';
import { negotiateLevel } from '../sds/level.js';
import type { SystemInfo } from '../sds/backend.js';
import { isConnectorError } from '../connector/index.js';
import { argsOrExit, EXPORT_USAGE, parseExportArgs, type ExportArgs } from './export-args.js';
import { copySparse, ExportError, publishFile, TargetExistsError } from './host-copy.js';
import { HostExportRun } from './host-export-run.js';
import { listenForInterrupts } from './signals.js';

export { copySparse, ExportError } from './host-copy.js';
export { EXPORT_USAGE } from './export-args.js';

const EXIT_OK = 0;
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_INTERRUPTED = 130;
const MiB = 1024 * 1024;

export interface ExportIo {
  stderr: (text: string) => void;
  stdout: (text: string) => void;
  /** where the settings' variables are read; default the process's environment */
  env?: NodeJS.ProcessEnv;
  /** where SIGINT/SIGTERM are listened for (the process, by default) */
  signals?: NodeJS.EventEmitter;
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
  const args = argsOrExit('export', EXPORT_USAGE, () => parseExportArgs(argv, io.env), io);
  if (typeof args === 'number') return args;
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
  let run: ExportRun | HostExportRun | undefined;
  try {
    const out = checkOut(args);
    const negotiated = await negotiateLevel(client, args.protocol);
    if (negotiated.level === 'original') {
      client.setLevel('original');
      run = new HostExportRun(client, args, io, out);
    } else {
      run = new ExportRun(client, args, io, out, negotiated.system);
    }
    return await run.execute();
  } catch (err) {
    const told =
      err instanceof ExportError || err instanceof TargetExistsError || isSdsError(err) || isConnectorError(err);
    const message = told ? err.message : String((err as Error)?.stack ?? err);
    io.stderr(`sdshypervisor-csi export: ${message}\n`);
    return run?.interrupted ? EXIT_INTERRUPTED : EXIT_FAILED;
  } finally {
    await run?.cleanUp();
    client.close();
  }
}

/** --out's directory exists and --out is free (or may be replaced); returns --out in its real directory. */
function checkOut(args: ExportArgs): string {
  const outDir = dirname(args.out);
  if (!existsSync(outDir) || !statSync(outDir).isDirectory())
    throw new ExportError(`--out: the directory ${outDir} does not exist`);
  const out = join(realpathOr(outDir), basename(args.out));
  if (existsSync(out) && !args.overwrite)
    throw new ExportError(`--out: ${args.out} exists; add --overwrite to replace it`);
  return out;
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
    private readonly out: string,
    private readonly system: SystemInfo | undefined,
  ) {
    this.subject = args.volume !== undefined ? `volume ${args.volume}` : `snapshot ${args.snapshot}`;
  }

  async execute(): Promise<number> {
    const { args, out } = this;
    const outDir = dirname(out);
    const info = this.system ?? (await this.client.systemInfo());
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
    await publishFile(source, out, this.args.overwrite);
    this.leftovers.delete(source);
  }

  /** First SIGINT/SIGTERM: let the VBS job end, then remove its file; a second: stop at once. */
  private listenForSignals(file: string): () => void {
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
    return listenForInterrupts(this.io.signals ?? process, onSignal);
  }

  private progress(line: string): void {
    if (!this.args.quiet) this.io.stderr(`${line}\n`);
  }

  async cleanUp(): Promise<void> {
    for (const file of this.leftovers) await rm(file, { force: true }).catch(() => undefined);
    this.leftovers.clear();
  }
}
