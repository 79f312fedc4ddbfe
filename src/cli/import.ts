// `sdshypervisor-csi import`: copy image to volume on the original level from the command line, as the Cinder
// driver did it: the volume attached on this host with sds_cli, the image written onto its device by
// `qemu-img convert` (the format said, never probed), the volume detached. A volume in use, or one that holds
// data (any non-zero byte) without --overwrite, is refused. In Kubernetes the native path is a CDI DataVolume
// (docs/features.md); on the extended level the VBS imports (StorageClass imageSource).
import { execFile } from 'node:child_process';
import { open, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { childEnv } from '../config/environment.js';
import { isConnectorError, KvConnector } from '../connector/index.js';
import { deviceSizeBytes } from '../mount/device.js';
import { isValidName, VolumeStatus } from '../protocol/vbs.js';
import { SdsClient } from '../sds/client.js';
import { isSdsError } from '../sds/errors.js';
import { negotiateLevel } from '../sds/level.js';
import { argsOrExit, imageFormat, parseToolArgs, TOOL_OPTIONS, toolSettings, UsageError } from './export-args.js';
import type { ExportIo } from './export.js';
import { ExportError as ImportError } from './host-copy.js';

export const IMPORT_USAGE = `Usage: sdshypervisor-csi import --volume ID --image FILE [options]

Writes an image file onto a volume through this host (copy image to volume, original protocol level).

  --volume ID          the volume (its CSI volume_id); must not be in use
  --image FILE         the image to write
  --format raw|qcow2   the image's format (default raw; never guessed from its bytes)
  --overwrite          write over a volume that already holds data
  --vbs-url ADDRS      VBS addresses (default: SDS_VBS_URL, else 127.0.0.1)
  --vbs-port N         port for addresses without one (default: SDS_VBS_PORT, else 10599)
  --vbs-protocol P     auto | original | extended (default: SDS_VBS_PROTOCOL, else auto)
  --sds-cli PATH       sds_cli (default: HUAWEISDSHYPERVISORCLI_PATH, else /usr/local/bin/sds/sds_cli)
  --quiet              no progress lines on stderr

Exit status: 0 written, 1 failed, 2 bad arguments, 130 interrupted.`;

interface ImportArgs {
  volume: string;
  image: string;
  format: 'raw' | 'qcow2';
  overwrite: boolean;
  vbsUrl: string;
  vbsPort: number;
  protocol: 'auto' | 'original' | 'extended';
  sdsCli?: string;
  cliEnv: NodeJS.ProcessEnv;
  quiet: boolean;
}

function parseImportArgs(argv: string[], env: NodeJS.ProcessEnv | undefined): ImportArgs | 'help' {
  const v = parseToolArgs(argv, {
    ...TOOL_OPTIONS,
    volume: { type: 'string' },
    image: { type: 'string' },
  });
  if (v.help) return 'help';
  if (v.volume === undefined || !isValidName(v.volume))
    throw new UsageError('--volume ID is required (1-96 characters of [A-Za-z0-9_.-])');
  if (v.image === undefined || v.image === '') throw new UsageError('--image FILE is required');
  const format = imageFormat(v.format);
  const shared = toolSettings(v, env);
  return {
    volume: v.volume,
    image: resolve(v.image),
    format,
    overwrite: v.overwrite ?? false,
    vbsUrl: shared.vbsUrl ?? '127.0.0.1',
    vbsPort: shared.vbsPort,
    protocol: shared.vbsProtocol,
    ...(shared.sdsCli !== undefined ? { sdsCli: shared.sdsCli } : {}),
    cliEnv: env ? { ...env } : childEnv(),
    quiet: v.quiet ?? false,
  };
}

/** The image's virtual size: the file's for raw, qemu-img's for qcow2. */
async function virtualSize(image: string, format: 'raw' | 'qcow2'): Promise<number> {
  const info = await stat(image).catch(() => undefined);
  if (!info?.isFile()) throw new ImportError(`--image: ${image} is not a readable file`);
  if (format === 'raw') return info.size;
  const json = await new Promise<string>((ok, fail) =>
    execFile('qemu-img', ['info', '--output=json', '-f', 'qcow2', image], { maxBuffer: 1024 * 1024 }, (err, out, e) =>
      err ? fail(new ImportError(`--image: not a qcow2 image: ${String(e).trim().slice(0, 300)}`)) : ok(out),
    ),
  );
  return Number((JSON.parse(json) as { 'virtual-size': number })['virtual-size']);
}

/** Whether any byte of the device's first `bytes` is not zero (reads until it finds one). */
async function holdsData(device: string, bytes: number, signal: AbortSignal): Promise<boolean> {
  const handle = await open(device, 'r');
  try {
    const buffer = Buffer.alloc(4 * 1024 * 1024);
    for (let offset = 0; offset < bytes;) {
      signal.throwIfAborted();
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, bytes - offset), offset);
      if (bytesRead === 0) return false;
      for (let i = 0; i < bytesRead; i++) if (buffer[i] !== 0) return true;
      offset += bytesRead;
    }
    return false;
  } finally {
    await handle.close();
  }
}

