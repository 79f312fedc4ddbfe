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

describe('export: the driver settings', () => {
  it('refuses a bad port from the flag or the variable, naming where it came from', async () => {
    const fromFlag = await exportWith(['--vbs-port', '70000'], {});
    expect(fromFlag.code).toBe(2);
    expect(fromFlag.stderr).toContain('--vbs-port: must be a whole number from 1 to 65535');
    const fromEnv = await exportWith([], { SDS_VBS_PORT: 'x' });
    expect(fromEnv.code).toBe(2);
    expect(fromEnv.stderr).toContain('SDS_VBS_PORT: must be a whole number from 1 to 65535');
  });

  it('checks the token as the driver does, without quoting it', async () => {
    const bad = await exportWith([], { SDS_VBS_TOKEN: 'two words' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('SDS_VBS_TOKEN: the token must be 1-4096 printable ASCII characters');
    expect(bad.stderr).not.toContain('two words');
    const empty = join(dir, 'empty-token');
    await writeFile(empty, '\n', { mode: 0o600 });
    const fromFile = await exportWith([], { SDS_VBS_TOKEN_FILE: empty });
    expect(fromFile.code).toBe(2);
    expect(fromFile.stderr).toContain('SDS_VBS_TOKEN_FILE: the token file is empty');
  });

  it('refuses a bad address list and a relative data directory', async () => {
    const url = await exportWith(['--vbs-url', 'ftp://nowhere'], {});
    expect(url.code).toBe(2);
    expect(url.stderr).toContain('--vbs-url:');
    const data = await exportWith([], { SDS_DATA_DIR: 'relative/dir' });
    expect(data.code).toBe(2);
    expect(data.stderr).toContain('SDS_DATA_DIR: must be an absolute path');
  });
});
