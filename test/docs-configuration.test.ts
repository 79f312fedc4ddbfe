// docs/configuration.md lists every setting as its definition says: the driver's (src/config/config.ts: flag,
// variable, default as --help shows it) and the emulator's (emulator/config.ts: flag, variables, default as its
// --help shows it).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  SETTINGS as EMULATOR_SETTINGS,
  shownDefault as emulatorShownDefault,
  type SettingDef as EmulatorSetting,
} from '../emulator/config.js';
import { SETTINGS as DRIVER_SETTINGS, shownDefault, type Setting } from '../src/config/config.js';
import { projectRoot } from '../src/util/paths.js';

const doc = readFileSync(join(projectRoot(), 'docs', 'configuration.md'), 'utf8');

/** The rows of the table under the `## ` heading that starts with `heading`, as cells without backticks. */
function tableUnder(heading: string): string[][] {
  const start = doc.indexOf(`\n## ${heading}`);
  expect(start, `docs/configuration.md has a section "${heading}"`).toBeGreaterThanOrEqual(0);
  const section = doc.slice(start + 1).split(/\n## /)[0]!;
  return section
    .split('\n')
    .filter((line) => line.startsWith('| `--'))
    .map((line) =>
      line
        .slice(1, -1)
        .split(' | ')
        .map((cell) => cell.trim().replaceAll('`', '')),
    );
}

describe('docs/configuration.md', () => {
  it('lists every driver setting with its flag, variable and --help default, and nothing else', () => {
    const rows = tableUnder('The driver');
    const expected = (Object.values(DRIVER_SETTINGS) as Setting[]).map((s) => [
      `--${s.flag}`,
      s.env ?? '—',
      shownDefault(s) ?? 'none',
    ]);
    expect(rows.map((r) => r.slice(0, 3))).toEqual(expected);
  });

  it('lists every emulator setting with its flag, variables and --help default, and nothing else', () => {
    const rows = tableUnder('The emulator');
    const expected = (Object.values(EMULATOR_SETTINGS) as EmulatorSetting[]).map((s) => [
      `--${s.flag}`,
      s.env.join(', '),
      emulatorShownDefault(s) ?? 'none',
    ]);
    expect(rows.map((r) => r.slice(0, 3))).toEqual(expected);
  });
});
