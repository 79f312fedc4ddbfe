// Reading a table of settings from argv and the environment, generic over the table: flags win over
// variables, and values stay raw strings here; emulator/config.ts validates them.

export interface SettingDef {
  flag: string;
  env: string[];
  kind: 'string' | 'list' | 'bool';
  help: string;
  /** the default, as a flag's value would give it (parsed and validated like one; a list's comma-separated) */
  default?: string;
  /** how --help and the docs describe a default that is not a plain value, or that depends on others */
  shown?: string;
}

/** The default as --help and docs/configuration.md show it; undefined when there is none. */
export function shownDefault(def: SettingDef): string | undefined {
  return def.shown ?? def.default;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export type RawSettings<K extends string> = Partial<Record<K, string | string[] | boolean>>;

/** Splits argv into raw settings; `--flag=value`, `--flag value` and bare boolean flags. */
export function parseArgv<K extends string>(
  settings: Record<K, SettingDef>,
  argv: readonly string[],
): { raw: RawSettings<K>; help: boolean; version: boolean } {
  const byFlag = new Map<string, K>();
  for (const [key, def] of Object.entries(settings) as [K, SettingDef][]) byFlag.set(def.flag, key);
  const raw: RawSettings<K> = {};
  let help = false;
  let version = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (arg === '--version') {
      version = true;
      continue;
    }
    if (!arg.startsWith('--')) throw new ConfigError(`unexpected argument ${JSON.stringify(arg)} (see --help)`);
    const eq = arg.indexOf('=');
    const flag = arg.slice(2, eq === -1 ? undefined : eq);
    const key = byFlag.get(flag);
    if (!key) throw new ConfigError(`unknown option --${flag} (see --help)`);
    const def: SettingDef = settings[key];
    let value: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1);
    if (def.kind === 'bool') {
      raw[key] = value === undefined ? true : value;
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new ConfigError(`setting --${flag}: a value is required`);
    }
    if (def.kind === 'list') raw[key] = [...((raw[key] as string[] | undefined) ?? []), value];
    else raw[key] = value;
  }
  return { raw, help, version };
}

/** A definition's default in the form a flag or variable would give it. */
export function defaultValue(def: SettingDef, text: string): string | string[] {
  return def.kind === 'list' ? splitList(text) : text;
}

export function splitList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

export function fromEnv<K extends string>(
  settings: Record<K, SettingDef>,
  env: NodeJS.ProcessEnv,
  raw: RawSettings<K>,
): RawSettings<K> {
  const merged: RawSettings<K> = { ...raw };
  for (const [key, def] of Object.entries(settings) as [K, SettingDef][]) {
    if (merged[key] !== undefined) continue;
    for (const name of def.env) {
      const value = env[name];
      if (value === undefined || value === '') continue;
      merged[key] = def.kind === 'list' ? splitList(value) : value;
      break;
    }
  }
  return merged;
}

/** --help's lines for a table of settings: each flag with its variables, help text and default. */
export function settingsHelp(settings: Record<string, SettingDef>): string[] {
  const lines: string[] = [];
  for (const def of Object.values(settings)) {
    const env = def.env.length ? ` [env ${def.env.join(', ')}]` : '';
    const shown = shownDefault(def);
    lines.push(
      `  --${def.flag}${def.kind === 'bool' ? '' : '=VALUE'}${env}`,
      `      ${def.help}${shown ? ` (default: ${shown})` : ''}`,
    );
  }
  return lines;
}
