// KvConnector against fake CLIs: small /bin/sh scripts written to a temp dir (test fixtures only; the
// connector runs them with an argv array, no shell of its own). Devices are block-special nodes made with
// mknod inside the temp dir, so nothing outside it is touched.
import { execFileSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/log/logger.js';
import {
  ConnectorError,
  KvConnector,
  type ConnectorErrorKind,
  type KvConnectorOptions,
} from '../src/connector/index.js';

let dir: string;
let devDir: string;
let blockDevice: string;
let scriptCounter = 0;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kv-connector-test-'));
  devDir = join(dir, 'dev');
  await mkdir(devDir);
  blockDevice = join(devDir, 'sdsblk0');
  // A block-special node (loop major 7, an unused minor): stat says block device; nothing is ever opened.
  execFileSync('mknod', [blockDevice, 'b', '7', '240']);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes an executable fake sds_cli; $2 is the method, $4 the volume. Every run appends its argv to $LOG. */
async function fakeCli(body: string): Promise<{ path: string; log: string }> {
  const path = join(dir, `sds_cli_${scriptCounter++}`);
  const log = `${path}.log`;
  await writeFile(path, `#!/bin/sh\necho "$*" >> "${log}"\n${body}\n`);
  await chmod(path, 0o755);
  return { path, log };
}

function connector(cli: string, extra: Partial<KvConnectorOptions> = {}): KvConnector {
  return new KvConnector({
    cliPath: cli,
    deviceDir: devDir,
    deviceWaitMs: 2_000,
    timeoutMs: 5_000,
    env: { PATH: process.env.PATH },
    ...extra,
  });
}

async function calls(log: string): Promise<string[]> {
  return existsSync(log) ? (await readFile(log, 'utf8')).trim().split('\n') : [];
}

async function expectConnectorError(
  p: Promise<unknown>,
  kind: ConnectorErrorKind,
  message?: RegExp,
): Promise<ConnectorError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConnectorError);
  expect((err as ConnectorError).kind).toBe(kind);
  if (message) expect((err as ConnectorError).message).toMatch(message);
  return err as ConnectorError;
}

/** A CLI answering `code` to every method, with the device for attach/querydev. */
const answering = (code: number, device?: string) =>
  fakeCli(`echo "ret_code=${code}"\n${device ? `echo "dev_addr=${device}"` : ''}\necho 'ret_desc="code ${code}"'`);

describe('finding the CLI', () => {
  it('a missing CLI is CliMissing, naming the path', async () => {
    const missing = join(dir, 'no-such-cli');
    await expectConnectorError(connector(missing).attach('v1'), 'CliMissing', new RegExp(missing));
  });

  it('a CLI that is not executable, or a directory, is CliMissing', async () => {
    const { path } = await answering(0);
    await chmod(path, 0o644);
    await expectConnectorError(connector(path).detach('v1'), 'CliMissing', /not executable/);
    await expectConnectorError(connector(dir).detach('v1'), 'CliMissing');
  });

  it('takes the option, else HUAWEISDSHYPERVISORCLI_PATH, else the product default', async () => {
    const { path } = await answering(0);
    expect(new KvConnector({ cliPath: path, env: { HUAWEISDSHYPERVISORCLI_PATH: '/elsewhere' } }).cli).toBe(path);
    expect(new KvConnector({ env: { HUAWEISDSHYPERVISORCLI_PATH: path } }).cli).toBe(path);
    expect(new KvConnector({ env: {} }).cli).toBe('/usr/local/bin/sds/sds_cli');
    await new KvConnector({ env: { HUAWEISDSHYPERVISORCLI_PATH: path } }).detach('v1');
  });
});

