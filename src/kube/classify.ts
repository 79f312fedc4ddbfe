// Sorting a failed API call into retryable (429, 5xx, network, an unreadable reply) or final, as a KubeError
// whose message names the operation and never carries a credential.
import { ApiException } from '@kubernetes/client-node';
import { KubeError } from './errors.js';
import type { AttemptFailure } from './retry.js';

const RETRYABLE_NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
]);

/** Sorts a failed attempt into retryable or final, with a message naming the operation. */
export function classify(operation: string, err: unknown): AttemptFailure {
  if (err instanceof ApiException) {
    const status = err.code;
    const detail = statusDetail(err.body);
    const message = `${operation}: HTTP ${status}${detail ? `: ${detail}` : ''}`;
    if (status === 429 || status >= 500) {
      return {
        retryable: true,
        error: new KubeError('Unavailable', message, status),
        retryAfterMs: retryAfterMs(err.headers),
      };
    }
    if (status === 404) return { retryable: false, error: new KubeError('NotFound', message, status) };
    if (status === 401 || status === 403)
      return { retryable: false, error: new KubeError('Forbidden', message, status) };
    return { retryable: false, error: new KubeError('Rejected', message, status) };
  }
  if (err instanceof KubeError) return { retryable: false, error: err };
  const code = (err as { code?: unknown } | null)?.code;
  const type = (err as { type?: unknown } | null)?.type;
  // node-fetch quotes a header it refuses (e.g. a token file ending in a newline): never pass a token on.
  const text = redactCredentials(err instanceof Error ? err.message : String(err));
  // node-fetch's FetchError: type 'system' with an errno-style code for socket failures.
  if (
    (typeof code === 'string' && RETRYABLE_NETWORK_CODES.has(code)) ||
    type === 'system' ||
    type === 'request-timeout'
  ) {
    return { retryable: true, error: new KubeError('Unavailable', `${operation}: ${text}`, undefined, { cause: err }) };
  }
  // A reply we could not parse (e.g. a proxy's HTML page): another attempt may meet a healthy server.
  if (err instanceof SyntaxError || type === 'invalid-json') {
    return {
      retryable: true,
      error: new KubeError('Unavailable', `${operation}: unreadable reply: ${text}`, undefined, { cause: err }),
    };
  }
  // No cause here: the original message may hold what redactCredentials removed.
  return { retryable: false, error: new KubeError('Rejected', `${operation}: ${text}`) };
}

function redactCredentials(text: string): string {
  return text.replace(/\b(Bearer|Basic)\s+\S+/gi, '$1 [REDACTED]');
}

/** The reason and message of a Kubernetes Status body, if the body is one. */
function statusDetail(body: unknown): string | undefined {
  let parsed = body;
  if (typeof body === 'string') {
    try {
      parsed = JSON.parse(body);
    } catch {
      return body.length > 0 ? body.slice(0, 200) : undefined;
    }
  }
  if (parsed && typeof parsed === 'object') {
    const { reason, message } = parsed as { reason?: unknown; message?: unknown };
    const parts = [
      typeof reason === 'string' ? reason : undefined,
      typeof message === 'string' ? message : undefined,
    ].filter(Boolean);
    if (parts.length > 0) return parts.join(': ');
  }
  return undefined;
}

function retryAfterMs(headers: Record<string, string> | undefined): number | undefined {
  const value = headers?.['retry-after'];
  if (!value) return undefined;
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds * 1000 : undefined;
}
