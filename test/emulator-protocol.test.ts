// The emulator's socket API transport: framing (empty line, EOF, quiet period, the original Cinder form),
// limits, malformed input, token, request ids, TCP and unix socket, settings validation.
import { spawnSync } from 'node:child_process';
import { statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseReply } from '../src/protocol/vbs.js';
import { call, type Daemon, EMULATOR_MAIN, exchange, forceCleanup, makeTempDir } from './support/emulator.js';
import { daemonForSuite } from './support/emulator-suite.js';

describe('emulator socket API transport', () => {
  let d: Daemon;
  let sock: string;

  // A long quiet period proves that the empty line and EOF end a request without it.
  daemonForSuite(
    { args: ['--extra-host', 'host-b', '--extra-host', 'host-c', '--request-quiet-ms', '3000'] },
    (started) => {
      d = started;
      sock = started.info.controlSocket;
    },
  );

  it('serves the unix socket with mode 0600 and TCP on 127.0.0.1', async () => {
    expect(statSync(sock).mode & 0o777).toBe(0o600);
    expect(statSync(d.info.kvSocket).mode & 0o777).toBe(0o600);
    expect(d.info.tcpPort).toBeGreaterThan(0);
    const overTcp = await call({ port: d.info.tcpPort }, 'QUERY_CAPABILITY_REQ');
    expect(overTcp.retcode).toBe(0);
    expect(overTcp.get('product')).toBe('SDSHypervisor');
  });

  it('answers QUERY_CAPABILITY_REQ with host id, limits and capabilities', async () => {
    const a = await call(sock, 'QUERY_CAPABILITY_REQ');
    expect(a.retcode).toBe(0);
    expect(a.text.startsWith('retcode=0\n')).toBe(true);
    expect(a.get('host_id')).toBe(d.info.hostId);
    expect(a.get('api_version')).toBe('1');
    expect(a.get('max_request_bytes')).toBe('65536');
    expect(a.get('max_reply_bytes')).toBe('1048576');
    expect(a.get('max_list_limit')).toBe('1000');
    const caps = a.fields.getAll('capability');
    for (const c of [
      'linked_clone',
      'full_clone',
      'clone_volume',
      'list',
      'qos',
      'cache',
      'image_import',
      'image_export',
      'map',
      'auth_token',
    ]) {
      expect(caps).toContain(c);
    }
  });

  it('lists this host and the extra hosts', async () => {
    const a = await call(sock, 'QUERY_HOSTS_REQ');
    expect(a.get('host_num')).toBe('3');
    expect(a.record('host0')).toEqual({ host_id: d.info.hostId, local: '1', online: '1' });
    expect([a.record('host1').host_id, a.record('host2').host_id].sort()).toEqual(['host-b', 'host-c']);
    expect(a.record('host1').local).toBe('0');
  });

  it('echoes request_id and refuses a bad one', async () => {
    const a = await call(sock, 'QUERY_VOLUME_REQ', { vol_name: 'nope', request_id: 'req-42 abc' });
    expect(a.retcode).toBe(-900079);
    expect(a.get('request_id')).toBe('req-42 abc');
    const bad = await call(sock, 'QUERY_CAPABILITY_REQ', { request_id: 'x'.repeat(129) });
    expect(bad.retcode).toBe(-900003);
    expect(bad.get('ret_desc')).toMatch(/^request_id:/);
  });

  it('answers the original Cinder form: one write, no empty line, never half-closed; the server closes', async () => {
    const bytes = Buffer.from('[CREATE_VOLUME_REQ]\nvol_name=volume-1\nvol_size=1024\npool_id=pool0\nthin_flag=1\n');
    const started = Date.now();
    const r = await exchange(sock, bytes, { timeoutMs: 15_000 });
    expect(r.closedByServer).toBe(true);
    const reply = parseReply(r.data);
    expect(reply.retcode).toBe(0);
    expect(r.data.toString().startsWith('retcode=0\n')).toBe(true);
    // It was the quiet period (3 s here) that ended it, not a timeout of the test.
    expect(Date.now() - started).toBeGreaterThanOrEqual(2900);
    // The original client read one 1,024-byte recv: the reply to the original requests fits.
    expect(r.data.length).toBeLessThanOrEqual(1024);
    const del = await exchange(sock, Buffer.from('[DELETE_VOLUME_REQ]\nvol_name=volume-1\n'), { timeoutMs: 15_000 });
    expect(parseReply(del.data).retcode).toBe(0);
  });

  it('ends a request at the empty line without waiting for the quiet period or EOF', async () => {
    const started = Date.now();
    const r = await exchange(sock, Buffer.from('[QUERY_VOLUME_REQ]\r\nvol_name=absent\r\n\r\n'), { timeoutMs: 15_000 });
    expect(r.closedByServer).toBe(true);
    expect(parseReply(r.data).retcode).toBe(-900079);
    expect(Date.now() - started).toBeLessThan(2500);
  });

  it('ends a request at EOF (half-close), even without a final newline', async () => {
    const started = Date.now();
    const r = await exchange(sock, Buffer.from('[QUERY_VOLUME_REQ]\nvol_name=absent'), {
      halfClose: true,
      timeoutMs: 15_000,
    });
    expect(parseReply(r.data).retcode).toBe(-900079);
    expect(Date.now() - started).toBeLessThan(2500);
  });

  it('does not cut a request in the middle of a line, however slowly it arrives', async () => {
    const r = await exchange(sock, [Buffer.from('[QUERY_VOLUME_REQ]\nvol_na'), Buffer.from('me=absent-2\n\n')], {
      gapMs: 300,
      timeoutMs: 15_000,
    });
    const reply = parseReply(r.data);
    expect(reply.retcode).toBe(-900079);
    expect(reply.fields.get('ret_desc')).toContain('absent-2');
  });

  it('answers a request over 64 KiB with -900005 and closes', async () => {
    const big = Buffer.from(`[QUERY_CAPABILITY_REQ]\npad=${'x'.repeat(70 * 1024)}\n\n`);
    const r = await exchange(sock, big, { timeoutMs: 15_000 });
    expect(r.closedByServer).toBe(true);
    expect(parseReply(r.data).retcode).toBe(-900005);
  });

  it.each([
    ['garbage', Buffer.from('hello world\n\n'), -900001],
    ['a line without =', Buffer.from('[QUERY_VOLUME_REQ]\nvol_name\n\n'), -900001],
    ['a NUL byte', Buffer.from('[QUERY_VOLUME_REQ]\nvol_name=a\u0000b\n\n'), -900001],
    [
      'invalid UTF-8',
      Buffer.concat([Buffer.from('[QUERY_VOLUME_REQ]\nvol_name=a'), Buffer.from([0xc3, 0x28]), Buffer.from('\n\n')]),
      -900001,
    ],
    ['a bad key', Buffer.from('[QUERY_VOLUME_REQ]\n1abc=x\n\n'), -900001],
    ['an unknown request type', Buffer.from('[FROBNICATE_REQ]\n\n'), -900002],
    ['a missing key', Buffer.from('[QUERY_VOLUME_REQ]\n\n'), -900003],
    ['a bad name', Buffer.from('[QUERY_VOLUME_REQ]\nvol_name=../etc\n\n'), -900003],
  ])('refuses %s', async (_what, bytes, code) => {
    const r = await exchange(sock, bytes, { timeoutMs: 15_000 });
    const reply = parseReply(r.data);
    expect(reply.retcode).toBe(code);
    expect(reply.fields.get('ret_desc')?.length).toBeGreaterThan(0);
  });

  it('closes an empty connection without a reply and keeps serving', async () => {
    const r = await exchange(sock, Buffer.alloc(0), { halfClose: true, timeoutMs: 15_000 });
    expect(r.data.length).toBe(0);
    expect((await call(sock, 'QUERY_CAPABILITY_REQ')).retcode).toBe(0);
  });

  it('drops a request still incomplete after 10 s, without a reply', async () => {
    const r = await exchange(sock, Buffer.from('[QUERY_CAPAB'), { timeoutMs: 30_000 });
    expect(r.closedByServer).toBe(true);
    expect(r.data.length).toBe(0);
  }, 40_000);
});

