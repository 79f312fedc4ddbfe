// Configuration of the real driver process: every setting's validation, through the flag and through its
// environment variable (exit 2, stderr naming where the bad value came from), --help and --version, and the
// all-in-one start-up line that tells a user where everything is.
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SETTINGS, type SettingName } from '../src/config/config.js';
import { projectRoot } from '../src/util/paths.js';
import { connectCsi } from './support/csi-client.js';
import { eventually, httpRequest, logLines } from './support/ops.js';
import { DRIVER_MAIN } from './support/driver-process.js';
import { runDriver } from './support/driver-run.js';
import { cleanEnv, useProcessDir } from './support/stack.js';

const inDir = useProcessDir('csi-config-');
beforeAll(async () => {
  await writeFile(inDir('empty-token'), '\n');
});

/**
 * A bad value for each setting and what the message must say about it. `flagOnly`: an empty variable counts
 * as unset. `alone`: checked after the others pass (reading the token file), so it needs a run of its own.
 */
const BAD: Record<SettingName, { value: string | (() => string); says: RegExp; flagOnly?: boolean; alone?: boolean }> =
  {
    mode: { value: 'sideways', says: /expected one of "controller"\|"node"\|"all"/ },
    endpoint: { value: 'tcp://127.0.0.1:10000', says: /must be unix:\/\/\/absolute\/path/ },
    endpointMode: { value: '0999', says: /must be an octal file mode/ },
    driverName: { value: 'not_a-dns_name!', says: /DNS-1123 subdomain/ },
    vbsUrl: { value: 'ftp://vbs.example.com', says: /only tcp:\/\/ and unix:\/\/ are supported/ },
    vbsPort: {
      value: '70000',
      says: /^--vbs-port: must be a whole number from 1 to 65535$|^SDS_VBS_PORT: must be a whole number from 1 to 65535$/,
    },
    vbsTokenFile: { value: () => inDir('no-such-token'), says: /cannot read the token file: ENOENT/, alone: true },
    vbsProtocol: { value: 'newest', says: /auto.*original.*extended|Invalid (enum|option)/ },
    vbsPools: { value: 'pool0,-bad', says: /1-96 characters/ },
    vbsTimeoutMs: { value: '-5', says: /must be a whole number from 100 to 3600000$/ },
    hostId: { value: '-starts-with-a-dash', says: /1-96 characters/ },
    sdsCli: { value: 'relative/sds_cli', says: /must be an absolute path/ },
    nodeName: { value: '', says: />=1 characters/, flagOnly: true },
    topologyLabels: { value: 'zone,bad label!', says: /each must be a Kubernetes label key/ },
    maxVolumesPerNode: { value: '0', says: /must be a whole number from 1 to 1000000$/ },
    metricsAddress: { value: '127.0.0.1', says: /must be host:port/ },
    logLevel: { value: 'loud', says: /expected one of "trace"/ },
    kubeconfig: { value: '', says: />=1 characters/, flagOnly: true },
    shutdownGraceMs: { value: '600001', says: /must be a whole number from 0 to 600000$/ },
    emulator: { value: 'maybe', says: /expected one of/ },
    dataDir: { value: 'relative/data', says: /must be an absolute path/ },
  };

const rows = Object.entries(BAD).map(([name, bad]) => {
  const setting = SETTINGS[name as SettingName] as { flag: string; env?: string };
  return { name, ...bad, flag: `--${setting.flag}`, env: bad.flagOnly ? undefined : setting.env };
});
const valueOf = (row: (typeof rows)[number]) => (typeof row.value === 'function' ? row.value() : row.value);

/** `invalid configuration: --a: x; --b: y` → the message about `where` (`--b` or `SDS_B`, or an item of it). */
function messageFor(stderr: string, where: string): string | undefined {
  const list = /invalid configuration: (.*)$/m.exec(stderr)?.[1] ?? '';
  return list.split('; ').find((m) => m.startsWith(`${where}: `) || m.startsWith(`${where}[`));
}

