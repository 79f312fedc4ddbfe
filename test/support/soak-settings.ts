// The knobs of a seeded, bounded reliability test, read from the environment under one prefix: a soak run
// raises the counts (PREFIX_ROUNDS=…), a failing run is replayed from its printed seed (PREFIX_SEED=…).
import { countFrom, seedFrom } from './backend-audit.js';

/**
 * Each key of `defaults` read from `${prefix}_${key}`, else its default: SEED as any integer, every other
 * key as a positive whole number.
 */
export function soakSettings<const T extends { SEED: number } & Record<string, number>>(
  prefix: string,
  defaults: T,
): { readonly [K in keyof T]: number } {
  const settings: Record<string, number> = {};
  for (const [key, fallback] of Object.entries(defaults)) {
    const envName = `${prefix}_${key}`;
    settings[key] = key === 'SEED' ? seedFrom(envName, fallback) : countFrom(envName, fallback);
  }
  return settings as { readonly [K in keyof T]: number };
}
