// Data hosts: more hosts of the same back end, each with a socket API and a KV data plane of its own, over
// the one store and the one set of pools of this daemon (as the product's hosts share their LUNs and
// metadata). A host's sockets are under <data>/hosts/<id>/; its front end (emulator/host.ts) relays its own
// addresses to them, and holds presence.sock open while it lives: the host is down while a front end that
// came up is gone, and each time one comes up its host's attachments are checked against the loop devices.
// One process serves every host, so concurrency between hosts is the same as within one.
import { mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import type { AttachService } from './attach.js';
import { hostView, type Ctx } from './context.js';
import type { Handler } from './handlers.js';
import { backingFileOf, detachLoop } from './loopdev.js';
import { setHostState } from './mappings.js';
import { KvServer } from './kv-server.js';
import { ControlServer } from './server.js';

export function hostDir(dataDir: string, hostId: string): string {
  return join(dataDir, 'hosts', hostId);
}

export interface HostSockets {
  controlSocket: string;
  kvSocket: string;
  presenceSocket: string;
}

export function hostSockets(dataDir: string, hostId: string): HostSockets {
  const dir = hostDir(dataDir, hostId);
  return {
    controlSocket: join(dir, 'vbs.sock'),
    kvSocket: join(dir, 'kv.sock'),
    presenceSocket: join(dir, 'presence.sock'),
  };
}

/**
 * A host's own attachments against the loop devices that exist, when its front end comes (back) up: a
 * record whose device no longer backs the volume (released by a forced unmap, or gone) is dropped, an
 * interrupted detach is finished. Other hosts' attachments are not touched: they are live.
 */
export async function reconcileHost(ctx: Ctx, attach: AttachService, hostId: string): Promise<number> {
  let fixed = 0;
  for (const att of ctx.store.allAttachments()) {
    if (att.host_id !== hostId) continue;
    const vol = ctx.store.volumeById(att.vol_id);
    if (!vol) continue;
    await attach.queue.run(vol.name, async () => {
      const current = ctx.store.attachment(vol.id, hostId);
      if (!current) return;
      const file = ctx.pools.get(vol.pool)?.volumePath(vol.name);
      const ours = current.device !== '' && backingFileOf(current.device) === file;
      if (current.state === 'attached' && ours) return;
      if (current.state === 'attaching') return;
      if (ours) await detachLoop(current.device).catch(() => undefined);
      ctx.store.deleteAttachment(vol.id, hostId);
      fixed++;
      ctx.log.warn({ volume: vol.name, hostId, device: current.device }, 'host reconcile: dropped a stale attachment');
    });
  }
  return fixed;
}

export interface DataHost {
  hostId: string;
  control: ControlServer;
  kv: KvServer;
  presence: net.Server;
  /** the front ends' presence connections, cut at shutdown (the front end then exits) */
  fronts: Set<net.Socket>;
}

export interface DataHostDeps {
  ctx: Ctx;
  attach: AttachService;
  handlersFor(view: Ctx): Map<string, Handler>;
  token: string | undefined;
}

export async function startDataHost(deps: DataHostDeps, hostId: string): Promise<DataHost> {
  const { ctx, attach } = deps;
  const view = hostView(ctx, hostId);
  const sockets = hostSockets(ctx.config.dataDir, hostId);
  mkdirSync(hostDir(ctx.config.dataDir, hostId), { recursive: true, mode: 0o700 });
  const log = ctx.log.child({ hostId });
  const control = new ControlServer({
    protocol: ctx.config.protocol,
    handlers: deps.handlersFor(view),
    token: deps.token,
    quietMs: ctx.config.requestQuietMs,
    log,
    stopping: () => ctx.stopping,
  });
  const kv = new KvServer(attach, log, ctx.config.protocol, hostId);
  const fronts = new Set<net.Socket>();
  const presence = net.createServer((socket) => {
    fronts.add(socket);
    setHostState(view, hostId, true);
    void reconcileHost(ctx, attach, hostId).then(
      (fixed) => log.info({ fixed }, 'host front end up; its attachments reconciled'),
      (err: unknown) => log.error({ err }, 'host reconcile failed'),
    );
    socket.on('error', () => undefined);
    socket.once('close', () => {
      fronts.delete(socket);
      if (fronts.size === 0 && !ctx.stopping) setHostState(view, hostId, false);
    });
  });
  rmSync(sockets.presenceSocket, { force: true });
  const previous = process.umask(0o177);
  try {
    await control.listenUnix(sockets.controlSocket);
    await kv.listenUnix(sockets.kvSocket);
    await new Promise<void>((resolve, reject) => {
      presence.once('error', reject);
      presence.listen(sockets.presenceSocket, () => resolve());
    });
  } finally {
    process.umask(previous);
  }
  return { hostId, control, kv, presence, fronts };
}

export async function closeDataHost(h: DataHost, dataDir: string): Promise<void> {
  await Promise.all([
    h.control.close(),
    h.kv.close(),
    new Promise<void>((r) => {
      h.presence.close(() => r());
      for (const s of h.fronts) s.destroy();
    }),
  ]);
  const sockets = hostSockets(dataDir, h.hostId);
  for (const p of Object.values(sockets)) rmSync(p, { force: true });
}
