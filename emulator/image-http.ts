// http(s) sources of image imports: the first bytes are read up front (to detect the format), redirects
// are followed (at most 5, only to http and https), and every connection is checked by url-guard.ts on the
// address actually connected to.
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { imageError, invalid } from './errors.js';
import { guardedLookup, refusal, type UrlAllowlist } from './url-guard.js';
import { urlWithoutCredentials } from '../src/protocol/urls.js';
import { Key } from '../src/protocol/catalog.js';

const HTTP_HEADER_TIMEOUT_MS = 10_000;
const HTTP_IDLE_TIMEOUT_MS = 60_000;

export interface HttpSource {
  kind: 'http';
  url: string;
  response: IncomingMessage;
  size: number | undefined;
  head: Buffer;
}

/**
 * Opens an HTTP(S) source and reads its first bytes (to detect the format); follows up to 5 redirects, each
 * only to http(s) and each checked like the first URL: the address connected to must be allowed (url-guard.ts).
 */
export async function openHttp(url: string, allow: UrlAllowlist, redirects = 0): Promise<HttpSource> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(Key.IMAGE_URL, 'is not a valid URL');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw imageError(
      `image_url: ${urlWithoutCredentials(url)} is not an http(s) URL (redirects go only to http and https)`,
    );
  }
  // An IP literal is connected to without a lookup: checked here; names are checked by the lookup.
  const literal = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  const literalRefusal = isIP(literal) ? refusal(allow, parsed.hostname, literal) : undefined;
  if (literalRefusal) throw imageError(`image_url: cannot fetch ${urlWithoutCredentials(url)}: ${literalRefusal}`);
  const response = await new Promise<IncomingMessage>((resolvePromise, reject) => {
    const get = parsed.protocol === 'https:' ? https.get : http.get;
    const req = get(parsed, { timeout: HTTP_HEADER_TIMEOUT_MS, lookup: guardedLookup(allow), agent: false }, (res) => {
      // The address actually connected to, whatever resolved it.
      const why = refusal(allow, parsed.hostname, res.socket.remoteAddress ?? '');
      if (why) {
        res.destroy();
        reject(new Error(why));
      } else resolvePromise(res);
    });
    req.on('socket', (socket) =>
      socket.once('connect', () => {
        const why = refusal(allow, parsed.hostname, socket.remoteAddress ?? '');
        if (why) req.destroy(new Error(why));
      }),
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${HTTP_HEADER_TIMEOUT_MS} ms`)));
    req.on('error', reject);
  }).catch((err: Error) => {
    throw imageError(`image_url: cannot fetch ${urlWithoutCredentials(url)}: ${err.message}`);
  });
  const status = response.statusCode ?? 0;
  if ([301, 302, 303, 307, 308].includes(status) && response.headers.location) {
    response.destroy();
    if (redirects >= 5) throw imageError(`image_url: too many redirects from ${urlWithoutCredentials(url)}`);
    let next: string;
    try {
      next = new URL(response.headers.location, parsed).toString();
    } catch {
      throw imageError(`image_url: ${urlWithoutCredentials(url)} redirects to an invalid URL`);
    }
    return openHttp(next, allow, redirects + 1);
  }
  if (status !== 200) {
    response.destroy();
    throw imageError(`image_url: ${urlWithoutCredentials(url)} answered HTTP ${status}`);
  }
  response.setTimeout(HTTP_IDLE_TIMEOUT_MS, () =>
    response.destroy(new Error(`no data for ${HTTP_IDLE_TIMEOUT_MS / 1000} s`)),
  );
  const lengthHeader = response.headers['content-length'];
  const size = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
  const head = await new Promise<Buffer>((resolvePromise, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const done = (): void => {
      response.off('data', onData);
      response.off('end', done);
      response.off('error', reject);
      response.pause();
      resolvePromise(Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= 512) done();
    };
    response.on('data', onData);
    response.on('end', done);
    response.on('error', reject);
  }).catch((err: Error) => {
    throw imageError(`image_url: cannot read ${urlWithoutCredentials(url)}: ${err.message}`);
  });
  return { kind: 'http', url, response, size, head };
}
