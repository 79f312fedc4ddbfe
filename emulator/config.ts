// Settings of the emulator daemon (docs/configuration.md, "The emulator"): flags win over environment
// variables; every value is checked (emulator/config-check.ts) and a bad one names the setting it came from.
import { existsSync, readFileSync } from 'node:fs';
import { hostname, homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { DEFAULT_VBS_PORT } from '../src/protocol/vbs.js';
import { checkSettings, SettingIssue } from './config-check.js';
import { ConfigError, defaultValue, fromEnv, parseArgv, settingsHelp, type SettingDef } from './config-parse.js';
import { checkPoolHosts, type PoolSpec } from './pool-spec.js';
import { readToken } from './token-setting.js';

export { ConfigError, shownDefault, type SettingDef } from './config-parse.js';
export { parseSize, type PoolSpec } from './pool-spec.js';

export type PoolType = 'auto' | 'xfs-reflink' | 'directory';

/** Which socket API the emulator answers: the 2014 product's nine requests (`original`) or ours (`extended`). */
export type EmulatorProtocol = 'original' | 'extended';

export interface EmulatorConfig {
  dataDir: string;
  hostId: string;
  extraHosts: string[];
  /** more hosts with a data plane of their own: sockets under <data>/hosts/<id>/ (emulator/hosts.ts) */
  dataHosts: string[];
  listenHost: string;
  /** -1 disables TCP, 0 picks a free port */
  listenPort: number;
  controlSocket: string;
  kvSocket: string;
  /** undefined: no token required */
  token: string | undefined;
  pools: PoolSpec[];
  /**
   * The hosts that see each pool's LUN, for pools named by --pool-hosts; a pool not named is seen by every
   * host of the back end.
   */
  poolHosts: Record<string, string[]>;
  poolType: PoolType;
  maxOversubscription: number;
  imageDirs: string[];
  /** hosts and CIDRs http(s) imports may reach even when loopback, link-local or unspecified */
  imageUrlAllow: string[];
  keepMounted: boolean;
  logLevel: string;
  requestQuietMs: number;
  shutdownGraceMs: number;
  /** cgroup v1 blkio directory whose throttle files limit attached volumes; '' disables */
  blkioCgroup: string;
  /** the qemu-img that reads and writes qcow2 images; '' when there is none (raw images only) */
  qemuImg: string;
  /** the protocol level served (docs/socket-api.md §1.4 for `original`) */
  protocol: EmulatorProtocol;
}

export const SETTINGS = {
  dataDir: {
    flag: 'data-dir',
    env: ['SDS_DATA_DIR'],
    kind: 'string',
    help: 'data directory (database, LUN images, pool mounts, sockets)',
    shown: '$XDG_STATE_HOME/sdshypervisor-csi (else ~/.local/state/sdshypervisor-csi)',
  },
  hostId: {
    flag: 'host-id',
    env: ['SDS_HOST_ID'],
    kind: 'string',
    help: "this VBS's host id",
    shown: 'host-<hostname>',
  },
  extraHosts: {
    flag: 'extra-host',
    env: ['SDS_EXTRA_HOSTS'],
    kind: 'list',
    help: 'more host ids the back end knows (repeatable; env: comma-separated)',
  },
  dataHosts: {
    flag: 'data-host',
    env: ['SDS_DATA_HOSTS'],
    kind: 'list',
    help: 'more hosts with a data plane of their own, served on <data>/hosts/<id>/{vbs,kv,presence}.sock (repeatable; env: comma-separated)',
  },
  listenHost: {
    flag: 'listen-host',
    env: ['SDS_LISTEN_HOST'],
    kind: 'string',
    help: 'TCP listen address',
    default: '127.0.0.1',
  },
  listenPort: {
    flag: 'listen-port',
    env: ['SDS_VBS_PORT'],
    kind: 'string',
    help: 'TCP port (0 = a free port, -1 = no TCP)',
    default: String(DEFAULT_VBS_PORT),
  },
  controlSocket: {
    flag: 'control-socket',
    env: ['SDS_CONTROL_SOCKET'],
    kind: 'string',
    help: 'unix socket of the socket API',
    shown: '<data>/vbs.sock',
  },
  kvSocket: {
    flag: 'kv-socket',
    env: ['SDS_KV_SOCKET'],
    kind: 'string',
    help: 'unix socket of the KV data plane used by sds_cli',
    shown: '<data>/kv.sock',
  },
  tokenFile: {
    flag: 'token-file',
    env: ['SDS_VBS_TOKEN_FILE'],
    kind: 'string',
    help: 'file holding the socket-API token (env SDS_VBS_TOKEN holds the token itself; the file wins)',
  },
  pools: {
    flag: 'pool',
    env: ['SDS_POOLS'],
    kind: 'list',
    help: 'pool as name[:size][:path] (repeatable; env: comma-separated)',
    default: 'pool0',
    shown: 'one pool pool0 of 64 GiB as a sparse LUN image in the data dir',
  },
  poolHosts: {
    flag: 'pool-hosts',
    env: ['SDS_POOL_HOSTS'],
    kind: 'list',
    help: 'the hosts that see a pool, as pool=host+host (repeatable; flag and env: comma-separated); a pool not named is seen by every host',
    shown: 'every pool seen by every host',
  },
  poolType: {
    flag: 'pool-type',
    env: ['SDS_POOL_TYPE'],
    kind: 'string',
    help: 'auto (xfs-reflink when root and mkfs.xfs are available, else directory), xfs-reflink or directory',
    default: 'auto',
  },
  maxOversubscription: {
    flag: 'max-oversubscription',
    env: ['SDS_MAX_OVERSUBSCRIPTION'],
    kind: 'string',
    help: 'ratio of provisioned to total capacity thin volumes may reach',
    default: '4.0',
  },
  imageDirs: {
    flag: 'image-dir',
    env: ['SDS_IMAGE_DIRS'],
    kind: 'list',
    help: 'directory image import/export may use (repeatable; env: comma-separated); a directory others can write (such as /tmp) serves imports only, never exports',
    shown: '<data>/images',
  },
  imageUrlAllow: {
    flag: 'image-url-allow',
    env: ['SDS_IMAGE_URL_ALLOW'],
    kind: 'list',
    help: 'host name, IP address or CIDR http(s) imports may reach although loopback, link-local or unspecified (refused by default; repeatable; env: comma-separated)',
  },
  keepMounted: {
    flag: 'keep-mounted',
    env: ['SDS_KEEP_MOUNTED'],
    kind: 'bool',
    help: 'on shutdown, leave volume loop devices attached and pools mounted',
    default: 'false',
    shown: 'off',
  },
  logLevel: { flag: 'log-level', env: ['LOG_LEVEL'], kind: 'string', help: 'pino level', default: 'info' },
  requestQuietMs: {
    flag: 'request-quiet-ms',
    env: ['SDS_REQUEST_QUIET_MS'],
    kind: 'string',
    help: 'quiet period that ends a request sent without an empty line',
    default: '25',
  },
  shutdownGraceMs: {
    flag: 'shutdown-grace-ms',
    env: ['SDS_SHUTDOWN_GRACE_MS'],
    kind: 'string',
    help: 'how long SIGTERM waits for in-flight operations',
    default: '10000',
  },
  blkioCgroup: {
    flag: 'blkio-cgroup',
    env: ['SDS_BLKIO_CGROUP'],
    kind: 'string',
    help: 'cgroup v1 blkio directory for QoS throttling; empty disables',
    default: '/sys/fs/cgroup/blkio',
  },
  protocol: {
    flag: 'protocol',
    env: ['SDS_EMULATOR_PROTOCOL'],
    kind: 'string',
    help: 'extended (every request of docs/socket-api.md) or original (only the nine requests of the 2014 product, in their original form)',
    default: 'extended',
  },
  qemuImg: {
    flag: 'qemu-img',
    env: ['SDS_QEMU_IMG'],
    kind: 'string',
    help: 'path of qemu-img for qcow2 images ("none": raw images only)',
    shown: 'qemu-img found in PATH at start',
  },
} satisfies Record<string, SettingDef>;

type SettingKey = keyof typeof SETTINGS;

export function helpText(): string {
  const lines = [
    'Usage: sdshypervisor-emulator [options]',
    '',
    'The SDSHypervisor emulator: serves the VBS socket API (TCP and unix socket) and the KV data plane of',
    'sds_cli; keeps volumes in XFS-reflink pools on loop-mounted LUN images. See emulator/README.md.',
    '',
    'Options (a flag wins over its environment variable):',
    ...settingsHelp(SETTINGS),
  ];
  lines.push('  --help      print this help', '  --version   print the version');
  return lines.join('\n') + '\n';
}

function defaultDataDir(env: NodeJS.ProcessEnv): string {
  const state =
    env.XDG_STATE_HOME && isAbsolute(env.XDG_STATE_HOME) ? env.XDG_STATE_HOME : join(homedir(), '.local', 'state');
  return join(state, 'sdshypervisor-csi');
}

export interface ParsedCommandLine {
  help: boolean;
  version: boolean;
  config?: EmulatorConfig;
}

/** Parses argv (without node and script) and the environment. Throws ConfigError naming the setting. */
export function loadConfig(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  readFile: (p: string) => string = (p) => readFileSync(p, 'utf8'),
): ParsedCommandLine {
  const { raw: fromArgs, help, version } = parseArgv(SETTINGS, argv);
  if (help || version) return { help, version };
  const raw = fromEnv(SETTINGS, env, fromArgs);
  const dataDirRaw = (raw.dataDir as string | undefined) ?? defaultDataDir(env);
  const dataDir = isAbsolute(dataDirRaw) ? resolve(dataDirRaw) : dataDirRaw;
  // Defaults that depend on the data directory or the machine; every other one is in its definition.
  const computed: Partial<Record<SettingKey, string | string[]>> = {
    hostId: `host-${hostname().replace(/[^A-Za-z0-9_.-]/g, '-')}`,
    controlSocket: join(dataDir, 'vbs.sock'),
    kvSocket: join(dataDir, 'kv.sock'),
    // Looked up once, here: every qcow2 operation then names the same binary, or fails clearly without one.
    qemuImg: findTool('qemu-img') ?? 'none',
  };
  const input: Record<string, string | string[] | boolean> = { dataDir };
  for (const [key, def] of Object.entries(SETTINGS) as [SettingKey, SettingDef][]) {
    if (key === 'dataDir' || key === 'tokenFile') continue;
    const fallback = def.default === undefined ? computed[key] : defaultValue(def, def.default);
    input[key] = raw[key] ?? fallback ?? (def.kind === 'list' ? [] : '');
  }

  let v: ReturnType<typeof checkSettings>;
  try {
    v = checkSettings(input, dataDir);
  } catch (err) {
    if (!(err instanceof SettingIssue)) throw err;
    const key = err.key as SettingKey;
    const def: SettingDef | undefined = SETTINGS[key];
    const name = def ? `--${def.flag}${def.env.length ? ` (${def.env.join(', ')})` : ''}` : key;
    throw new ConfigError(`setting ${name}: ${err.message}`);
  }
  if (v.extraHosts.includes(v.hostId)) {
    throw new ConfigError('setting --extra-host (SDS_EXTRA_HOSTS): must not repeat --host-id');
  }
  if (
    new Set(v.dataHosts).size !== v.dataHosts.length ||
    v.dataHosts.some((h) => h === v.hostId || v.extraHosts.includes(h))
  ) {
    throw new ConfigError('setting --data-host (SDS_DATA_HOSTS): each must be unique and differ from the other hosts');
  }
  checkPoolHosts(v.poolHosts, v.pools, [v.hostId, ...v.dataHosts, ...v.extraHosts]);
  const token = readToken(raw.tokenFile as string | undefined, env, readFile);
  // Never a world-writable directory such as /tmp by default (docs/RELIABILITY.md, threat model).
  const imageDirs = v.imageDirs.length > 0 ? v.imageDirs.map((p) => resolve(p)) : [join(dataDir, 'images')];
  return {
    help: false,
    version: false,
    config: {
      ...v,
      token,
      imageDirs: [...new Set(imageDirs)],
      controlSocket: resolve(v.controlSocket),
      kvSocket: resolve(v.kvSocket),
    },
  };
}

/** The first `name` in PATH (then the usual sbin/bin directories), or undefined. */
export function findTool(name: string): string | undefined {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin', '/usr/bin', '/bin']);
  for (const d of dirs) {
    if (d && existsSync(join(d, name))) return join(d, name);
  }
  return undefined;
}

/** The environment of the tools the emulator runs (emulator/exec.ts): ours, in the C locale. */
export function toolEnv(): NodeJS.ProcessEnv {
  return { ...process.env, LC_ALL: 'C' };
}

/** Tells the emulator to stop when its stdin reaches its end (set by src/server/embedded-emulator.ts). */
const STOP_WITH_PARENT_ENV = 'SDS_EMULATOR_STOP_ON_STDIN_EOF';

/**
 * Whether the driver that started us asked us to stop with it; the variable is removed so the tools we run
 * do not inherit it.
 */
export function takeStopWithParent(): boolean {
  const asked = process.env[STOP_WITH_PARENT_ENV] === '1';
  delete process.env[STOP_WITH_PARENT_ENV];
  return asked;
}
