// http(s) imports cannot be pointed at what only the VBS host can reach (issue #15, item 5): a "secret"
// served on a 127.0.0.1 port of the test's own is refused by default, directly, by name and through a
// redirect, and is imported when --image-url-allow names it; redirects go only to http(s), and each hop
// is checked on the address connected to.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../emulator/config.js';
import { RetCode } from '../src/protocol/vbs.js';
import { call, type Daemon, startDaemon, stopAndCheck, volumePath, waitJob } from './support/emulator.js';

const SECRET = Buffer.concat([Buffer.from('METADATA-SECRET\n'), randomBytes(4080)]);

function serve(host: string, handler: http.RequestListener): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer(handler);
  return new Promise((resolve) =>
    server.listen(0, host, () => resolve({ server, port: (server.address() as AddressInfo).port })),
  );
}

describe('http(s) image imports and the addresses they may reach', () => {
  let secret: { server: http.Server; port: number };
  let other: { server: http.Server; port: number };
  let base: string;
  const daemons: Daemon[] = [];

  beforeAll(async () => {
    // A second loopback address stands for "somewhere else the allowlist does not name".
    other = await serve('127.0.0.2', (_req, res) => {
      res.writeHead(200, { 'content-length': String(SECRET.length) });
      res.end(SECRET);
    });
    secret = await serve('127.0.0.1', (req, res) => {
      if (req.url === '/secret') {
        res.writeHead(200, { 'content-length': String(SECRET.length) });
        res.end(SECRET);
      } else if (req.url === '/to-other') {
        res.writeHead(302, { location: `http://127.0.0.2:${other.port}/secret` });
        res.end();
      } else if (req.url === '/to-file') {
        res.writeHead(302, { location: 'file:///etc/passwd' });
        res.end();
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    base = `http://127.0.0.1:${secret.port}`;
  });

  afterAll(async () => {
    secret?.server.close();
    other?.server.close();
    for (const d of daemons) expect(await stopAndCheck(d)).toEqual({ code: 0, loops: [], mounts: [] });
  });

  async function importOf(d: Daemon, name: string, url: string) {
    return call(d.info.controlSocket, 'IMPORT_IMAGE_REQ', { vol_name: name, image_url: url, vol_size: 1 });
  }

  it('by default refuses loopback, link-local and unspecified addresses, by IP and by name, before any volume exists', async () => {
    const d = await startDaemon({ args: ['--pool', 'pool0:1G'] });
    daemons.push(d);
    const cases: Array<[string, string, RegExp]> = [
      ['ip', `${base}/secret`, /127\.0\.0\.1, a loopback/],
      ['name', `http://localhost:${secret.port}/secret`, /loopback, link-local or unspecified/],
      ['v6', `http://[::1]:${secret.port}/secret`, /loopback, link-local or unspecified/],
      ['mapped', `http://[::ffff:127.0.0.1]:${secret.port}/secret`, /loopback, link-local or unspecified/],
      ['meta', 'http://169.254.169.254/latest/meta-data/', /169\.254\.169\.254, a loopback, link-local/],
      ['zero', `http://0.0.0.0:${secret.port}/secret`, /loopback, link-local or unspecified/],
    ];
    for (const [name, url, why] of cases) {
      const a = await importOf(d, `ssrf-${name}`, url);
      expect([name, a.retcode, a.get('ret_desc')]).toEqual([name, RetCode.IMAGE_ERROR, expect.stringMatching(why)]);
      expect((await call(d.info.controlSocket, 'QUERY_VOLUME_REQ', { vol_name: `ssrf-${name}` })).retcode).toBe(
        RetCode.NOT_EXIST,
      );
    }
  });

  it('imports from an allowlisted address; a redirect elsewhere or to a file is refused', async () => {
    const d = await startDaemon({ args: ['--pool', 'pool0:1G', '--image-url-allow', '127.0.0.1/32'] });
    daemons.push(d);
    const a = await importOf(d, 'allowed', `${base}/secret`);
    expect(a.retcode, a.text).toBe(0);
    expect((await waitJob(d.info.controlSocket, a.get('job_id')!)).status).toBe('done');
    expect(readFileSync(volumePath(d, 'allowed')).subarray(0, SECRET.length).equals(SECRET)).toBe(true);

    const b = await importOf(d, 'redirected', `${base}/to-other`);
    expect([b.retcode, b.get('ret_desc')]).toEqual([
      RetCode.IMAGE_ERROR,
      expect.stringMatching(/127\.0\.0\.2, a loopback/),
    ]);
    const c = await importOf(d, 'to-file', `${base}/to-file`);
    expect([c.retcode, c.get('ret_desc')]).toEqual([
      RetCode.IMAGE_ERROR,
      expect.stringMatching(/not an http\(s\) URL/),
    ]);
  });

  it('SDS_IMAGE_URL_ALLOW naming a host lets that name through, not the address it resolves to', async () => {
    const d = await startDaemon({ args: ['--pool', 'pool0:1G'], env: { SDS_IMAGE_URL_ALLOW: 'localhost' } });
    daemons.push(d);
    const a = await importOf(d, 'by-name', `http://localhost:${secret.port}/secret`);
    expect(a.retcode, a.text).toBe(0);
    expect((await waitJob(d.info.controlSocket, a.get('job_id')!)).status).toBe('done');
    expect(readFileSync(volumePath(d, 'by-name')).subarray(0, SECRET.length).equals(SECRET)).toBe(true);
    const b = await importOf(d, 'by-ip', `${base}/secret`);
    expect([b.retcode, b.get('ret_desc')]).toEqual([
      RetCode.IMAGE_ERROR,
      expect.stringMatching(/127\.0\.0\.1, a loopback/),
    ]);
  });

  it('--image-url-allow takes host names, addresses and CIDRs, and names a bad entry', () => {
    const ok = loadConfig(
      ['--image-url-allow', 'mirror.example.com', '--image-url-allow', '10.0.0.0/8', '--image-url-allow', 'fd00::/8'],
      {},
    );
    expect(ok.config?.imageUrlAllow).toEqual(['mirror.example.com', '10.0.0.0/8', 'fd00::/8']);
    expect(loadConfig([], { SDS_IMAGE_URL_ALLOW: '127.0.0.1, ::1' }).config?.imageUrlAllow).toEqual([
      '127.0.0.1',
      '::1',
    ]);
    for (const bad of ['10.0.0.0/33', 'http://x', 'a b']) {
      expect(() => loadConfig(['--image-url-allow', bad], {})).toThrow(ConfigError);
      expect(() => loadConfig(['--image-url-allow', bad], {})).toThrow(/--image-url-allow \(SDS_IMAGE_URL_ALLOW\)/);
    }
  });
});
