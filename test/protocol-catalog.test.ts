// The typed request catalog: the levels, the retry and mutation flags, the keys and record fields of each level.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  isKnownAt,
  isMutating,
  isResendSafe,
  keysAt,
  ORIGINAL_CREATE_KEYS,
  ORIGINAL_CREATE_NEUTRAL,
  recordFields,
  REQUEST_SPECS,
  requestSpec,
  requestTypesOf,
  takesKey,
  Key,
  RECORDS,
} from '../src/protocol/catalog.js';

const ORIGINAL_NINE = [
  'CREATE_VOLUME_REQ',
  'DELETE_VOLUME_REQ',
  'EXTEND_VOLUME_REQ',
  'CREATE_SNAPSHOT_REQ',
  'DELETE_SNAPSHOT_REQ',
  'CREATE_VOLUME_FROM_SNAPSHOT_REQ',
  'QUERY_VOLUME_REQ',
  'QUERY_SNAPSHOT_REQ',
  'QUERY_POOLS_CAPABILITY_REQ',
];

describe('the request catalog', () => {
  it('the original level is exactly the nine requests of the product', () => {
    expect(requestTypesOf('original').sort()).toEqual([...ORIGINAL_NINE].sort());
    for (const t of [
      'QUERY_CAPABILITY_REQ',
      'MAP_VOLUME_REQ',
      'CLONE_VOLUME_REQ',
      'LIST_VOLUMES_REQ',
      'MODIFY_VOLUME_REQ',
    ]) {
      expect(isKnownAt(t, 'original')).toBe(false);
      expect(isKnownAt(t, 'extended')).toBe(true);
    }
    expect(requestTypesOf('extended')).toHaveLength(REQUEST_SPECS.length);
  });

  it('types are unique, well-formed wire names', () => {
    const types = REQUEST_SPECS.map((s) => s.type);
    expect(new Set(types).size).toBe(types.length);
    for (const t of types) expect(t).toMatch(/^[A-Z][A-Z0-9_]*_REQ$/);
    expect(requestSpec('NO_SUCH_REQ')).toBeUndefined();
  });

  it('only the image jobs are unsafe to resend; unknown types are neither resent nor mutating', () => {
    const unsafe = REQUEST_SPECS.filter((s) => !s.resendSafe)
      .map((s) => s.type)
      .sort();
    expect(unsafe).toEqual(['EXPORT_IMAGE_REQ', 'IMPORT_IMAGE_REQ']);
    expect(isResendSafe('SOMETHING_NEW_REQ')).toBe(false);
    expect(isMutating('SOMETHING_NEW_REQ')).toBe(false);
  });

  it('queries do not mutate; creates, deletes, maps and modifies do', () => {
    for (const s of REQUEST_SPECS) {
      if (/^(QUERY|LIST)_/.test(s.type)) expect(s.mutating, s.type).toBe(false);
      if (/^(CREATE|DELETE|EXTEND|MAP|UNMAP|MODIFY|CLONE|IMPORT|EXPORT)_/.test(s.type))
        expect(s.mutating, s.type).toBe(true);
    }
  });

  it('CREATE_VOLUME_REQ carries the 22 keys of the Cinder driver on the original level, with a neutral value each', () => {
    const keys = keysAt('CREATE_VOLUME_REQ', 'original');
    for (const k of [Key.VOL_NAME, Key.VOL_SIZE, ...ORIGINAL_CREATE_KEYS]) expect(keys).toContain(k);
    expect(2 + ORIGINAL_CREATE_KEYS.length).toBe(22);
    for (const k of ORIGINAL_CREATE_KEYS) expect(typeof ORIGINAL_CREATE_NEUTRAL[k]).toBe('string');
    expect(keys).not.toContain(Key.CACHE_POLICY);
    expect(keysAt('CREATE_VOLUME_REQ', 'extended')).toContain(Key.CACHE_POLICY);
  });

  it('extension keys are known only on the extended level', () => {
    expect(takesKey('CREATE_VOLUME_REQ', Key.AUTH_TOKEN, 'original')).toBe(false);
    expect(takesKey('CREATE_VOLUME_REQ', Key.AUTH_TOKEN, 'extended')).toBe(true);
    expect(takesKey('CREATE_VOLUME_FROM_SNAPSHOT_REQ', Key.CLONE_TYPE, 'original')).toBe(false);
    expect(takesKey('CREATE_VOLUME_FROM_SNAPSHOT_REQ', Key.SNAP_NAME_SRC, 'original')).toBe(true);
    expect(takesKey('QUERY_POOLS_CAPABILITY_REQ', Key.POOL_ID, 'original')).toBe(true);
    expect(requestSpec('QUERY_POOLS_CAPABILITY_REQ')!.keys.find((k) => k.key === Key.POOL_ID)!.repeated).toBe(true);
  });

  it('original records carry only what the product sent', () => {
    expect(recordFields('volume', 'original')).toEqual(['status']);
    expect(recordFields('snapshot', 'original')).toEqual(['status']);
    expect(recordFields('pool', 'original').sort()).toEqual([
      'iops',
      'raid_level',
      'stor_id',
      'total_capacity',
      'usable_capacity',
    ]);
    expect(recordFields('host', 'original')).toEqual([]);
    expect(recordFields('volume', 'extended')).toEqual(Object.keys(RECORDS.volume));
  });
});

describe('the catalog is the one place wire names are spelled', () => {
  /** The code that speaks the VBS protocol: the driver's client and the emulator. */
  const files = ['src/sds', 'emulator'].flatMap((dir) =>
    readdirSync(dir)
      .filter((f) => f.endsWith('.ts'))
      .map((f) => join(dir, f)),
  );
  // Keys with an underscore: a plain word (`status`, `size`) is too common to be told from prose or a column.
  const keyValues = new Set(Object.values(Key).filter((k: string) => k.includes('_')));

  it('no request type or field key is a string literal outside src/protocol/catalog', () => {
    const found: string[] = [];
    for (const file of files) {
      // The emulator's store names its SQL columns after the keys; those are columns, not wire keys.
      if (/^emulator\/store(-[a-z]+)?\.ts$/.test(file)) continue;
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (/^\s*(\/\/|\*)/.test(line) || /Pick<|Omit<|Row\[/.test(line)) return;
          for (const m of line.matchAll(/'([A-Za-z][A-Za-z0-9_]*)'/g)) {
            if (keyValues.has(m[1] as never) || /^[A-Z_]+_REQ$/.test(m[1]!)) found.push(`${file}:${i + 1}: ${m[1]}`);
          }
        });
    }
    expect(found).toEqual([]);
  });
});
