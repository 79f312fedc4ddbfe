// Helpers for the operations tests: the driver's JSON log lines, the metrics address it logged, plain HTTP
// GETs of /metrics and /healthz, and a parser for the Prometheus text exposition.
import { request } from 'node:http';

export type LogLine = Record<string, unknown> & { msg?: string; level?: number };

/** The JSON lines of a pino log (other lines, e.g. a stack trace printed by Node, are skipped). */
export function logLines(text: string): LogLine[] {
  const lines: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(line) as LogLine);
    } catch {
      // a line cut short by the buffer's limit
    }
  }
  return lines;
}

/** The `host:port` the driver logged in its last "metrics listening" line. */
export function metricsAddressFrom(log: string): string {
  const line = logLines(log)
    .filter((l) => l.msg === 'metrics listening')
    .at(-1);
  if (!line || typeof line.address !== 'string')
    throw new Error(`no "metrics listening" line in the driver log:\n${log.slice(-3000)}`);
  return line.address;
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export function httpRequest(url: string, options: { method?: string; timeoutMs?: number } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: options.method ?? 'GET', timeout: options.timeoutMs ?? 15_000, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer within ${options.timeoutMs ?? 15_000} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** One sample of the text exposition: name, labels, value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (!m) throw new Error(`unparsable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    samples.push({ name: m[1]!, labels, value });
  }
  return samples;
}

/** The samples of a scrape, with a lookup by name and (a subset of) labels. */
export class Scrape {
  constructor(readonly samples: Sample[]) {}

  static async of(address: string): Promise<Scrape> {
    const answer = await httpRequest(`http://${address}/metrics`);
    if (answer.status !== 200) throw new Error(`/metrics answered ${answer.status}: ${answer.body}`);
    return new Scrape(parseExposition(answer.body));
  }

  all(name: string, labels: Record<string, string> = {}): Sample[] {
    return this.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  }

  /** The value of the one matching sample; 0 when there is none (a counter not yet touched). */
  value(name: string, labels: Record<string, string> = {}): number {
    const found = this.all(name, labels);
    if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} samples`);
    return found[0]?.value ?? 0;
  }

  has(name: string): boolean {
    return this.samples.some((s) => s.name === name);
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true, or fails with `what` after `timeoutMs`. */
export async function eventually(
  what: string,
  check: () => Promise<boolean> | boolean,
  timeoutMs = 20_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(100);
  }
}
