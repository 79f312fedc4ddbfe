// The socket under the VBS client: address parsing and one request/reply exchange on one connection
// (docs/socket-api.md §1.1). No retries and no protocol knowledge beyond framing: the client decides.
import { connect, type Socket } from 'node:net';
import { DEFAULT_VBS_PORT, MAX_REPLY_BYTES } from '../protocol/vbs.js';

export type VbsAddress =
  | { kind: 'tcp'; host: string; port: number; /** as configured, for messages */ text: string }
  | { kind: 'unix'; path: string; text: string };

/** Thrown for an unusable address string; `message` names the offending entry. */
export class AddressError extends Error {
  override name = 'AddressError';
}

/**
 * Parses one address: `tcp://host:port`, `host:port`, `host`, `[v6]:port`, `unix:///abs/path`.
 * An address without a port gets `defaultPort`.
 */
export function parseAddress(input: string, defaultPort: number = DEFAULT_VBS_PORT): VbsAddress {
  const text = input.trim();
  if (text === '') throw new AddressError('empty VBS address');
  if (text.startsWith('unix://')) {
    const path = text.slice('unix://'.length);
    if (!path.startsWith('/') || path.includes('\0')) {
      throw new AddressError(
        `VBS address ${JSON.stringify(text)}: unix:// needs an absolute path (unix:///run/x.sock)`,
      );
    }
    return { kind: 'unix', path, text };
  }
  let rest = text;
  if (rest.startsWith('tcp://')) rest = rest.slice('tcp://'.length);
  else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(rest)) {
    throw new AddressError(`VBS address ${JSON.stringify(text)}: only tcp:// and unix:// are supported`);
  }
  rest = rest.replace(/\/$/, '');
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([0-9A-Fa-f:.]+)\](?::(.*))?$/.exec(rest);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
  } else if ((rest.match(/:/g) ?? []).length > 1) {
    host = rest; // a bare IPv6 address: no port can follow it unambiguously
  } else {
    const colon = rest.lastIndexOf(':');
    host = colon === -1 ? rest : rest.slice(0, colon);
    portText = colon === -1 ? undefined : rest.slice(colon + 1);
  }
  if (!/^[A-Za-z0-9.:_-]+$/.test(host)) throw new AddressError(`VBS address ${JSON.stringify(text)}: bad host`);
  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
      throw new AddressError(`VBS address ${JSON.stringify(text)}: port must be 1-65535`);
    }
    port = Number(portText);
  }
  return { kind: 'tcp', host, port, text };
}

/** Parses a comma-separated list (or an array) of addresses, keeping their order. */
export function parseAddressList(
  input: string | readonly string[],
  defaultPort: number = DEFAULT_VBS_PORT,
): VbsAddress[] {
  const items = (typeof input === 'string' ? input.split(',') : [...input])
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new AddressError('no VBS address given');
  return items.map((s) => parseAddress(s, defaultPort));
}

