// An in-process stand-in for the Kubernetes API server, enough of the REST API for src/kube:
//   GET  /api/v1/nodes/{name}
//   GET  /api/v1/nodes
//   GET  /api/v1/namespaces/{ns}/persistentvolumeclaims/{name}
//   POST /api/v1/namespaces/{ns}/events
// with bearer-token checks, recorded requests and injected faults (status codes, slow replies, dropped
// connections). Listens on 127.0.0.1 port 0, over HTTP or, with `tls`, HTTPS.
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body?: unknown;
}

/** One injected misbehaviour, used by the next request matching its route. */
export type Fault =
  | { status: number; retryAfterSeconds?: number; body?: unknown }
  /** hold the reply this long, then answer normally (or never, with Infinity) */
  | { delayMs: number }
  /** close the connection without a reply */
  | { dropConnection: true };

export type Route = 'node' | 'nodes' | 'pvc' | 'event';

export interface FakeNode {
  name: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  taints?: Array<{ key: string; value?: string; effect: 'NoSchedule' | 'PreferNoSchedule' | 'NoExecute' }>;
}

export interface FakePvc {
  namespace: string;
  name: string;
  annotations?: Record<string, string>;
}

export interface StoredEvent {
  namespace: string;
  object: Record<string, unknown>;
}

export interface FakeKubeApiOptions {
  /** required bearer token; requests without it get 401 */
  token?: string;
  /** serve HTTPS with this key and certificate (PEM) */
  tls?: { key: string; cert: string };
}

export class FakeKubeApi {
  readonly requests: RecordedRequest[] = [];
  readonly events: StoredEvent[] = [];
  private readonly nodes = new Map<string, Record<string, unknown>>();
  private readonly pvcs = new Map<string, Record<string, unknown>>();
  private readonly faults: Record<Route, Fault[]> = { node: [], nodes: [], pvc: [], event: [] };
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private server?: Server;
  private port = 0;

  constructor(private readonly options: FakeKubeApiOptions = {}) {}

