// Driver configuration from flags and environment (docs/configuration.md). A flag wins over its variable.
// Validated by checks.ts; a bad value is reported with the flag and variable it came from.
import { readFileSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  absolute,
  list,
  mapped,
  matches,
  nonEmpty,
  oneOf,
  optional,
  text,
  wholeNumber,
  withDefault,
  yesNo,
  type Check,
  type CheckedValues,
} from './checks.js';
import { AddressError, parseAddressList } from '../sds/transport.js';

export interface Setting {
  flag: string;
  env?: string;
  help: string;
  /** the default, as a flag's value would give it (parsed and validated like one) */
  default?: string;
  /** how --help and the docs describe a default that is not a plain value, or that depends on others */
  shown?: string;
}

export const SETTINGS = {
  mode: { flag: 'mode', env: 'CSI_MODE', help: 'controller | node | all', default: 'all' },
  endpoint: {
    flag: 'endpoint',
    env: 'CSI_ENDPOINT',
    help: 'CSI gRPC endpoint, unix:///path',
    default: 'unix:///tmp/sdshypervisor-csi/csi.sock',
  },
  endpointMode: {
    flag: 'endpoint-mode',
    env: 'CSI_ENDPOINT_MODE',
    help: 'file mode of the CSI socket (octal)',
    default: '0600',
  },
  driverName: {
    flag: 'driver-name',
    env: 'CSI_DRIVER_NAME',
    help: 'driver name reported to the CO',
    default: 'csi.sdshypervisor.io',
  },
  vbsUrl: {
    flag: 'vbs-url',
    env: 'SDS_VBS_URL',
    help: 'comma-separated VBS addresses (host, host:port, tcp://host:port, unix:///path)',
    shown: "all mode: the embedded emulator's unix socket; otherwise 127.0.0.1",
  },
  vbsPort: { flag: 'vbs-port', env: 'SDS_VBS_PORT', help: 'VBS port for addresses without one', default: '10599' },
  vbsTokenFile: {
    flag: 'vbs-token-file',
    env: 'SDS_VBS_TOKEN_FILE',
    help: 'file holding the socket-API token (SDS_VBS_TOKEN holds it directly)',
  },
  vbsProtocol: {
    flag: 'vbs-protocol',
    env: 'SDS_VBS_PROTOCOL',
    help: 'auto | original | extended: the socket-API level (auto asks the VBS)',
    default: 'auto',
  },
  vbsPools: {
    flag: 'vbs-pools',
    env: 'SDS_VBS_POOLS',
    help: 'comma-separated pool ids the driver uses (needed on the original level)',
    shown: 'none: every pool the VBS lists',
  },
  vbsTimeoutMs: {
    flag: 'vbs-timeout-ms',
    env: 'SDS_VBS_TIMEOUT_MS',
    help: 'socket-API request timeout, ms',
    default: '30000',
  },
  hostId: {
    flag: 'host-id',
    env: 'SDS_HOST_ID',
    help: "this node's host id on the back end",
    shown: 'asked of the local VBS',
  },
  sdsCli: {
    flag: 'sds-cli',
    env: 'HUAWEISDSHYPERVISORCLI_PATH',
    help: 'path of sds_cli',
    shown: "/usr/local/bin/sds/sds_cli; all mode: the emulator's emulator/bin/sds_cli",
  },
  nodeName: { flag: 'node-name', env: 'NODE_NAME', help: 'Kubernetes Node name', shown: 'hostname' },
  topologyLabels: {
    flag: 'topology-labels',
    env: 'CSI_TOPOLOGY_LABELS',
    help: 'comma-separated Node label keys published as topology',
  },
  maxVolumesPerNode: {
    flag: 'max-volumes-per-node',
    env: 'CSI_MAX_VOLUMES_PER_NODE',
    help: 'reported by NodeGetInfo',
    default: '128',
  },
  metricsAddress: {
    flag: 'metrics-address',
    env: 'CSI_METRICS_ADDRESS',
    help: 'host:port for /metrics and /healthz; empty disables',
    default: '127.0.0.1:9810',
  },
  logLevel: {
    flag: 'log-level',
    env: 'LOG_LEVEL',
    help: 'trace | debug | info | warn | error | fatal | silent',
    default: 'info',
  },
  kubeconfig: {
    flag: 'kubeconfig',
    env: 'KUBECONFIG',
    help: 'kubeconfig path (in-cluster config is used when present)',
    shown: 'in-cluster config when present, otherwise none',
  },
  shutdownGraceMs: {
    flag: 'shutdown-grace-ms',
    env: 'CSI_SHUTDOWN_GRACE_MS',
    help: 'how long SIGTERM waits for in-flight RPCs, ms',
    default: '30000',
  },
  emulator: {
    flag: 'emulator',
    env: 'SDS_EMULATOR',
    help: 'start the embedded emulator (all mode)',
    shown: 'true in all mode',
  },
  dataDir: {
    flag: 'data-dir',
    env: 'SDS_DATA_DIR',
    help: "the embedded emulator's data directory",
    shown: '$XDG_STATE_HOME/sdshypervisor-csi (else ~/.local/state/sdshypervisor-csi)',
  },
} as const satisfies Record<string, Setting>;

