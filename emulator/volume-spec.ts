// What a create or clone request asks for: size, pool, thin or thick, QoS and cache, with the original
// keys for features this VBS does not offer refused (docs/socket-api.md §2.2).
import { Key } from '../src/protocol/catalog.js';
import { poolOf, type Ctx } from './context.js';
import { invalid } from './errors.js';
import type { Params } from './params.js';
import type { Pool } from './pools.js';
import type { VolumeRow } from './store.js';

export type CachePolicy = VolumeRow['cache_policy'];
export const CACHE_POLICIES: readonly CachePolicy[] = ['none', 'read', 'readwrite'];

export interface QosSpec {
  maxIops: number;
  maxMbps: number;
  ioPriority: number;
  ioClassId: string;
  cachePolicy: CachePolicy;
}

export interface CreateSpec extends QosSpec {
  name: string;
  pool: Pool;
  sizeMb: number | undefined;
  thin: boolean;
}

const UNSUPPORTED_KEYS = [Key.ENCRYPT_ALGORITHM, Key.COMPRESS_ALGORITHM, Key.DEDUPLICATION] as const;

/** The original keys naming features this VBS does not offer are refused unless neutral (empty or 0). */
function refuseUnsupported(p: Params): void {
  for (const key of UNSUPPORTED_KEYS) {
    const v = p.opt(key);
    if (v !== undefined && v !== '0') throw invalid(key, 'is not offered by this VBS (only empty or 0 is accepted)');
  }
  const replicas = p.opt(Key.REPLICATE_NUM);
  if (replicas !== undefined && (!/^\d{1,6}$/.test(replicas) || Number(replicas) > 1)) {
    throw invalid(Key.REPLICATE_NUM, 'replication is not offered by this VBS (only 0 or 1 is accepted)');
  }
}

export function parseQos(p: Params): QosSpec {
  const ioClassId = p.opt(Key.IO_CLASS_ID) ?? '';
  if (!/^[\x20-\x7e]{0,64}$/.test(ioClassId)) throw invalid(Key.IO_CLASS_ID, 'must be at most 64 printable characters');
  return {
    maxIops: p.int(Key.MAX_IOPS, 0, 10_000_000, 0),
    maxMbps: p.int(Key.MAX_MBPS, 0, 1_000_000, 0, 'MB/s'),
    ioPriority: p.int(Key.IO_PRIORITY, 1, 3, 2),
    ioClassId,
    cachePolicy: p.oneOf(Key.CACHE_POLICY, CACHE_POLICIES, 'none'),
  };
}

export function parseCreateSpec(ctx: Ctx, p: Params, sizeRequired: boolean, poolFromSource?: string): CreateSpec {
  const name = p.name(Key.VOL_NAME);
  const sizeMb = sizeRequired ? p.sizeMb() : p.optSizeMb();
  const requestedPool = p.optName(Key.POOL_ID);
  if (poolFromSource !== undefined && requestedPool !== undefined && requestedPool !== poolFromSource) {
    poolOf(ctx, requestedPool);
    throw invalid(Key.POOL_ID, `must be the source's pool ${poolFromSource}`);
  }
  const pool = poolOf(ctx, requestedPool ?? poolFromSource ?? ctx.defaultPool);
  const thin = p.flag(Key.THIN_FLAG, true);
  refuseUnsupported(p);
  return { name, pool, sizeMb, thin, ...parseQos(p) };
}