describe('every setting is validated at start, naming the flag or variable', () => {
  // Starting the driver's module graph is not free: all the bad flags go in one run, all the variables in
  // another (validation reports every problem at once); each row then checks its own message.
  let viaFlags: { code: number; stdout: string; stderr: string };
  let viaEnv: { code: number; stdout: string; stderr: string };
  beforeAll(async () => {
    const together = rows.filter((r) => !r.alone);
    [viaFlags, viaEnv] = await Promise.all([
      runDriver(together.map((r) => `${r.flag}=${valueOf(r)}`)),
      runDriver([], Object.fromEntries(together.filter((r) => r.env).map((r) => [r.env!, valueOf(r)]))),
    ]);
  });

  it('the table covers every setting; both runs exit 2 with one line on stderr and nothing on stdout', () => {
    expect(Object.keys(BAD).sort()).toEqual(Object.keys(SETTINGS).sort());
    for (const run of [viaFlags, viaEnv]) {
      expect(run.code, run.stderr).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(/^sdshypervisor-csi: invalid configuration: /);
      expect(run.stderr.trim().split('\n')).toHaveLength(1); // a message, not a stack trace
    }
  });

  for (const row of rows) {
    it(`${row.flag}${row.env ? ` and ${row.env}` : ''}`, async () => {
      if (row.alone) {
        const flag = await runDriver([`${row.flag}=${valueOf(row)}`]);
        expect(flag.code).toBe(2);
        expect(flag.stderr).toMatch(new RegExp(`^sdshypervisor-csi: ${row.flag}: `));
        expect(flag.stderr).toMatch(row.says);
        if (row.env) {
          const env = await runDriver([], { [row.env]: valueOf(row) });
          expect(env.code).toBe(2);
          expect(env.stderr).toMatch(new RegExp(`^sdshypervisor-csi: ${row.env}: `));
          expect(env.stderr).toMatch(row.says);
        }
        return;
      }
      expect(messageFor(viaFlags.stderr, row.flag), viaFlags.stderr).toMatch(row.says);
      if (row.env) expect(messageFor(viaEnv.stderr, row.env), viaEnv.stderr).toMatch(row.says);
      // The flag's message never blames the variable, and the other way round.
      if (row.env) expect(messageFor(viaFlags.stderr, row.env)).toBeUndefined();
    });
  }

  it('a list setting names the bad item', () => {
    expect(messageFor(viaFlags.stderr, '--topology-labels')).toMatch(/^--topology-labels\[1\]: /);
  });

  it('one bad value alone is enough to stop the start', async () => {
    const alone = await runDriver(['--shutdown-grace-ms=soon']);
    expect(alone).toMatchObject({ code: 2, stdout: '' });
    expect(alone.stderr).toBe(
      'sdshypervisor-csi: invalid configuration: --shutdown-grace-ms: must be a whole number from 0 to 600000\n',
    );
  });

  it('the token: an empty token file, and a bad SDS_VBS_TOKEN whose value is never shown', async () => {
    const [empty, spaced] = await Promise.all([
      runDriver([`--vbs-token-file=${inDir('empty-token')}`]),
      runDriver([], { SDS_VBS_TOKEN: 'has a-SPACE-canary' }),
    ]);
    expect(empty).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--vbs-token-file: the token file is empty/),
    });
    expect(spaced.code).toBe(2);
    expect(spaced.stderr).toMatch(/SDS_VBS_TOKEN: the token must be 1-4096 printable ASCII characters without spaces/);
    expect(spaced.stderr).not.toMatch(/SPACE-canary/);
  });

  it('a flag wins over its variable; an unknown flag and the emulator outside all mode are refused', async () => {
    const [both, unknown, emulator] = await Promise.all([
      runDriver(['--mode=controller', '--vbs-port=0'], { CSI_MODE: 'sideways' }),
      runDriver(['--bogus']),
      runDriver(['--mode=node', '--emulator=true']),
    ]);
    expect(both.code).toBe(2);
    expect(both.stderr).not.toMatch(/CSI_MODE|--mode/);
    expect(both.stderr).toMatch(/--vbs-port: /);
    expect(unknown).toMatchObject({ code: 2, stderr: expect.stringMatching(/Unknown option '--bogus'.*see --help/) });
    expect(emulator).toMatchObject({
      code: 2,
      stderr: expect.stringMatching(/--emulator: the embedded emulator runs only in --mode=all/),
    });
  });
});

describe('--help and --version', () => {
  it('--help lists every flag and its variable and exits 0; --version prints the package version', async () => {
    const [help, short] = await Promise.all([runDriver(['--help']), runDriver(['-h'])]);
    expect(help.code).toBe(0);
    expect(short).toEqual(help);
    expect(help.stdout).toMatch(
      /--log-level \/ LOG_LEVEL.*\n.*trace \| debug \| info \| warn \| error \| fatal \| silent/,
    );
    expect(help.stdout).toContain('-h, --help');
    for (const s of Object.values(SETTINGS) as Array<{ flag: string; env?: string }>) {
      expect(help.stdout).toContain(`--${s.flag}${s.env ? ` / ${s.env}` : ''}`);
    }
    expect(help.stdout).toMatch(/--metrics-address \/ CSI_METRICS_ADDRESS \(default: 127\.0\.0\.1:9810\)/);
    const version = await runDriver(['--version']);
    const pkg = JSON.parse(await readFile(join(projectRoot(), 'package.json'), 'utf8')) as { version: string };
    expect(version).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
  });
});

describe('all-in-one mode (npm start)', () => {
  it('logs where everything is: endpoint, data dir, emulator sockets, sds_cli, metrics; answers on all of them', async () => {
    const dataDir = inDir('data');
    const endpoint = inDir('csi.sock');
    // What `npm start` runs, with a private socket, data dir and metrics port so parallel runs do not meet.
    const child = spawn(
      process.execPath,
      [DRIVER_MAIN, '--mode=all', `--data-dir=${dataDir}`, '--metrics-address=127.0.0.1:0'],
      {
        env: cleanEnv({ CSI_ENDPOINT: `unix://${endpoint}`, SDS_POOLS: 'pool0:1G' }),
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await eventually(
        'the start-up line',
        () => {
          if (child.exitCode !== null) throw new Error(`the driver exited (${child.exitCode}):\n${output}`);
          return logLines(output).some((l) => l.msg === 'sdshypervisor-csi started');
        },
        40_000,
      );
      const started = logLines(output).find((l) => l.msg === 'sdshypervisor-csi started')!;
      expect(started).toMatchObject({
        mode: 'all',
        endpoint: `unix://${endpoint}`,
        emulator: dataDir,
        vbsSocket: join(dataDir, 'vbs.sock'),
        kvSocket: join(dataDir, 'kv.sock'),
        metrics: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/),
      });
      expect(logLines(output).find((l) => l.msg === 'node service: data plane')).toMatchObject({
        sdsCli: join(projectRoot(), 'emulator', 'bin', 'sds_cli'),
        kvSocket: join(dataDir, 'kv.sock'),
      });
      expect((await httpRequest(started.metrics as string)).status).toBe(200);
      expect(await httpRequest((started.metrics as string).replace(/metrics$/, 'healthz'))).toMatchObject({
        status: 200,
        body: 'ok\n',
      });
      const csi = connectCsi(endpoint);
      try {
        expect((await csi.identity.Probe({})).ready?.value).toBe(true);
      } finally {
        csi.close();
      }
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