export type SettingName = keyof typeof SETTINGS;

/** The embedded emulator's data directory when SDS_DATA_DIR does not name one. */
export function defaultDataDir(env: NodeJS.ProcessEnv): string {
  const state =
    env.XDG_STATE_HOME && env.XDG_STATE_HOME.startsWith('/') ? env.XDG_STATE_HOME : join(homedir(), '.local', 'state');
  return join(state, 'sdshypervisor-csi');
}

const DNS_SUBDOMAIN = /^[a-z0-9A-Z]([a-z0-9A-Z.-]{0,61}[a-z0-9A-Z])?$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

function checksFor(env: NodeJS.ProcessEnv) {
  const name96 = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$/;
  return {
    mode: oneOf('controller', 'node', 'all'),
    endpoint: text(matches(/^unix:\/\/?\/[^\0]+$/, 'must be unix:///absolute/path')),
    endpointMode: mapped(text(matches(/^0?[0-7]{3}$/, 'must be an octal file mode like 0600')), (v) => parseInt(v, 8)),
    driverName: text(matches(DNS_SUBDOMAIN, 'must be a DNS-1123 subdomain of at most 63 characters')),
    vbsUrl: optional(vbsAddressList),
    vbsPort: wholeNumber(1, 65535),
    vbsTokenFile: optional(text(nonEmpty)),
    vbsProtocol: oneOf('auto', 'original', 'extended'),
    vbsPools: withDefault(list(name96, 'each must be 1-96 characters of [A-Za-z0-9_.-]'), []),
    vbsTimeoutMs: wholeNumber(100, 3_600_000),
    hostId: optional(text(matches(name96, 'must be 1-96 characters of [A-Za-z0-9_.-]'))),
    sdsCli: optional(text(absolute)),
    nodeName: withDefault(text(nonEmpty), hostname()),
    topologyLabels: withDefault(list(LABEL_KEY, 'each must be a Kubernetes label key'), []),
    maxVolumesPerNode: wholeNumber(1, 1_000_000),
    metricsAddress: text(
      matches(/^(|\[[0-9A-Fa-f:.]+\]:\d{1,5}|[0-9A-Za-z.-]*:\d{1,5})$/, 'must be host:port, [v6]:port, :port or empty'),
      [(v) => !/:\d{1,5}$/.test(v) || Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, 'the port must be 0-65535'],
    ),
    logLevel: oneOf('trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'),
    kubeconfig: optional(text(nonEmpty)),
    shutdownGraceMs: wholeNumber(0, 600_000),
    emulator: optional(yesNo),
    dataDir: withDefault(text(absolute), defaultDataDir(env)),
  } satisfies Record<SettingName, Check<unknown>>;
}

/** A VBS address list, judged (and its problem worded) by the VBS client's own parser. */
const vbsAddressList: Check<string> = (raw) => {
  try {
    parseAddressList(raw ?? '');
    return { ok: true, value: raw ?? '' };
  } catch (err) {
    if (!(err instanceof AddressError)) throw err;
    return { ok: false, message: err.message };
  }
};

