// `sdshypervisor-csi export` on the original level: the command's side of host-export.ts. The image is
// written to a hidden `.part` file beside --out, named after --out so a rerun removes what a crashed run
// left, and put under its name only when complete. The first SIGINT/SIGTERM stops the copy and removes the
// temporaries (clone, snapshot, file); a second stops at once, and a rerun of the same command removes them.
import { rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { KvConnector } from '../connector/index.js';
import type { SdsClient } from '../sds/client.js';
import type { ExportArgs } from './export-args.js';
import type { ExportIo } from './export.js';
import { listenForInterrupts } from './signals.js';
import { ExportError, publishFile } from './host-copy.js';
import { exportThroughHost, exportTemporaries } from './host-export.js';

const EXIT_OK = 0;

/** The hidden file an export to `out` is written to: one name per --out, so a rerun finds a crashed run's. */
export const partFileFor = (out: string): string => join(dirname(out), `.${basename(out)}.sdshypervisor-export.part`);

export class HostExportRun {
  interrupted = false;
  private readonly stopCopy = new AbortController();
  private readonly stopAll = new AbortController();
  private readonly part: string;
  private partOurs = false;

  constructor(
    private readonly client: SdsClient,
    private readonly args: ExportArgs,
    private readonly io: ExportIo,
    private readonly out: string,
  ) {
    this.part = partFileFor(out);
  }

  async execute(): Promise<number> {
    const { args, out } = this;
    const subject = args.volume !== undefined ? `volume ${args.volume}` : `snapshot ${args.snapshot}`;
    if (args.sizeBytes === undefined)
      throw new ExportError(
        `--size is needed on the original protocol level (the VBS does not tell the size of ${subject}): give its size, e.g. the PersistentVolume's capacity`,
      );
    const opts = { signal: this.stopAll.signal };
    const found =
      args.volume !== undefined
        ? await this.client.getVolume(args.volume, opts)
        : await this.client.getSnapshot(args.snapshot!, opts);
    if (!found) throw new ExportError(`${subject} does not exist`);

    const connector = new KvConnector({
      ...(args.sdsCli ? { cliPath: args.sdsCli } : {}),
      env: args.cliEnv,
      originalCli: true,
      volumeExists: async (name, signal) => (await this.client.getVolume(name, signal ? { signal } : {})) !== undefined,
    });
    const stopListening = this.listenForSignals();
    try {
      const started = Date.now();
      // Ours by its name: a crashed run's is replaced.
      await rm(this.part, { force: true });
      this.partOurs = true;
      await exportThroughHost(
        { client: this.client, connector, progress: (line) => this.progress(line) },
        {
          ...(args.volume !== undefined ? { volume: args.volume } : { snapshot: args.snapshot! }),
          sizeBytes: args.sizeBytes,
          format: args.format,
          out,
          part: this.part,
          stopCopy: this.stopCopy.signal,
          stopAll: this.stopAll.signal,
        },
      );
      if (this.interrupted) throw new ExportError('interrupted; nothing was written');
      await publishFile(this.part, out, args.overwrite);
      this.partOurs = false;
      const size = (await stat(out)).size;
      this.progress(
        `export: done: ${out} (${size} bytes, ${args.format}) in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
      this.io.stdout(`${out}\n`);
      return EXIT_OK;
    } catch (err) {
      if (this.interrupted && (this.stopCopy.signal.aborted || this.stopAll.signal.aborted))
        throw new ExportError(
          this.stopAll.signal.aborted ? this.leftoverNote() : 'interrupted; the temporaries were removed',
        );
      throw err;
    } finally {
      stopListening();
    }
  }

  private leftoverNote(): string {
    const names = exportTemporaries(this.args, this.out);
    return (
      `stopped at once; what is left (${[names.clone, names.snapshot].filter(Boolean).join(', ')}) is removed ` +
      'by running the same command again'
    );
  }

  private listenForSignals(): () => void {
    const onSignal = (): void => {
      if (this.interrupted) {
        this.io.stderr(`sdshypervisor-csi export: stopping now; ${this.leftoverNote()}\n`);
        this.stopAll.abort(new ExportError('interrupted twice'));
        return;
      }
      this.interrupted = true;
      this.io.stderr(
        'sdshypervisor-csi export: interrupted; stopping the copy and removing the temporary clone and snapshot (interrupt again to stop now)\n',
      );
      this.stopCopy.abort(new ExportError('interrupted'));
    };
    return listenForInterrupts(this.io.signals ?? process, onSignal);
  }

  private progress(line: string): void {
    if (!this.args.quiet) this.io.stderr(`${line}\n`);
  }

  async cleanUp(): Promise<void> {
    if (this.partOurs) await rm(this.part, { force: true }).catch(() => undefined);
    this.partOurs = false;
  }
}
