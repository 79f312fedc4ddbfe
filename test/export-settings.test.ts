// The export subcommand's VBS settings come from the driver's definitions (src/config/config.ts): the same
// validation, the same token check, the same messages naming the flag or variable. Nothing is contacted:
// every case stops at the arguments (exit status 2).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runExport } from '../src/cli/export.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'export-settings-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function exportWith(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const code = await runExport(['--volume', 'vol1', '--out', join(dir, 'out.img'), ...args], {
    stdout: () => undefined,
    stderr: (t) => (stderr += t),
    env: { SDS_DATA_DIR: join(dir, 'data'), ...env },
  });
  return { code, stderr };
}

/** Export with these settings stops at the arguments (exit 2), its stderr saying `says`; returns that stderr. */
async function expectRefused(args: string[], env: NodeJS.ProcessEnv, says: string): Promise<string> {
  const { code, stderr } = await exportWith(args, env);
  expect(code, stderr).toBe(2);
  expect(stderr).toContain(says);
  return stderr;
}

describe('export: the driver settings', () => {
  it('refuses a bad port from the flag or the variable, naming where it came from', async () => {
    await expectRefused(['--vbs-port', '70000'], {}, '--vbs-port: must be a whole number from 1 to 65535');
    await expectRefused([], { SDS_VBS_PORT: 'x' }, 'SDS_VBS_PORT: must be a whole number from 1 to 65535');
  });

  it('checks the token as the driver does, without quoting it', async () => {
    const bad = await expectRefused(
      [],
      { SDS_VBS_TOKEN: 'two words' },
      'SDS_VBS_TOKEN: the token must be 1-4096 printable ASCII characters',
    );
    expect(bad).not.toContain('two words');
    const empty = join(dir, 'empty-token');
    await writeFile(empty, '\n', { mode: 0o600 });
    await expectRefused([], { SDS_VBS_TOKEN_FILE: empty }, 'SDS_VBS_TOKEN_FILE: the token file is empty');
  });

  it('refuses a bad address list and a relative data directory', async () => {
    await expectRefused(['--vbs-url', 'ftp://nowhere'], {}, '--vbs-url:');
    await expectRefused([], { SDS_DATA_DIR: 'relative/dir' }, 'SDS_DATA_DIR: must be an absolute path');
  });
});
