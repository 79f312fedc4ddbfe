// The export command's arguments: its own flags, and the VBS and sds_cli settings by the driver's own
// definitions (src/config/config.ts).
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError, parseExportSettings, type ExportSharedSettings } from '../config/config.js';
import { childEnv } from '../config/environment.js';
import { isValidName } from '../protocol/vbs.js';
import { defaultSdsCliPath, EMBEDDED_TOKEN_FILE } from '../server/embedded-emulator.js';

export const EXPORT_USAGE = `Usage: sdshypervisor-csi export (--volume ID | --snapshot ID) --out FILE [options]

Writes a volume or a snapshot to an image file (copy volume to image).

  --volume ID          the volume (its CSI volume_id); read through a temporary snapshot, so it may be in use
  --snapshot ID        the snapshot (its CSI snapshot_id)
  --out FILE           the image file to write; it appears under this name only when complete
  --format raw|qcow2   image format (default raw; raw output is sparse)
  --overwrite          replace FILE if it exists
  --size SIZE          the source's size (bytes, or with Ki/Mi/Gi/Ti); needed on the original level, which
                       does not tell it (a larger one pads the image with zeros, a smaller one is refused)
  --vbs-url ADDRS      VBS addresses (default: SDS_VBS_URL, else the embedded emulator's socket under
                       SDS_DATA_DIR when present, else 127.0.0.1)
  --vbs-port N         port for addresses without one (default: SDS_VBS_PORT, else 10599)
  --vbs-token-file F   file holding the socket-API token (default: SDS_VBS_TOKEN_FILE; SDS_VBS_TOKEN holds it)
  --vbs-protocol P     auto | original | extended (default: SDS_VBS_PROTOCOL, else auto: asked of the VBS)
  --sds-cli PATH       sds_cli, to attach the clone on the original level (default: HUAWEISDSHYPERVISORCLI_PATH,
                       else the embedded emulator's when its socket is used, else /usr/local/bin/sds/sds_cli)
  --timeout-ms N       give up after N ms (default 21600000, 6 h)
  --quiet              no progress lines on stderr

Exit status: 0 written, 1 failed, 2 bad arguments, 130 interrupted.`;

const MiB = 1024 * 1024;

export class UsageError extends Error {}

/** The image tools' command line: strict, no positionals; a misuse is a UsageError. */
export function parseToolArgs<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O) {
  try {
    return parseArgs({ args: argv, strict: true, allowPositionals: false, options }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** The options export and import share. */
export const TOOL_OPTIONS = {
  format: { type: 'string' },
  overwrite: { type: 'boolean' },
  'vbs-url': { type: 'string' },
  'vbs-port': { type: 'string' },
  'vbs-protocol': { type: 'string' },
  'sds-cli': { type: 'string' },
  quiet: { type: 'boolean' },
  help: { type: 'boolean' },
} as const;

/**
 * An image tool's parsed arguments, or the exit status once it printed the usage: 0 for --help, 2 (with the
 * usage line) for a UsageError.
 */
export function argsOrExit<A>(
  tool: string,
  usage: string,
  parse: () => A | 'help',
  io: { stdout: (text: string) => void; stderr: (text: string) => void },
): A | number {
  let args: A | 'help';
  try {
    args = parse();
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`sdshypervisor-csi ${tool}: ${err.message}\n${usage.split('\n')[0]}\n`);
      return 2;
    }
    throw err;
  }
  if (args === 'help') {
    io.stdout(`${usage}\n`);
    return 0;
  }
  return args;
}

/** --format of an image tool. */
export function imageFormat(text: string | undefined): 'raw' | 'qcow2' {
  const format = text ?? 'raw';
  if (format !== 'raw' && format !== 'qcow2')
    throw new UsageError(`--format must be raw or qcow2, not ${JSON.stringify(format)}`);
  return format;
}

/** The VBS and sds_cli settings an image tool shares with the driver; a bad one is a UsageError. */
export function toolSettings(
  flags: Readonly<Record<string, unknown>>,
  env: NodeJS.ProcessEnv | undefined,
): ExportSharedSettings {
  try {
    return parseExportSettings(flags, env);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
}

export interface ExportArgs {
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
  sizeBytes?: number;
  protocol: 'auto' | 'original' | 'extended';
  sdsCli?: string;
  /** the environment of sds_cli (SDS_KV_SOCKET) */
  cliEnv: NodeJS.ProcessEnv;
}

const SIZE_UNITS: Record<string, number> = { '': 1, Ki: 1024, Mi: MiB, Gi: 1024 * MiB, Ti: 1024 * 1024 * MiB };

function parseSize(text: string): number {
  const m = /^(\d{1,15})(Ki|Mi|Gi|Ti)?$/.exec(text);
  const bytes = m ? Number(m[1]) * SIZE_UNITS[m[2] ?? '']! : NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1)
    throw new UsageError(
      `--size must be a positive size in bytes, or with Ki, Mi, Gi or Ti, not ${JSON.stringify(text)}`,
    );
  return bytes;
}

export function parseExportArgs(argv: string[], env: NodeJS.ProcessEnv | undefined): ExportArgs | 'help' {
  const v = parseToolArgs(argv, {
    ...TOOL_OPTIONS,
    volume: { type: 'string' },
    snapshot: { type: 'string' },
    out: { type: 'string' },
    'vbs-token-file': { type: 'string' },
    size: { type: 'string' },
    'timeout-ms': { type: 'string' },
  });
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
  const format = imageFormat(v.format);
  const timeoutText = v['timeout-ms'] ?? '21600000';
  if (!/^\d{1,10}$/.test(timeoutText) || Number(timeoutText) < 1)
    throw new UsageError('--timeout-ms must be a positive whole number');
  const sizeBytes = v.size !== undefined ? parseSize(v.size) : undefined;
  // --vbs-url, --vbs-port, --vbs-token-file and the data directory: the driver's own settings.
  const shared = toolSettings(v, env);
  let token = shared.vbsToken;
  const vbsUrl = shared.vbsUrl ?? defaultVbsUrl(shared.dataDir);
  // The embedded emulator of `npm start` always requires a token; without one given, the one it was started with.
  const embedded = vbsUrl === `unix://${embeddedSocket(shared.dataDir)}`;
  if (!token && embedded) token = embeddedToken(shared.dataDir);
  // sds_cli finds its VBS through SDS_KV_SOCKET; beside the embedded emulator's socket, its KV socket.
  const cliEnv = env ? { ...env } : childEnv();
  if (embedded && !cliEnv.SDS_KV_SOCKET) cliEnv.SDS_KV_SOCKET = join(shared.dataDir, 'kv.sock');
  const sdsCli = shared.sdsCli ?? (embedded ? defaultSdsCliPath() : undefined);
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
    ...(sizeBytes !== undefined ? { sizeBytes } : {}),
    protocol: shared.vbsProtocol,
    ...(sdsCli !== undefined ? { sdsCli } : {}),
    cliEnv,
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
