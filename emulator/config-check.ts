// The checks of the emulator's settings, without a schema library: loading zod took ~80 ms of every start
// of the daemon (a restart's time to ready is a target of issue 19). Each setting is checked in the order
// of EmulatorConfig; the first one that fails names itself and what is wrong, with zod's wording where zod
// had one of its own.
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { isValidName } from '../src/protocol/vbs.js';
import type { EmulatorConfig, EmulatorProtocol, PoolType } from './config.js';
import { parsePool, parsePoolHosts } from './pool-spec.js';
import { parseAllowlist } from './url-guard.js';

/** A setting that failed its check: `key` is its EmulatorConfig name. */
export class SettingIssue extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(message);
  }
}

type Input = Record<string, string | string[] | boolean | undefined>;
type Checked = Omit<EmulatorConfig, 'token'>;

const HOST_ID = 'must match [A-Za-z0-9][A-Za-z0-9_.-]{0,95}';

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** Checks the raw settings (strings, lists and defaults already filled in) and gives their values. */
export function checkSettings(input: Input, dataDir: string): Checked {
  const fail = (key: string, message: string): never => {
    throw new SettingIssue(key, message);
  };
  const text = (key: string): string => {
    const v = input[key];
    return typeof v === 'string' ? v : fail(key, `Invalid input: expected string, received ${kindOf(v)}`);
  };
  const list = (key: string): string[] => {
    const v = input[key];
    return Array.isArray(v) ? v : fail(key, `Invalid input: expected array, received ${kindOf(v)}`);
  };
  const test = (key: string, value: string, ok: boolean, message: string): string => (ok ? value : fail(key, message));
  const oneOf = <T extends string>(key: string, options: readonly T[]): T => {
    const v = text(key);
    return (options as readonly string[]).includes(v)
      ? (v as T)
      : fail(key, `Invalid option: expected one of ${options.map((o) => JSON.stringify(o)).join('|')}`);
  };
  const integerIn = (key: string, min: number, max: number): number => {
    const v = text(key);
    if (!(min < 0 ? /^-?\d+$/ : /^\d+$/).test(v)) fail(key, 'must be an integer');
    const n = Number(v);
    return n >= min && n <= max && Number.isSafeInteger(n) ? n : fail(key, `must be between ${min} and ${max}`);
  };
  const parsed = <T>(key: string, parse: (l: string[]) => T): T => {
    const l = list(key);
    try {
      return parse(l);
    } catch (err) {
      return fail(key, (err as Error).message);
    }
  };
  const hosts = (key: string): string[] => {
    const l = list(key);
    return l.every(isValidName) ? l : fail(key, `every host id ${HOST_ID}`);
  };
  // Unix socket paths are limited by sun_path (108 bytes including the NUL).
  const socketPath = (key: string): string => {
    const v = test(key, text(key), isAbsolute(text(key)), 'must be an absolute path');
    return test(key, v, Buffer.byteLength(v) <= 107, 'must be at most 107 bytes (unix socket path limit)');
  };

  const out: Checked = {
    dataDir: test('dataDir', text('dataDir'), isAbsolute(text('dataDir')), 'must be an absolute path'),
    hostId: test('hostId', text('hostId'), isValidName(text('hostId')), HOST_ID),
    extraHosts: hosts('extraHosts'),
    dataHosts: hosts('dataHosts'),
    listenHost: test(
      'listenHost',
      text('listenHost'),
      text('listenHost').length >= 1,
      'Too small: expected string to have >=1 characters',
    ),
    listenPort: integerIn('listenPort', -1, 65535),
    controlSocket: socketPath('controlSocket'),
    kvSocket: socketPath('kvSocket'),
    pools: parsed('pools', (l) => {
      const pools = l.map((t) => parsePool(t, dataDir));
      if (new Set(pools.map((p) => p.name)).size !== pools.length) throw new Error('pool names must be unique');
      return pools;
    }),
    poolHosts: parsed('poolHosts', parsePoolHosts),
    poolType: oneOf<PoolType>('poolType', ['auto', 'xfs-reflink', 'directory']),
    maxOversubscription: (() => {
      const v = test(
        'maxOversubscription',
        text('maxOversubscription'),
        /^\d+(\.\d+)?$/.test(text('maxOversubscription')),
        'must be a number',
      );
      const n = Number(v);
      return n >= 1 && n <= 100 ? n : fail('maxOversubscription', 'must be between 1 and 100');
    })(),
    imageDirs: (() => {
      const l = list('imageDirs');
      return l.every((p) => isAbsolute(p)) ? l : fail('imageDirs', 'every image directory must be an absolute path');
    })(),
    imageUrlAllow: parsed('imageUrlAllow', (l) => {
      parseAllowlist(l);
      return l;
    }),
    keepMounted: (() => {
      const v = input.keepMounted;
      if (v === true || v === false) return v;
      return oneOf('keepMounted', ['true', 'false', '1', '0'] as const) === 'true' || v === '1';
    })(),
    logLevel: oneOf('logLevel', ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const),
    requestQuietMs: integerIn('requestQuietMs', 1, 10000),
    shutdownGraceMs: integerIn('shutdownGraceMs', 0, 600000),
    blkioCgroup: test(
      'blkioCgroup',
      text('blkioCgroup'),
      text('blkioCgroup') === '' || isAbsolute(text('blkioCgroup')),
      'must be an absolute path or empty',
    ),
    protocol: oneOf<EmulatorProtocol>('protocol', ['original', 'extended']),
    qemuImg: (() => {
      const v = text('qemuImg');
      if (v === 'none') return '';
      test('qemuImg', v, isAbsolute(v), 'must be an absolute path or "none"');
      return test('qemuImg', v, isExecutable(v), 'is not an executable file');
    })(),
  };
  return out;
}

function kindOf(v: unknown): string {
  return v === undefined ? 'undefined' : Array.isArray(v) ? 'array' : typeof v;
}
