// The operations HTTP listener (--metrics-address): GET /metrics (Prometheus text exposition) and
// GET /healthz (the same back-end probe as Identity.Probe: 200 "ok", or 503 and the reason). Anything else
// is 404. Plain node:http: two routes do not need a framework.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Registry } from 'prom-client';
import type { ProbeResult } from '../identity/probe.js';
import type { Logger } from '../log/logger.js';

export interface OpsHttpOptions {
  /** `host:port`, `[v6]:port` or `:port` (all interfaces); port 0 picks a free one */
  address: string;
  registry: Registry;
  health: () => Promise<ProbeResult>;
  log: Logger;
}

/** `host:port` → its parts; an empty host means every interface. Throws on anything else. */
export function parseListenAddress(address: string): { host: string | undefined; port: number } {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(address) ?? /^([^:[\]]*):(\d{1,5})$/.exec(address);
  if (!m || Number(m[2]) > 65535)
    throw new Error(`metrics address must be host:port, [v6]:port or :port, got ${JSON.stringify(address)}`);
  return { host: m[1] === '' ? undefined : m[1], port: Number(m[2]) };
}

function formatAddress(info: AddressInfo): string {
  return info.family === 'IPv6' ? `[${info.address}]:${info.port}` : `${info.address}:${info.port}`;
}

export class OpsHttpServer {
  private readonly sockets = new Set<Socket>();
  private closed = false;

  private constructor(
    private readonly server: Server,
    /** the bound address, `host:port` */
    readonly address: string,
  ) {
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
    });
  }

  static async start(options: OpsHttpOptions): Promise<OpsHttpServer> {
    const { host, port } = parseListenAddress(options.address);
    const server = createServer((req, res) => {
      handle(req, res, options).catch((err: unknown) => {
        options.log.error({ err, path: req.url }, 'metrics endpoint failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end('internal error\n');
      });
    });
    // A scraper that opens a connection and sends nothing must not hold it forever.
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    const bound = new OpsHttpServer(server, formatAddress(server.address() as AddressInfo));
    options.log.info(
      {
        address: bound.address,
        metrics: `http://${bound.address}/metrics`,
        healthz: `http://${bound.address}/healthz`,
      },
      'metrics listening',
    );
    return bound;
  }

  /** Stops listening and drops idle keep-alive connections; a response being written is cut after `graceMs`. */
  async close(graceMs = 1_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const done = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const timer = setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, graceMs);
    await done;
    clearTimeout(timer);
  }
}

async function handle(req: IncomingMessage, res: ServerResponse, options: OpsHttpOptions): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  const text = (status: number, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  if (path !== '/metrics' && path !== '/healthz') return text(404, 'not found: try /metrics or /healthz\n');
  if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed\n', { allow: 'GET, HEAD' });
  if (path === '/healthz') {
    const result = await options.health();
    return result.ready ? text(200, 'ok\n') : text(503, `not ready: ${result.reason ?? 'unknown'}\n`);
  }
  const body = await options.registry.metrics();
  return text(200, body, { 'content-type': options.registry.contentType });
}