describe('success codes', () => {
  it.each([0, 50151401, 50151405])(
    'attach succeeds on %i, runs `-c attach -v NAME`, and returns dev_addr',
    async (code) => {
      const { path, log } = await answering(code, blockDevice);
      expect(await connector(path).attach('vol-1')).toBe(blockDevice);
      expect(await calls(log)).toEqual(['-c attach -v vol-1']);
    },
  );

  it('attach without dev_addr asks querydev', async () => {
    const { path, log } = await fakeCli(
      `case "$2" in attach) echo ret_code=0;; querydev) echo ret_code=0; echo "dev_addr=${blockDevice}";; esac`,
    );
    expect(await connector(path).attach('v1')).toBe(blockDevice);
    expect(await calls(log)).toEqual(['-c attach -v v1', '-c querydev -v v1']);
  });

  it.each([0, 50151209, 50155007])('detach succeeds on %i', async (code) => {
    const { path, log } = await answering(code);
    await connector(path).detach('v1');
    expect(await calls(log)).toEqual(['-c detach -v v1']);
  });

  it('querydev: 0 gives the device; not attached and not mapped give undefined', async () => {
    expect(await connector((await answering(0, blockDevice)).path).queryDevice('v1')).toBe(blockDevice);
    expect(await connector((await answering(50159004)).path).queryDevice('v1')).toBeUndefined();
    expect(await connector((await answering(50155007)).path).queryDevice('v1')).toBeUndefined();
  });

  it('querydev of the product CLI (originalCli): any non-zero code, ret_code=1 included, means not attached', async () => {
    expect(await connector((await answering(1)).path, { originalCli: true }).queryDevice('v1')).toBeUndefined();
    expect(await connector((await answering(50159002)).path, { originalCli: true }).queryDevice('v1')).toBeUndefined();
    expect(await connector((await answering(0, blockDevice)).path, { originalCli: true }).queryDevice('v1')).toBe(
      blockDevice,
    );
    // With the back end's answer, a volume it does not have is VolumeNotFound, on querydev and on detach.
    const gone = { originalCli: true, volumeExists: async () => false };
    await expectConnectorError(
      connector((await answering(1)).path, gone).queryDevice('v1'),
      'VolumeNotFound',
      /no such volume/,
    );
    await expectConnectorError(connector((await answering(1)).path, gone).detach('v1'), 'VolumeNotFound');
    expect(
      await connector((await answering(1)).path, { originalCli: true, volumeExists: async () => true }).queryDevice(
        'v1',
      ),
    ).toBeUndefined();
    // Without it, ret_code=1 is a failure, as before.
    await expectConnectorError(connector((await answering(1)).path).queryDevice('v1'), 'Failed');
  });

  it('logs stderr as a warning (through the driver pino logger) and still judges by ret_code', async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const { path } = await fakeCli('echo "vbs slow to answer" >&2\necho ret_code=0');
    await connector(path, { logger }).detach('v1');
    const logged = lines.map((l) => JSON.parse(l) as { level: number; msg: string; stderr: string; volume: string });
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({
      level: 40,
      msg: 'sds_cli wrote to stderr',
      stderr: 'vbs slow to answer\n',
      volume: 'v1',
    });
  });
});

describe('failure codes', () => {
  type Method = 'attach' | 'detach' | 'querydev';
  // What each VBS answer code means, per sds_cli method.
  const kindsByMethod: Record<Method, Partial<Record<ConnectorErrorKind, number[]>>> = {
    attach: {
      NotMapped: [50155007],
      VolumeNotFound: [50159002],
      Unavailable: [50159001],
      Busy: [50159007],
      Failed: [50159005, 50159006, 50151209, -1],
    },
    detach: { VolumeNotFound: [50159002], Unavailable: [50159001], Busy: [50159007], Failed: [50151401] },
    querydev: { Unavailable: [50159001], VolumeNotFound: [50159002], Failed: [50159006] },
  };
  const failureCases = Object.entries(kindsByMethod).flatMap(([method, kinds]) =>
    Object.entries(kinds).flatMap(([kind, codes]) =>
      codes.map((code) => [method as Method, code, kind as ConnectorErrorKind] as const),
    ),
  );
  it.each(failureCases)('%s answering %i is %s, with code and ret_desc', async (method, code, kind) => {
    const { path } = await answering(code, blockDevice);
    const c = connector(path);
    const call = method === 'attach' ? c.attach('v1') : method === 'detach' ? c.detach('v1') : c.queryDevice('v1');
    const err = await expectConnectorError(call, kind, new RegExp(`ret_code=${code} \\(code ${code}\\)`));
    expect(err.code).toBe(code);
  });

  it('a usage error (exit status 2 with ret_code) is Failed with the code', async () => {
    const { path } = await fakeCli('echo ret_code=50159003; echo \'ret_desc="bad arguments"\'; exit 2');
    await expectConnectorError(connector(path).detach('v1'), 'Failed', /50159003 \(bad arguments\)/);
  });

  it('refuses a volume name the CLI could read as an option, without running it', async () => {
    const { path, log } = await answering(0);
    await expectConnectorError(connector(path).attach('-c'), 'InvalidArgument');
    await expectConnectorError(connector(path).detach('a b'), 'InvalidArgument');
    expect(await calls(log)).toEqual([]);
  });
});