  get url(): string {
    return `${this.options.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  get listeningPort(): number {
    return this.port;
  }

  async start(): Promise<this> {
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res);
    this.server = this.options.tls
      ? createHttpsServer({ key: this.options.tls.key, cert: this.options.tls.cert }, handler)
      : createHttpServer(handler);
    this.server.on(this.options.tls ? 'secureConnection' : 'connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    for (const socket of this.sockets) socket.destroy();
    if (this.server) await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }

  addNode(node: FakeNode): void {
    this.nodes.set(node.name, {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: node.name,
        uid: randomUUID(),
        resourceVersion: '1',
        labels: node.labels ?? {},
        annotations: node.annotations ?? {},
      },
      spec: node.taints ? { taints: node.taints } : {},
      status: {},
    });
  }

  addPvc(pvc: FakePvc): string {
    const uid = randomUUID();
    this.pvcs.set(`${pvc.namespace}/${pvc.name}`, {
      apiVersion: 'v1',
      kind: 'PersistentVolumeClaim',
      metadata: {
        name: pvc.name,
        namespace: pvc.namespace,
        uid,
        resourceVersion: '1',
        annotations: pvc.annotations ?? {},
      },
      spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } },
      status: { phase: 'Pending' },
    });
    return uid;
  }

  /** Queues faults for the next requests to a route, in order. */
  inject(route: Route, ...faults: Fault[]): void {
    this.faults[route].push(...faults);
  }

  requestsTo(route: Route): RecordedRequest[] {
    return this.requests.filter((r) => routeOf(r.method, r.path)?.route === route);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const method = req.method ?? 'GET';
    const raw = await readBody(req);
    let body: unknown;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
    }
    this.requests.push({ method, path, headers: req.headers, ...(body !== undefined ? { body } : {}) });

    if (this.options.token && req.headers.authorization !== `Bearer ${this.options.token}`) {
      return sendStatus(res, 401, 'Unauthorized', 'Unauthorized');
    }
    const match = routeOf(method, path);
    if (!match)
      return sendStatus(res, 404, 'NotFound', `the server could not find the requested resource (${method} ${path})`);

    const fault = this.faults[match.route].shift();
    if (fault && 'dropConnection' in fault) {
      req.socket.destroy();
      return;
    }
    if (fault && 'delayMs' in fault) {
      if (!Number.isFinite(fault.delayMs)) return; // never answer
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          resolve();
        }, fault.delayMs);
        this.timers.add(timer);
      });
      if (res.destroyed || req.socket.destroyed) return;
    }
    if (fault && 'status' in fault) {
      if (fault.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(fault.retryAfterSeconds));
      if (fault.body !== undefined) return sendJson(res, fault.status, fault.body);
      return sendStatus(res, fault.status, reasonFor(fault.status), `injected HTTP ${fault.status}`);
    }

    switch (match.route) {
      case 'nodes':
        return sendJson(res, 200, {
          apiVersion: 'v1',
          kind: 'NodeList',
          metadata: { resourceVersion: '1' },
          items: [...this.nodes.values()],
        });
      case 'node': {
        const node = this.nodes.get(match.name!);
        return node
          ? sendJson(res, 200, node)
          : sendStatus(res, 404, 'NotFound', `nodes "${match.name}" not found`, { kind: 'nodes', name: match.name });
      }
      case 'pvc': {
        const pvc = this.pvcs.get(`${match.namespace}/${match.name}`);
        return pvc
          ? sendJson(res, 200, pvc)
          : sendStatus(res, 404, 'NotFound', `persistentvolumeclaims "${match.name}" not found`, {
              kind: 'persistentvolumeclaims',
              name: match.name,
            });
      }
      case 'event':
        return this.createEvent(match.namespace!, body, res);
    }
  }

  /** Validates an Event the way the API server's core/v1 validation does, for the fields we send. */
  private createEvent(namespace: string, body: unknown, res: ServerResponse): void {
    const event = body as Record<string, any> | undefined;
    const problems: string[] = [];
    if (!event || event.kind !== 'Event' || event.apiVersion !== 'v1') problems.push('body must be a v1 Event');
    if (!event?.metadata?.name) problems.push('metadata.name: Required value');
    if (event?.metadata?.namespace && event.metadata.namespace !== namespace)
      problems.push('metadata.namespace: does not match the request');
    if (event?.involvedObject?.namespace !== namespace)
      problems.push('involvedObject.namespace: does not match event.namespace');
    if (event?.type !== 'Normal' && event?.type !== 'Warning') problems.push('type: Unsupported value');
    if (typeof event?.reason !== 'string' || event.reason.length > 128) problems.push('reason: Invalid value');
    if (problems.length > 0) return sendStatus(res, 422, 'Invalid', `Event is invalid: ${problems.join('; ')}`);
    if (this.events.some((e) => e.object.metadata && (e.object.metadata as any).name === event!.metadata.name)) {
      return sendStatus(res, 409, 'AlreadyExists', `events "${event!.metadata.name}" already exists`);
    }
    const stored = {
      ...event!,
      metadata: { ...event!.metadata, namespace, uid: randomUUID(), resourceVersion: String(this.events.length + 1) },
    };
    this.events.push({ namespace, object: stored });
    sendJson(res, 201, stored);
  }
}

function routeOf(method: string, path: string): { route: Route; namespace?: string; name?: string } | undefined {
  if (/^\/api\/v1\/nodes\/?$/.test(path) && method === 'GET') return { route: 'nodes' };
  let m = /^\/api\/v1\/nodes\/([^/]+)$/.exec(path);
  if (m && method === 'GET') return { route: 'node', name: decodeURIComponent(m[1]!) };
  m = /^\/api\/v1\/namespaces\/([^/]+)\/persistentvolumeclaims\/([^/]+)$/.exec(path);
  if (m && method === 'GET')
    return { route: 'pvc', namespace: decodeURIComponent(m[1]!), name: decodeURIComponent(m[2]!) };
  m = /^\/api\/v1\/namespaces\/([^/]+)\/events$/.exec(path);
  if (m && method === 'POST') return { route: 'event', namespace: decodeURIComponent(m[1]!) };
  return undefined;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function sendStatus(
  res: ServerResponse,
  code: number,
  reason: string,
  message: string,
  details?: Record<string, unknown>,
): void {
  sendJson(res, code, {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason,
    code,
    ...(details ? { details } : {}),
  });
}

function reasonFor(status: number): string {
  return (
    {
      400: 'BadRequest',
      401: 'Unauthorized',
      403: 'Forbidden',
      404: 'NotFound',
      409: 'AlreadyExists',
      422: 'Invalid',
      429: 'TooManyRequests',
      500: 'InternalError',
      503: 'ServiceUnavailable',
      504: 'Timeout',
    }[status] ?? 'Unknown'
  );
}

/** Writes a kubeconfig pointing at `server` with a bearer token; returns its path. */
export async function writeKubeconfig(
  dir: string,
  server: string,
  token: string,
  options: { caFile?: string; fileName?: string } = {},
): Promise<string> {
  const path = join(dir, options.fileName ?? 'kubeconfig');
  const cluster = options.caFile
    ? `    server: ${server}\n    certificate-authority: ${options.caFile}\n`
    : `    server: ${server}\n`;
  await writeFile(
    path,
    `apiVersion: v1
kind: Config
clusters:
  - name: fake
    cluster:
${cluster.replace(/^ {4}/gm, '      ')}contexts:
  - name: fake
    context:
      cluster: fake
      user: fake-user
current-context: fake
users:
  - name: fake-user
    user:
      token: ${token}
`,
    { mode: 0o600 },
  );
  return path;
}