export function formatAddress(address: VbsAddress): string {
  return address.kind === 'unix'
    ? `unix://${address.path}`
    : `${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
}

export type TransportFailure =
  /** connection refused, unreachable, socket file missing, name not resolved */
  | 'connect-failed'
  /** the VBS is there but its accept queue is full (EAGAIN on a unix socket): nothing was sent */
  | 'overloaded'
  /** no connection within the connect timeout */
  | 'connect-timeout'
  /** connected and sent, then the connection broke or closed without a reply */
  | 'no-reply'
  /** sent, and the deadline passed before the reply was complete */
  | 'timeout'
  /** the reply grew past the limit */
  | 'oversize'
  /** the caller's signal fired */
  | 'aborted';

export class TransportError extends Error {
  override name = 'TransportError';
  constructor(
    readonly failure: TransportFailure,
    /** whether the request may have reached the VBS (the connection was made and the bytes written) */
    readonly sent: boolean,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface ExchangeOptions {
  connectTimeoutMs: number;
  /** absolute time (Date.now() scale) by which the reply must be complete */
  deadline: number;
  signal?: AbortSignal;
  maxReplyBytes?: number;
  /** called once the connection is up and the request written (the client's sticky address) */
  onSent?: () => void;
}

/**
 * One request on one connection: connect, write the whole request in one write, read the reply to EOF.
 * The socket is never half-closed: the request carries its own end (the empty line), as the contract wants,
 * and a VBS that only knows the original framing still sees the bytes the original client sent.
 */
export function exchange(address: VbsAddress, request: Uint8Array, options: ExchangeOptions): Promise<Buffer> {
  const maxReply = options.maxReplyBytes ?? MAX_REPLY_BYTES;
  const where = formatAddress(address);
  return new Promise<Buffer>((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(
        new TransportError('aborted', false, `aborted before connecting to ${where}`, { cause: options.signal.reason }),
      );
      return;
    }
    const remaining = options.deadline - Date.now();
    if (remaining <= 0) {
      reject(new TransportError('connect-timeout', false, `no time left to connect to ${where}`));
      return;
    }
    let sent = false;
    let settled = false;
    const chunks: Buffer[] = [];
    let received = 0;

    const socket: Socket =
      address.kind === 'unix' ? connect({ path: address.path }) : connect({ host: address.host, port: address.port });

    const finish = (err: TransportError | undefined, value?: Buffer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(connectTimer);
      clearTimeout(deadlineTimer);
      options.signal?.removeEventListener('abort', onAbort);
      socket.removeAllListeners('data');
      socket.destroy();
      if (err) reject(err);
      else resolve(value!);
    };
    const onAbort = (): void =>
      finish(
        new TransportError('aborted', sent, `aborted while talking to ${where}`, { cause: options.signal?.reason }),
      );

    const connectTimer = setTimeout(
      () => {
        if (!sent)
          finish(
            new TransportError(
              'connect-timeout',
              false,
              `${where}: no connection within ${Math.min(options.connectTimeoutMs, remaining)} ms`,
            ),
          );
      },
      Math.min(options.connectTimeoutMs, remaining),
    );
    const deadlineTimer = setTimeout(() => {
      finish(
        sent
          ? new TransportError('timeout', true, `${where}: no complete reply before the deadline`)
          : new TransportError('connect-timeout', false, `${where}: deadline passed while connecting`),
      );
    }, remaining);
    options.signal?.addEventListener('abort', onAbort, { once: true });

    socket.setNoDelay(true);
    socket.once('connect', () => {
      clearTimeout(connectTimer);
      // One write for the whole request: the original VBS read one recv() and may not wait for a second.
      socket.write(request);
      sent = true;
      options.onSent?.();
    });
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > maxReply) {
        finish(new TransportError('oversize', true, `${where}: reply exceeds ${maxReply} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    socket.once('end', () => {
      if (received === 0) finish(new TransportError('no-reply', true, `${where}: connection closed without a reply`));
      else finish(undefined, Buffer.concat(chunks, received));
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const code = err.code ?? 'error';
      if (!sent)
        finish(
          new TransportError(code === 'EAGAIN' ? 'overloaded' : 'connect-failed', false, `${where}: ${code}`, {
            cause: err,
          }),
        );
      else
        finish(
          new TransportError('no-reply', true, `${where}: connection broke after the request was sent (${code})`, {
            cause: err,
          }),
        );
    });
    // A server that closes without FIN handshake completing (RST) ends up in 'error'; a plain close
    // without 'end' (e.g. destroyed by us) is covered by finish() having settled already.
    socket.once('close', () => {
      if (!settled) {
        finish(
          sent
            ? new TransportError('no-reply', true, `${where}: connection closed without a complete reply`)
            : new TransportError('connect-failed', false, `${where}: connection closed while connecting`),
        );
      }
    });
  });
}
