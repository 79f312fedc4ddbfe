// The tests' own image web server on 127.0.0.1: the files of a directory by name, and a stalled download
// the test releases, for imports that must be seen running.
import { createReadStream, existsSync, statSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface ImageServer {
  /** `http://127.0.0.1:<port>` */
  readonly base: string;
  /** Set while a GET /stall waits after the first 64 KiB of its body: sends the rest. */
  releaseStall: (() => void) | undefined;
  /** Releases a stall, drops the connections and stops listening. */
  close(): void;
}

/**
 * Serves `GET /<name>` from the files of `dir` (names of [a-z0-9.] only; 404 otherwise), and `GET /stall`:
 * the length of `stallBody` and its first 64 KiB at once, the rest on `releaseStall()`. `routes` answer
 * further paths (a redirect) before the files.
 */
export async function serveImages(
  dir: string,
  stallBody: Buffer,
  routes: Record<string, (res: http.ServerResponse) => void> = {},
): Promise<ImageServer> {
  const head = 64 * 1024;
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/';
    if (url === '/stall') {
      res.writeHead(200, { 'content-length': String(stallBody.length) });
      res.write(stallBody.subarray(0, head));
      images.releaseStall = () => {
        images.releaseStall = undefined;
        res.end(stallBody.subarray(head));
      };
      return;
    }
    const route = routes[url];
    if (route) return route(res);
    const file = join(dir, url.slice(1));
    if (!/^\/[a-z0-9.]+$/.test(url) || !existsSync(file)) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-length': String(statSync(file).size) });
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const images: ImageServer = {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    releaseStall: undefined,
    close() {
      images.releaseStall?.();
      server.closeAllConnections();
      server.close();
    },
  };
  return images;
}
