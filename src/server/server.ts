// The CSI gRPC server on a unix socket: stale-socket removal, restrictive socket mode, the services of the
// chosen mode, and a draining shutdown.
import * as grpc from '@grpc/grpc-js';
import { lstat, mkdir, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import type { ControllerHandlers } from '../generated/csi/v1/Controller.js';
import type { GroupControllerHandlers } from '../generated/csi/v1/GroupController.js';
import type { IdentityHandlers } from '../generated/csi/v1/Identity.js';
import type { NodeHandlers } from '../generated/csi/v1/Node.js';
import type { SnapshotMetadataHandlers } from '../generated/csi/v1/SnapshotMetadata.js';
import type { Logger } from '../log/logger.js';
import { loadCsiProto } from './proto.js';
import { RpcTracker } from './rpc.js';

export interface CsiServices {
  identity: IdentityHandlers;
  controller?: ControllerHandlers;
  node?: NodeHandlers;
  groupController?: GroupControllerHandlers;
  snapshotMetadata?: SnapshotMetadataHandlers;
}

/** `unix:///abs/path` (or `unix:/abs/path`) → `/abs/path`. Other schemes are refused. */
export function parseUnixEndpoint(endpoint: string): string {
  const m = /^unix:\/\/(\/.+)$/.exec(endpoint) ?? /^unix:(\/[^/].*)$/.exec(endpoint);
  if (!m) throw new Error(`endpoint must be unix:///absolute/path, got ${JSON.stringify(endpoint)}`);
  return m[1]!;
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Removes a socket left by a dead process; refuses to touch a live one or a file that is not a socket. */
export async function removeStaleSocket(path: string): Promise<void> {
  let stat;
  try {
    stat = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!stat.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to remove it`);
  if (await socketAnswers(path)) throw new Error(`${path} is in use by another process`);
  await unlink(path);
}

export class CsiServer {
  readonly tracker = new RpcTracker();
  private readonly server = new grpc.Server({
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
  });
  private stopped = false;

  constructor(
    readonly socketPath: string,
    private readonly log: Logger,
  ) {}

  register(services: CsiServices): void {
    const csi = loadCsiProto().csi.v1;
    this.server.addService(csi.Identity.service, services.identity as unknown as grpc.UntypedServiceImplementation);
    if (services.controller)
      this.server.addService(
        csi.Controller.service,
        services.controller as unknown as grpc.UntypedServiceImplementation,
      );
    if (services.node)
      this.server.addService(csi.Node.service, services.node as unknown as grpc.UntypedServiceImplementation);
    if (services.groupController) {
      this.server.addService(
        csi.GroupController.service,
        services.groupController as unknown as grpc.UntypedServiceImplementation,
      );
    }
    if (services.snapshotMetadata) {
      this.server.addService(
        csi.SnapshotMetadata.service,
        services.snapshotMetadata as unknown as grpc.UntypedServiceImplementation,
      );
    }
  }

  /** Binds the socket with `mode` (no window with looser permissions: the umask is set around the bind). */
  async listen(mode: number): Promise<void> {
    await mkdir(dirname(this.socketPath), { recursive: true, mode: 0o750 });
    await removeStaleSocket(this.socketPath);
    const previous = process.umask(0o777 & ~mode);
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.bindAsync(`unix://${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
          err ? reject(err) : resolve(),
        );
      });
    } finally {
      process.umask(previous);
    }
    this.log.info({ socket: this.socketPath, mode: mode.toString(8) }, 'CSI endpoint listening');
  }

  /** Stops accepting, lets in-flight RPCs finish for up to `graceMs`, then cuts the rest and removes the socket. */
  async shutdown(graceMs: number): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const inFlight = this.tracker.inFlight;
    if (inFlight > 0) this.log.info({ inFlight, graceMs }, 'draining in-flight RPCs');
    const closed = new Promise<void>((resolve) => this.server.tryShutdown(() => resolve()));
    const drained = await this.tracker.drained(graceMs);
    // Calls are done (or out of time). Give the last replies a moment to flush; idle client sessions
    // must not hold the shutdown, so force whatever is left.
    await Promise.race([closed, new Promise((r) => setTimeout(r, 250))]);
    this.server.forceShutdown();
    if (!drained) this.log.warn({ inFlight: this.tracker.inFlight }, 'grace period over: in-flight RPCs cut');
    await unlink(this.socketPath).catch(() => undefined);
    this.log.info('CSI endpoint closed');
  }

  /** Immediate stop, for a second signal. */
  forceShutdown(): void {
    this.stopped = true;
    this.server.forceShutdown();
  }
}