describe('output it cannot understand', () => {
  it.each([
    ['empty output', 'true', /no ret_code.*exit status 0.*\(empty\)/],
    ['garbage', 'echo "Segmentation fault"; echo "core dumped"', /no ret_code.*Segmentation fault \| core dumped/],
    ['a non-numeric ret_code', 'echo ret_code=zero', /ret_code is not a number/],
    ['truncated output', 'printf "ret_co"', /no ret_code.*ret_co/],
    ['a crash after partial output', 'echo "dev_addr=/dev/x"; kill -SEGV $$', /no ret_code.*killed by SIGSEGV/],
    ['binary junk', 'printf "\\377\\376\\000\\001ret_code"', /no ret_code/],
  ])('%s is Garbled, quoting the first lines', async (_what, body, message) => {
    const { path } = await fakeCli(body);
    await expectConnectorError(connector(path).attach('v1'), 'Garbled', message);
  });

  it('success without a device is Garbled', async () => {
    await expectConnectorError(connector((await answering(0)).path).queryDevice('v1'), 'Garbled', /without dev_addr/);
    const { path } = await fakeCli('echo ret_code=0');
    await expectConnectorError(connector(path).attach('v1'), 'Garbled', /querydev v1: success without dev_addr/);
  });

  it.each(['/etc/passwd', 'DEV/../etc/x', 'DEV//sdsblk0', 'sdsblk0', 'DEV'])(
    'refuses dev_addr %s (not a plain path inside the device directory)',
    async (template) => {
      const { path } = await answering(0, template.replace('DEV', devDir));
      await expectConnectorError(connector(path).attach('v1'), 'Garbled', /not a device path/);
    },
  );

  it('output past the limit is refused and the CLI killed', async () => {
    const { path } = await fakeCli(
      'echo ret_code=0; while true; do echo xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; done',
    );
    await expectConnectorError(connector(path, { maxOutputBytes: 4096 }).detach('v1'), 'Garbled', /exceeds 4096 bytes/);
  });
});

describe('time bounds', () => {
  it('a hanging CLI is killed with whatever it started, and the call is a Timeout', async () => {
    const pidFile = join(dir, 'hang.pid');
    const { path } = await fakeCli(`sleep 30 &\necho $! > "${pidFile}"\nwait`);
    await expectConnectorError(
      connector(path, { timeoutMs: 300 }).attach('v1'),
      'Timeout',
      /no reply within 300 ms; killed/,
    );
    const sleeper = Number(readFileSync(pidFile, 'utf8'));
    // The CLI's own child died with it (dead or a zombie waiting for its reaper).
    await expect.poll(() => processState(sleeper), { timeout: 2_000 }).toMatch(/^(gone|Z)$/);
  });

  it('an aborted signal kills the CLI', async () => {
    const { path } = await fakeCli('exec sleep 30');
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 100);
    await expectConnectorError(connector(path).detach('v1', { signal: ctl.signal }), 'Timeout', /cancelled/);
  });

  it('a device that never appears is DeviceTimeout', async () => {
    const { path } = await answering(0, join(devDir, 'never'));
    await expectConnectorError(
      connector(path, { deviceWaitMs: 200 }).attach('v1'),
      'DeviceTimeout',
      /never does not exist after 200 ms/,
    );
  });

  it('a path that is not a block device is DeviceTimeout', async () => {
    const plain = join(devDir, 'plainfile');
    await writeFile(plain, '');
    const { path } = await answering(0, plain);
    await expectConnectorError(
      connector(path).attach('v1', { deviceWaitMs: 150 }),
      'DeviceTimeout',
      /exists but is not a block device/,
    );
  });

  it('waits for a device node that appears a little later', async () => {
    const late = join(devDir, 'late');
    const { path } = await answering(0, late);
    setTimeout(() => execFileSync('mknod', [late, 'b', '7', '241']), 150);
    expect(await connector(path).attach('v1')).toBe(late);
  });
});

describe('serialization', () => {
  // Each run marks its volume busy in a file; a run that finds the mark logs OVERLAP. Runs also count how
  // many of them run at once across volumes.
  const serialCli = () =>
    fakeCli(`
mark="${dir}/running-$4"
[ -e "$mark" ] && echo "OVERLAP $4" >> "${dir}/overlaps"
touch "$mark"
touch "${dir}/active-$$"
ls "${dir}" | grep -c '^active-' >> "${dir}/concurrency"
sleep 0.3
rm -f "$mark" "${dir}/active-$$"
echo ret_code=0
echo "dev_addr=${blockDevice}"`);

  it('runs calls on one volume one at a time, and calls on different volumes together', async () => {
    const { path, log } = await serialCli();
    const c = connector(path);
    await Promise.all([c.attach('same'), c.detach('same'), c.queryDevice('same')]);
    expect(existsSync(join(dir, 'overlaps'))).toBe(false);
    expect((await calls(log)).sort()).toEqual(['-c attach -v same', '-c detach -v same', '-c querydev -v same']);
    expect((await readFile(join(dir, 'concurrency'), 'utf8')).trim().split('\n')).toEqual(['1', '1', '1']);

    await rm(join(dir, 'concurrency'));
    await Promise.all([c.attach('vol-a'), c.attach('vol-b')]);
    expect(existsSync(join(dir, 'overlaps'))).toBe(false);
    const seen = (await readFile(join(dir, 'concurrency'), 'utf8')).trim().split('\n').map(Number);
    expect(Math.max(...seen)).toBe(2);
  });
});

function processState(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!;
  } catch {
    return 'gone';
  }
}