export type DriverConfig = CheckedValues<ReturnType<typeof checksFor>> & {
  /** the socket-API token, from SDS_VBS_TOKEN or --vbs-token-file; never logged */
  vbsToken?: string;
  /** whether to start the embedded emulator */
  startEmulator: boolean;
  /** --vbs-port or SDS_VBS_PORT was given: the embedded emulator then also listens on that TCP port */
  vbsPortGiven: boolean;
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export type ParsedCommandLine =
  { kind: 'help'; text: string } | { kind: 'version' } | { kind: 'run'; config: DriverConfig; positionals: string[] };

/** The default as --help and docs/configuration.md show it; undefined when there is none. */
export function shownDefault(s: Setting): string | undefined {
  return s.shown ?? s.default;
}

export function helpText(): string {
  const lines = [
    'Usage: sdshypervisor-csi [options]',
    '       sdshypervisor-csi export --help   (copy a volume or snapshot to an image file)',
    '       sdshypervisor-csi import --help   (copy an image file to a volume, original level, through this host)',
    '',
    'Options (flag / environment variable, default):',
  ];
  for (const s of Object.values(SETTINGS) as Setting[]) {
    lines.push(
      `  --${s.flag}${s.env ? ` / ${s.env}` : ''}${shownDefault(s) ? ` (default: ${shownDefault(s)})` : ''}`,
      `      ${s.help}`,
    );
  }
  lines.push('  -h, --help, --version');
  return lines.join('\n');
}

/** Parses argv (without node and script) and env into a validated configuration. Throws ConfigError. */
export function parseCommandLine(argv: string[], env: NodeJS.ProcessEnv = process.env): ParsedCommandLine {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
    version: { type: 'boolean' },
  };
  for (const s of Object.values(SETTINGS) as Setting[]) options[s.flag] = { type: 'string' };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, strict: true, allowPositionals: true });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message} (see --help)`);
  }
  if (parsed.values.help) return { kind: 'help', text: helpText() };
  if (parsed.values.version) return { kind: 'version' };

  const { config, origin } = resolveSettings(checksFor(env), (s) => parsed.values[s.flag], env);
  const vbsToken = readToken(config.vbsTokenFile, origin, env);
  const startEmulator = config.emulator ?? config.mode === 'all';
  if (startEmulator && config.mode !== 'all')
    throw new ConfigError(`${origin.emulator}: the embedded emulator runs only in --mode=all`);
  const vbsPortGiven = origin.vbsPort !== undefined;
  return { kind: 'run', config: { ...config, vbsToken, startEmulator, vbsPortGiven }, positionals: parsed.positionals };
}

type Origins = Record<string, string>;

/**
 * Each setting of `schema` from its flag (as `flagValue` gives it) or else its variable, validated; a bad value
 * is reported with the flag or variable it came from. Throws ConfigError.
 */
function resolveSettings<C extends Partial<Record<SettingName, Check<unknown>>>>(
  checks: C,
  flagValue: (s: Setting) => unknown,
  env: NodeJS.ProcessEnv,
): { config: CheckedValues<C>; origin: Origins } {
  const config: Record<string, unknown> = {};
  const origin: Origins = {};
  const messages: string[] = [];
  for (const name of Object.keys(checks) as SettingName[]) {
    const s: Setting = SETTINGS[name];
    const fromFlag = flagValue(s);
    const fromEnv = s.env ? env[s.env] : undefined;
    let raw: string | undefined;
    if (typeof fromFlag === 'string') {
      raw = fromFlag;
      origin[name] = `--${s.flag}`;
    } else if (fromEnv !== undefined && fromEnv !== '') {
      raw = fromEnv;
      origin[name] = s.env!;
    } else if (s.default !== undefined) {
      raw = s.default;
    }
    const result = checks[name]!(raw);
    if (result.ok) {
      config[name] = result.value;
      continue;
    }
    const where = origin[name] ?? `--${s.flag}`;
    // An item of a list setting: say which (--topology-labels[1]).
    const item = result.item === undefined ? '' : `[${result.item}]`;
    messages.push(`${where}${item}: ${result.message}`);
  }
  if (messages.length) throw new ConfigError(`invalid configuration: ${messages.join('; ')}`);
  return { config: config as CheckedValues<C>, origin };
}

/** The socket-API token: from the token file when one is set, else SDS_VBS_TOKEN; checked. Throws ConfigError. */
function readToken(tokenFile: string | undefined, origin: Origins, env: NodeJS.ProcessEnv): string | undefined {
  let vbsToken = env.SDS_VBS_TOKEN || undefined;
  let tokenOrigin = 'SDS_VBS_TOKEN';
  if (tokenFile) {
    try {
      vbsToken = readFileSync(tokenFile, 'utf8').trim();
    } catch (err) {
      throw new ConfigError(
        `${origin.vbsTokenFile}: cannot read the token file: ${(err as NodeJS.ErrnoException).code ?? err}`,
      );
    }
    if (!vbsToken) throw new ConfigError(`${origin.vbsTokenFile}: the token file is empty`);
    tokenOrigin = origin.vbsTokenFile!;
  }
  // Checked here (the VBS client checks it too) so a bad token stops the start with exit 2; never quoted.
  if (vbsToken !== undefined && !/^[\x21-\x7e]{1,4096}$/.test(vbsToken)) {
    throw new ConfigError(`${tokenOrigin}: the token must be 1-4096 printable ASCII characters without spaces`);
  }
  return vbsToken;
}

/** The settings the export subcommand shares with the driver (src/cli/export.ts). */
export interface ExportSharedSettings {
  vbsUrl: string | undefined;
  vbsPort: number;
  vbsToken: string | undefined;
  dataDir: string;
  /** the socket-API level: asked of the VBS (auto) or given */
  vbsProtocol: 'auto' | 'original' | 'extended';
  /** sds_cli, for the original level's export through this host (undefined: the connector's default) */
  sdsCli: string | undefined;
}

/**
 * The export subcommand's VBS settings, by the driver's own definitions (the same flags, variables,
 * defaults, validation and token check). `flags` holds the flag values given, by flag name. Throws ConfigError.
 */
export function parseExportSettings(
  flags: Readonly<Record<string, unknown>>,
  env: NodeJS.ProcessEnv = process.env,
): ExportSharedSettings {
  const { vbsUrl, vbsPort, vbsTokenFile, dataDir, vbsProtocol, sdsCli } = checksFor(env);
  const { config, origin } = resolveSettings(
    { vbsUrl, vbsPort, vbsTokenFile, dataDir, vbsProtocol, sdsCli },
    (s) => flags[s.flag],
    env,
  );
  return {
    vbsUrl: config.vbsUrl,
    vbsPort: config.vbsPort,
    vbsToken: readToken(config.vbsTokenFile, origin, env),
    dataDir: config.dataDir,
    vbsProtocol: config.vbsProtocol,
    sdsCli: config.sdsCli,
  };
}
