// Validation of request keys: every failure names the key (docs/socket-api.md §2.2).
import { Key } from '../src/protocol/catalog.js';
import { Fields, isValidName } from '../src/protocol/vbs.js';
import { invalid } from './errors.js';

export const MAX_VOLUME_MB = 67_108_864;

export class Params {
  constructor(readonly fields: Fields) {}

  /** The value of a key; an empty value counts as absent (the Cinder driver sent empty neutral values). */
  opt(key: string): string | undefined {
    const v = this.fields.get(key);
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  req(key: string): string {
    const v = this.opt(key);
    if (v === undefined) throw invalid(key, 'is required');
    return v;
  }

  name(key: string): string {
    const v = this.req(key);
    if (!isValidName(v))
      throw invalid(key, 'must be 1-96 characters of [A-Za-z0-9_.-] starting with a letter or digit');
    return v;
  }

  optName(key: string): string | undefined {
    return this.opt(key) === undefined ? undefined : this.name(key);
  }

  int(key: string, min: number, max: number, def: number, unit = ''): number {
    const v = this.opt(key);
    if (v === undefined) return def;
    return this.parseInt(key, v, min, max, unit);
  }

  optInt(key: string, min: number, max: number, unit = ''): number | undefined {
    const v = this.opt(key);
    return v === undefined ? undefined : this.parseInt(key, v, min, max, unit);
  }

  private parseInt(key: string, v: string, min: number, max: number, unit: string): number {
    if (!/^\d{1,16}$/.test(v) || Number(v) < min || Number(v) > max) {
      throw invalid(key, `must be a whole number${unit ? ` of ${unit}` : ''} between ${min} and ${max}`);
    }
    return Number(v);
  }

  oneOf<T extends string>(key: string, values: readonly T[], def: T): T {
    const v = this.opt(key);
    if (v === undefined) return def;
    if (!(values as readonly string[]).includes(v)) throw invalid(key, `must be one of ${values.join(', ')}`);
    return v as T;
  }

  optOneOf<T extends string>(key: string, values: readonly T[]): T | undefined {
    return this.opt(key) === undefined ? undefined : this.oneOf(key, values, values[0]!);
  }

  flag(key: string, def: boolean): boolean {
    return this.oneOf(key, ['0', '1'], def ? '1' : '0') === '1';
  }

  sizeMb(key: string = Key.VOL_SIZE): number {
    const v = this.req(key);
    return this.parseInt(key, v, 1, MAX_VOLUME_MB, 'MiB');
  }

  optSizeMb(key: string = Key.VOL_SIZE): number | undefined {
    return this.optInt(key, 1, MAX_VOLUME_MB, 'MiB');
  }

  /** Pagination: `marker` (a name or empty) and `limit` (1-1000, default 100). */
  /** The pool_id values given, trimmed, the empty ones left out (a pool query may name several). */
  poolIds(): string[] {
    return this.fields
      .getAll(Key.POOL_ID)
      .map((v) => v.trim())
      .filter((v) => v !== '');
  }

  page(): { marker: string; limit: number } {
    const marker = this.fields.get(Key.MARKER)?.trim() ?? '';
    if (marker !== '' && !isValidName(marker))
      throw invalid(Key.MARKER, 'must be empty or a name from a previous next_marker');
    return { marker, limit: this.int(Key.LIMIT, 1, 1000, 100) };
  }
}
