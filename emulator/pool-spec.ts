// A pool as the --pool setting names it (name[:size][:path]), and which hosts see it (--pool-hosts).
import { isAbsolute, join, resolve } from 'node:path';
import { isValidName } from '../src/protocol/vbs.js';
import { ConfigError, splitList } from './config-parse.js';

export interface PoolSpec {
  name: string;
  sizeBytes: number;
  /** the LUN: an image file (created sparse when missing) or a block device */
  lunPath: string;
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
};

/** `64G`, `512MiB`, `1073741824` → bytes; undefined when not a size. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+)\s*([a-zA-Z]*)$/.exec(text.trim());
  if (!m) return undefined;
  const unit = SIZE_UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Number(m[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

const DEFAULT_POOL_BYTES = 64 * 1024 ** 3;
// mkfs.xfs refuses file systems smaller than 300 MB.
const MIN_POOL_BYTES = 512 * 1024 ** 2;

export function parsePool(text: string, dataDir: string): PoolSpec {
  const [name = '', ...rest] = text.split(':');
  if (!isValidName(name))
    throw new Error(`pool name ${JSON.stringify(name)} must match [A-Za-z0-9][A-Za-z0-9_.-]{0,95}`);
  let sizeBytes = DEFAULT_POOL_BYTES;
  let lunPath = join(dataDir, 'luns', `${name}.img`);
  let i = 0;
  if (rest[i] !== undefined && !rest[i]!.startsWith('/')) {
    const size = parseSize(rest[i]!);
    if (size === undefined)
      throw new Error(`pool ${name}: size ${JSON.stringify(rest[i])} is not a size like 64G or 512M`);
    sizeBytes = size;
    i++;
  }
  if (rest[i] !== undefined) {
    lunPath = rest.slice(i).join(':');
    if (!isAbsolute(lunPath)) throw new Error(`pool ${name}: LUN path must be absolute`);
    lunPath = resolve(lunPath);
  }
  if (sizeBytes < MIN_POOL_BYTES) throw new Error(`pool ${name}: size must be at least 512M`);
  return { name, sizeBytes, lunPath };
}

/** `gold=host-a+host-b` entries (a flag's value may hold several, as the variable's) → each pool's hosts. */
export function parsePoolHosts(list: readonly string[]): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const text of list.flatMap(splitList)) {
    const eq = text.indexOf('=');
    const pool = text.slice(0, eq).trim();
    const hosts = text
      .slice(eq + 1)
      .split('+')
      .map((h) => h.trim());
    if (eq <= 0 || hosts.some((h) => h === '')) throw new Error(`${JSON.stringify(text)} is not pool=host+host`);
    if (!isValidName(pool) || !hosts.every(isValidName))
      throw new Error(`${JSON.stringify(text)}: pool and host names must match [A-Za-z0-9][A-Za-z0-9_.-]{0,95}`);
    if (Object.hasOwn(out, pool)) throw new Error(`pool ${pool} is named twice`);
    out[pool] = [...new Set(hosts)];
  }
  return out;
}

/** --pool-hosts may name only configured pools and known hosts: a typo would hide a pool from every host. */
export function checkPoolHosts(poolHosts: Record<string, string[]>, pools: PoolSpec[], hosts: string[]): void {
  const name = 'setting --pool-hosts (SDS_POOL_HOSTS)';
  for (const [pool, seenBy] of Object.entries(poolHosts)) {
    if (!pools.some((p) => p.name === pool)) {
      throw new ConfigError(`${name}: no pool ${pool} (pools: ${pools.map((p) => p.name).join(', ')})`);
    }
    const unknown = seenBy.filter((h) => !hosts.includes(h));
    if (unknown.length > 0) {
      throw new ConfigError(`${name}: pool ${pool}: unknown host ${unknown.join(', ')} (hosts: ${hosts.join(', ')})`);
    }
  }
}