describe('emulator token', () => {
  let d: Daemon;
  const token = 's3cret-token-value';

  daemonForSuite(
    () => {
      const dir = makeTempDir();
      const file = join(dir, 'token');
      writeFileSync(file, `${token}\n`, { mode: 0o600 });
      return { dir, args: ['--token-file', file] };
    },
    (started) => (d = started),
  );

  it('refuses a request without the token, or with a wrong one, with -900004', async () => {
    const missing = await call(d.info.controlSocket, 'QUERY_CAPABILITY_REQ');
    expect(missing.retcode).toBe(-900004);
    const wrong = await call(d.info.controlSocket, 'QUERY_CAPABILITY_REQ', { auth_token: 's3cret-token-valuX' });
    expect(wrong.retcode).toBe(-900004);
    const short = await call({ port: d.info.tcpPort }, 'QUERY_CAPABILITY_REQ', { auth_token: 's' });
    expect(short.retcode).toBe(-900004);
    // The token is checked before anything else: an unknown type without it is still AUTH_FAILED.
    expect((await call(d.info.controlSocket, 'NO_SUCH_REQ')).retcode).toBe(-900004);
  });

  it('accepts the right token on both sockets', async () => {
    const a = await call(d.info.controlSocket, 'QUERY_CAPABILITY_REQ', { auth_token: token, request_id: 'tok-1' });
    expect(a.retcode).toBe(0);
    expect(a.get('request_id')).toBe('tok-1');
    expect((await call({ port: d.info.tcpPort }, 'QUERY_HOSTS_REQ', { auth_token: token })).retcode).toBe(0);
  });
});

describe('emulator settings', () => {
  const run = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    spawnSync(process.execPath, [EMULATOR_MAIN, ...args], {
      encoding: 'utf8',
      env: { ...process.env, ...env },
      timeout: 30_000,
    });

  it('prints --help and exits 0', () => {
    const r = run(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('--data-dir');
    expect(r.stdout).toContain('--pool');
  });

  it.each([
    [['--listen-port', 'abc'], {}, '--listen-port'],
    [['--listen-port', '70000'], {}, '--listen-port'],
    [[], { SDS_VBS_PORT: 'x' }, 'SDS_VBS_PORT'],
    [['--pool', 'bad/name'], {}, '--pool'],
    [['--pool', 'p0:12Q'], {}, '--pool'],
    [['--max-oversubscription', '0.5'], {}, '--max-oversubscription'],
    [['--pool-type', 'zfs'], {}, '--pool-type'],
    [['--host-id', '-x'], {}, '--host-id'],
    [['--no-such-flag'], {}, '--no-such-flag'],
    [['--data-dir', 'relative/dir'], {}, '--data-dir'],
  ])('exits 2 naming the setting for %j %j', (args, env, named) => {
    const dir = makeTempDir();
    try {
      const r = run(['--data-dir', join(dir, 'data'), ...args], env as NodeJS.ProcessEnv);
      expect(r.status).toBe(2);
      expect(r.stderr).toContain(named);
    } finally {
      forceCleanup(dir);
    }
  });
});