/** Runs the import command; resolves with the exit status. */
export async function runImport(argv: string[], io: ExportIo): Promise<number> {
  const a = argsOrExit('import', IMPORT_USAGE, () => parseImportArgs(argv, io.env), io);
  if (typeof a === 'number') return a;
  let client: SdsClient;
  try {
    client = new SdsClient({ addresses: a.vbsUrl, defaultPort: a.vbsPort });
  } catch (err) {
    io.stderr(`sdshypervisor-csi import: ${(err as Error).message}\n`);
    return 2;
  }
  const vbs = client;
  const say = (line: string): void => {
    if (!a.quiet) io.stderr(`${line}\n`);
  };
  const stopCopy = new AbortController();
  const stopAll = new AbortController();
  let interrupted = false;
  const onSignal = (): void => {
    if (interrupted) {
      io.stderr(
        `sdshypervisor-csi import: stopping now; ${a.volume} may stay attached here (sds_cli -c detach -v ${a.volume})\n`,
      );
      stopAll.abort(new ImportError('interrupted twice'));
      return;
    }
    interrupted = true;
    io.stderr('sdshypervisor-csi import: interrupted; stopping the copy and detaching (interrupt again to stop now)\n');
    stopCopy.abort(new ImportError('interrupted'));
  };
  const emitter = io.signals ?? process;
  emitter.on('SIGINT', onSignal);
  emitter.on('SIGTERM', onSignal);
  try {
    const size = await virtualSize(a.image, a.format);
    const level = await negotiateLevel(vbs, a.protocol);
    if (level.level !== 'original')
      throw new ImportError(
        'the VBS speaks the extended level, where it imports images itself: use a StorageClass imageSource (docs/features.md)',
      );
    vbs.setLevel('original');
    const opts = { signal: stopAll.signal };
    const volume = await vbs.getVolume(a.volume, opts);
    if (!volume) throw new ImportError(`volume ${a.volume} does not exist`);
    if (volume.status === VolumeStatus.IN_USE)
      throw new ImportError(`volume ${a.volume} is in use (attached on a host); detach it first`);
    const connector = new KvConnector({
      ...(a.sdsCli !== undefined ? { cliPath: a.sdsCli } : {}),
      env: a.cliEnv,
      originalCli: true,
      volumeExists: async (name, signal) => (await vbs.getVolume(name, signal ? { signal } : {})) !== undefined,
    });
    if ((await connector.queryDevice(a.volume, opts)) !== undefined)
      throw new ImportError(`volume ${a.volume} is attached on this host already (in use?); detach it first`);
    const device = await connector.attach(a.volume, opts);
    try {
      const deviceBytes = await deviceSizeBytes(device, opts);
      if (size > deviceBytes)
        throw new ImportError(`the image (${size} bytes) is larger than volume ${a.volume} (${deviceBytes} bytes)`);
      if (!a.overwrite && (await holdsData(device, deviceBytes, AbortSignal.any([stopCopy.signal, stopAll.signal]))))
        throw new ImportError(`volume ${a.volume} holds data; add --overwrite to write over it`);
      say(`import: ${a.image} (${a.format}, ${size} bytes) → volume ${a.volume} at ${device}`);
      const started = Date.now();
      await new Promise<void>((ok, fail) =>
        execFile(
          'qemu-img',
          ['convert', '-n', '-t', 'none', '-f', a.format, '-O', 'raw', a.image, device],
          { signal: AbortSignal.any([stopCopy.signal, stopAll.signal]), killSignal: 'SIGKILL', maxBuffer: 1024 * 1024 },
          (err, _out, e) =>
            err
              ? fail(interrupted ? err : new ImportError(`qemu-img convert failed: ${String(e).trim().slice(0, 500)}`))
              : ok(),
        ),
      );
      say(`import: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    } finally {
      await connector.detach(a.volume, opts);
    }
    io.stdout(`${a.volume}\n`);
    return 0;
  } catch (err) {
    if (interrupted) {
      io.stderr(`sdshypervisor-csi import: interrupted; volume ${a.volume} may hold part of the image\n`);
      return 130;
    }
    const told = err instanceof ImportError || isSdsError(err) || isConnectorError(err);
    io.stderr(`sdshypervisor-csi import: ${told ? err.message : String((err as Error)?.stack ?? err)}\n`);
    return 1;
  } finally {
    emitter.off('SIGINT', onSignal);
    emitter.off('SIGTERM', onSignal);
    vbs.close();
  }
}
