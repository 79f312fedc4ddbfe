// The checks of the driver's settings, without a schema library: config.ts runs in every driver process,
// and zod cost the node plugin ~6 MiB and ~0.1 s of its start (docs/BENCHMARKS.md). Each check takes the
// raw string of a setting (a flag's or a variable's, or its default) and gives its value or what is wrong
// with it; `item` names the entry of a list setting that is wrong.

export type Checked<T> = { ok: true; value: T } | { ok: false; message: string; item?: number };
export type Check<T> = (raw: string | undefined) => Checked<T>;

const ok = <T>(value: T): Checked<T> => ({ ok: true, value });
const bad = (message: string, item?: number): Checked<never> => ({
  ok: false,
  message,
  ...(item === undefined ? {} : { item }),
});
const MISSING = 'Invalid input: expected string, received undefined';

/** A string that passes every test, in order; the first failing one says what is wrong. */
export function text(...tests: Array<[(v: string) => boolean, string]>): Check<string> {
  return (raw) => {
    if (raw === undefined) return bad(MISSING);
    for (const [passes, message] of tests) if (!passes(raw)) return bad(message);
    return ok(raw);
  };
}

export const matches = (pattern: RegExp, message: string): [(v: string) => boolean, string] => [
  (v) => pattern.test(v),
  message,
];
export const nonEmpty: [(v: string) => boolean, string] = [
  (v) => v.length >= 1,
  'Too small: expected string to have >=1 characters',
];
export const absolute: [(v: string) => boolean, string] = [(v) => v.startsWith('/'), 'must be an absolute path'];

export function oneOf<const T extends string>(...options: T[]): Check<T> {
  const message = `Invalid option: expected one of ${options.map((o) => JSON.stringify(o)).join('|')}`;
  return (raw) => (raw !== undefined && (options as string[]).includes(raw) ? ok(raw as T) : bad(message));
}

export function mapped<A, B>(check: Check<A>, to: (value: A) => B): Check<B> {
  return (raw) => {
    const r = check(raw);
    return r.ok ? ok(to(r.value)) : r;
  };
}

/** Absent: undefined (no check). */
export function optional<T>(check: Check<T>): Check<T | undefined> {
  return (raw) => (raw === undefined ? ok(undefined) : check(raw));
}

/** Absent: `value`. */
export function withDefault<T>(check: Check<T>, value: T): Check<T> {
  return (raw) => (raw === undefined ? ok(value) : check(raw));
}

/** A comma-separated list; blank entries dropped, each entry checked. */
export function list(pattern: RegExp, message: string): Check<string[]> {
  return (raw) => {
    if (raw === undefined) return bad(MISSING);
    const items = raw
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    const wrong = items.findIndex((s) => !pattern.test(s));
    return wrong === -1 ? ok(items) : bad(message, wrong);
  };
}

/** One message for every bad number, naming the range in words (the caller prefixes the flag or variable). */
export const wholeNumber = (min: number, max: number): Check<number> =>
  mapped(
    text([
      (v) => /^\d{1,16}$/.test(v) && Number(v) >= min && Number(v) <= max,
      `must be a whole number from ${min} to ${max}`,
    ]),
    Number,
  );

export const yesNo: Check<boolean> = mapped(
  oneOf('true', 'false', '1', '0', 'yes', 'no'),
  (v) => v === 'true' || v === '1' || v === 'yes',
);

export type Checks = Record<string, Check<unknown>>;
export type CheckedValues<C extends Checks> = { [K in keyof C]: C[K] extends Check<infer T> ? T : never };
