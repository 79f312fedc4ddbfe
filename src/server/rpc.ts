// Wraps async handlers into grpc-js call handlers: one log line per RPC (method, volume id, duration, code,
// request id), the error mapping, in-flight accounting for a draining shutdown, and an AbortSignal that
// fires when the CO cancels the call or its deadline passes.
import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../log/logger.js';
import { statusName, toGrpcFailure } from './errors.js';

export interface RpcContext {
  method: string;
  requestId: string;
  log: Logger;
  signal: AbortSignal;
}

export type UnaryHandler<Req, Res> = (request: Req, ctx: RpcContext) => Promise<Res>;
export type StreamHandler<Req, Res> = (
  request: Req,
  ctx: RpcContext,
  send: (message: Res) => Promise<void>,
) => Promise<void>;

/** Hooks for metrics; the server works without them. */
export interface RpcObserver {
  started(method: string): void;
  finished(method: string, code: string, seconds: number): void;
}

export class RpcTracker {
  private inFlightCount = 0;
  private idleWaiters: Array<() => void> = [];
  observer?: RpcObserver;

  get inFlight(): number {
    return this.inFlightCount;
  }
  enter(): void {
    this.inFlightCount++;
  }
  leave(): void {
    this.inFlightCount--;
    if (this.inFlightCount === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }
  /** Resolves when no RPC is in flight, or after `timeoutMs`; returns whether it drained. */
  async drained(timeoutMs: number): Promise<boolean> {
    if (this.inFlightCount === 0) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}

function subjectOf(request: unknown): string | undefined {
  if (!request || typeof request !== 'object') return undefined;
  const r = request as Record<string, unknown>;
  for (const key of [
    'volume_id',
    'snapshot_id',
    'name',
    'source_volume_id',
    'group_snapshot_id',
    'target_snapshot_id',
  ]) {
    const v = r[key];
    if (typeof v === 'string' && v !== '') return v.length > 200 ? `${v.slice(0, 200)}…` : v;
  }
  return undefined;
}

function callSignal(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): {
  signal: AbortSignal;
  dispose: () => void;
} {
  const controller = new AbortController();
  const onCancel = () => controller.abort(new Error('call cancelled by the client'));
  call.on('cancelled', onCancel);
  let timer: NodeJS.Timeout | undefined;
  const deadline = call.getDeadline();
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : typeof deadline === 'number' ? deadline : Infinity;
  if (Number.isFinite(deadlineMs)) {
    timer = setTimeout(
      () => controller.abort(new Error('call deadline exceeded')),
      Math.max(0, deadlineMs - Date.now()),
    );
  }
  return {
    signal: controller.signal,
    dispose: () => {
      if (timer) clearTimeout(timer);
      call.removeListener('cancelled', onCancel);
    },
  };
}

export function makeContextFactory(log: Logger, tracker: RpcTracker) {
  // The one line per RPC names only the method, ids, duration, code and error text: no key there is one the
  // redaction looks for, and its check cost ~15 µs a line (a tenth of a CreateVolume's own CPU).
  const rpcLine = log.child({}, { redact: [] });
  function begin(
    method: string,
    request: unknown,
    call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>,
  ) {
    const requestId = randomUUID().slice(0, 8);
    const volumeId = subjectOf(request);
    const { signal, dispose } = callSignal(call);
    const bindings = { method, requestId, volumeId };
    // A handler's own logger is made when it logs (few do): the line below needs none.
    let handlerLog: Logger | undefined;
    const ctx: RpcContext = {
      method,
      requestId,
      get log() {
        return (handlerLog ??= log.child(bindings));
      },
      signal,
    };
    const started = process.hrtime.bigint();
    tracker.enter();
    tracker.observer?.started(method);
    const end = (code: grpc.status, error?: string) => {
      dispose();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      tracker.leave();
      tracker.observer?.finished(method, statusName(code), seconds);
      // The same JSON as a child logger with these bindings would write.
      const line = {
        ...bindings,
        durationMs: Math.round(seconds * 1e4) / 10,
        code: statusName(code),
        ...(error ? { error } : {}),
      };
      if (code === grpc.status.OK) rpcLine.info(line, 'rpc');
      else if (code === grpc.status.INTERNAL || code === grpc.status.UNKNOWN) rpcLine.error(line, 'rpc');
      else rpcLine.warn(line, 'rpc');
    };
    return { ctx, end };
  }

  function unary<Req, Res>(method: string, handler: UnaryHandler<Req, Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const { ctx, end } = begin(method, call.request, call as grpc.ServerUnaryCall<unknown, unknown>);
      handler(call.request, ctx).then(
        (response) => {
          end(grpc.status.OK);
          callback(null, response);
        },
        (err: unknown) => {
          const failure = toGrpcFailure(err);
          end(failure.code, failure.details);
          callback({ code: failure.code, details: failure.details, metadata: new grpc.Metadata() }, null);
        },
      );
    };
  }

  function serverStream<Req, Res>(
    method: string,
    handler: StreamHandler<Req, Res>,
  ): grpc.handleServerStreamingCall<Req, Res> {
    return (call) => {
      const { ctx, end } = begin(method, call.request, call as grpc.ServerWritableStream<unknown, unknown>);
      const send = (message: Res) =>
        new Promise<void>((resolve) => {
          if (call.write(message)) resolve();
          else call.once('drain', () => resolve());
        });
      handler(call.request, ctx, send).then(
        () => {
          end(grpc.status.OK);
          call.end();
        },
        (err: unknown) => {
          const failure = toGrpcFailure(err);
          end(failure.code, failure.details);
          call.emit('error', { code: failure.code, details: failure.details, metadata: new grpc.Metadata() });
        },
      );
    };
  }

  return { unary, serverStream };
}

export type RpcFactory = ReturnType<typeof makeContextFactory>;
