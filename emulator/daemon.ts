// The emulator daemon: start-up (pools, rediscovery of loop devices, reconcile, listeners, emulator.json)
// and shutdown (drain, detach idle devices, close the database, unmount pools).
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AttachService } from './attach.js';
import type { EmulatorConfig } from './config.js';
import { Background, type Ctx } from './context.js';
import { Deleter } from './deleter.js';
import { Freezer } from './freeze.js';
import { buildHandlers } from './handlers.js';
import { ImageService } from './images.js';
import { buildOriginalHandlers } from './original.js';
import { ObjectLocks } from './locks.js';
import { createLogger, type Logger } from './log.js';
import { detachLoop, isDeviceBusy, listLoopDevices, type LoopDevice } from './loopdev.js';
import { detectPoolKind, preparePool, readMounts, unmountPool, type Pool } from './pools.js';
import { BlkioThrottle } from './qos.js';
import { reconcile, startScans } from './reconcile.js';
import { ThickReservations } from './reservations.js';
import { KvServer } from './kv-server.js';
import { ControlServer } from './server.js';
import { closeDataHost, startDataHost, type DataHost } from './hosts.js';
import { Store } from './store.js';

export interface RunningEmulator {
  pid: number;
  /** the TCP port of the socket API, -1 when TCP is off */
  tcpPort: number;
  controlSocket: string;
  kvSocket: string;
  hostId: string;
  dataDir: string;
  log: Logger;
  /** Stops the daemon (idempotent); see shutdown() */
  stop(): Promise<void>;
}

export interface StartOptions extends EmulatorConfig {
  /** a logger to use instead of pino on stderr */
  logger?: Logger;
}

export function infoFile(dataDir: string): string {
  return join(dataDir, 'emulator.json');
}

export async function startEmulator(options: StartOptions): Promise<RunningEmulator> {
  const startedAt = process.hrtime.bigint();
  const config: EmulatorConfig = { ...options };
  const log = options.logger ?? createLogger(config.logLevel);
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  mkdirSync(join(config.dataDir, 'images'), { recursive: true, mode: 0o700 });

  const store = new Store(join(config.dataDir, 'emulator.db'));
  let ctx: Ctx | undefined;
  try {
    store.setHosts(config.hostId, [...config.dataHosts, ...config.extraHosts]);
    const { kind, reason } = detectPoolKind(config.poolType);
    log.info({ poolType: kind, reason }, 'pool type');
    const mounts = readMounts();
    const pools = new Map<string, Pool>();
    for (const spec of config.pools) {
      pools.set(spec.name, await preparePool(spec, { dataDir: config.dataDir, kind, store, log, mounts }));
    }
    // The volume files' sizes are read by a child process while the loop devices are listed.
    const scans = startScans({ pools });
    const loops: LoopDevice[] = existsSync('/dev/loop-control')
      ? await listLoopDevices().catch((err: unknown) => {
          log.warn({ err }, 'cannot list loop devices');
          return [];
        })
      : [];
    const qos = new BlkioThrottle(config.blkioCgroup, log);
    log.info({ enabled: qos.enabled, reason: qos.reason }, 'QoS enforcement');
    const background = new Background();
    ctx = {
      config,
      log,
      store,
      pools,
      defaultPool: config.pools[0]!.name,
      locks: new ObjectLocks(),
      qos,
      hostId: config.hostId,
      background,
      deleter: new Deleter(store, background, log),
      thickReserved: new ThickReservations(),
      stopping: false,
      freezer: new Freezer(log),
    };
    const report = await reconcile(ctx, loops, scans);
    log.info(report, 'reconciled');
  } catch (err) {
    store.close();
    throw err;
  }

  const original = config.protocol === 'original';
  if (original && config.token !== undefined) {
    log.warn('--protocol original checks no token (the product had none); the configured token is ignored');
  }
  const attach = new AttachService(ctx, { requireMapping: !original });
  const images = new ImageService(ctx);
  const shared = ctx;
  const control = new ControlServer({
    protocol: config.protocol,
    handlers: original ? buildOriginalHandlers(ctx) : buildHandlers(ctx, attach, images),
    token: config.token,
    quietMs: config.requestQuietMs,
    log,
    stopping: () => shared.stopping,
  });
  const kv = new KvServer(attach, log, config.protocol);
  const dataHosts: DataHost[] = [];
  let tcpPort = -1;
  try {
    await control.listenUnix(config.controlSocket);
    await kv.listenUnix(config.kvSocket);
    for (const hostId of config.dataHosts) {
      const handlersFor = (view: Ctx) => (original ? buildOriginalHandlers(view) : buildHandlers(view, attach, images));
      dataHosts.push(await startDataHost({ ctx, attach, handlersFor, token: config.token }, hostId));
    }
    if (config.listenPort >= 0) tcpPort = await control.listenTcp(config.listenHost, config.listenPort);
    if (tcpPort >= 0 && config.token === undefined) {
      // Any local user can connect to a TCP port: without a token each of them controls every volume.
      log.warn(
        { listen: `${config.listenHost}:${tcpPort}` },
        'the socket API listens on TCP without a token: every user who can reach the port controls every volume; set --token-file',
      );
    }
  } catch (err) {
    await Promise.all([control.close(), kv.close(), ...dataHosts.map((h) => closeDataHost(h, config.dataDir))]);
    store.close();
    throw err;
  }

  const info = {
    pid: process.pid,
    tcpPort,
    controlSocket: config.controlSocket,
    kvSocket: config.kvSocket,
    hostId: config.hostId,
    dataHosts: config.dataHosts,
  };
  const infoPath = infoFile(config.dataDir);
  const tmpInfo = `${infoPath}.${process.pid}.tmp`;
  writeFileSync(tmpInfo, JSON.stringify(info) + '\n', { mode: 0o600 });
  renameSync(tmpInfo, infoPath);
  const startupMs = Number(process.hrtime.bigint() - startedAt) / 1e6;
  log.info(
    {
      protocol: config.protocol,
      tcpPort,
      controlSocket: config.controlSocket,
      kvSocket: config.kvSocket,
      hostId: config.hostId,
      listen: tcpPort >= 0 ? `${config.listenHost}:${tcpPort}` : 'tcp off',
      pools: [...ctx.pools.values()].map((p) => ({ name: p.name, type: p.kind, healthy: p.healthy })),
      startupMs: Math.round(startupMs * 10) / 10,
      sinceProcessStartMs: Math.round(process.uptime() * 1000),
    },
    'ready',
  );

  // Whatever way the process ends (a second signal, a fatal error), no file system stays frozen by us.
  const freezer = ctx.freezer;
  const thawAtExit = (): void => freezer.thawAllSync();
  process.on('exit', thawAtExit);
  let stopping: Promise<void> | undefined;
  const running: RunningEmulator = {
    ...info,
    dataDir: config.dataDir,
    log,
    stop: () =>
      (stopping ??= shutdown(ctx, { control, kv, images, infoPath, dataHosts }).finally(() =>
        process.off('exit', thawAtExit),
      )),
  };
  return running;
}

/**
 * Shutdown: stop accepting; let requests, deletes and image jobs finish (bounded by --shutdown-grace-ms,
 * image jobs are aborted and clean up); then, unless --keep-mounted, detach the loop devices nobody holds
 * and unmount the pools no volume device uses any more; close the database last.
 */
async function shutdown(
  ctx: Ctx,
  parts: { control: ControlServer; kv: KvServer; images: ImageService; infoPath: string; dataHosts: DataHost[] },
): Promise<void> {
  const { log, config, store } = ctx;
  log.info('shutting down');
  ctx.stopping = true;
  // A group snapshot in its freeze window must not hold writers while shutdown waits: thaw now (the cut
  // sees it and fails, leaving nothing).
  await ctx.freezer.thawAll();
  rmSync(parts.infoPath, { force: true });
  await Promise.all([
    parts.control.close(),
    parts.kv.close(),
    ...parts.dataHosts.map((h) => closeDataHost(h, config.dataDir)),
  ]);
  parts.images.abortAll();
  const deadline = Date.now() + config.shutdownGraceMs;
  const left = (): number => Math.max(0, deadline - Date.now());
  const servers = [parts.control, parts.kv, ...parts.dataHosts.flatMap((h) => [h.control, h.kv])];
  const serversIdle = (await Promise.all(servers.map((s) => s.drain(left())))).every(Boolean);
  const backgroundIdle = await ctx.background.drain(left());
  if (!serversIdle || !backgroundIdle)
    log.warn('in-flight work did not finish within the grace period; reconcile finishes it at the next start');

  if (!config.keepMounted) {
    for (const att of store.allAttachments()) {
      if (att.state !== 'attached' || !att.device) continue;
      // losetup -d on a device that is still held only sets autoclear: the device would vanish later, when its
      // user lets go, while the record said attached. So a held device stays, recorded, for the next start.
      if (isDeviceBusy(att.device)) {
        log.warn({ device: att.device }, 'volume device in use (mounted); left attached');
        continue;
      }
      try {
        ctx.qos.clear(att.dev_major, att.dev_minor);
        await detachLoop(att.device);
        store.deleteAttachment(att.vol_id, att.host_id);
      } catch (err) {
        log.warn({ err, device: att.device }, 'cannot detach volume device');
      }
    }
  }
  store.close();
  if (!config.keepMounted) {
    const loops = await listLoopDevices().catch(() => [] as LoopDevice[]);
    for (const pool of ctx.pools.values()) {
      if (pool.kind !== 'xfs-reflink' || !pool.healthy) continue;
      const inUse = loops.filter((d) => d.backFile.startsWith(pool.root + '/'));
      if (inUse.length > 0) {
        log.warn(
          { pool: pool.name, devices: inUse.map((d) => d.device) },
          'pool still backs attached volume devices; left mounted',
        );
        continue;
      }
      try {
        await unmountPool(pool);
        log.info({ pool: pool.name }, 'unmounted pool');
      } catch (err) {
        log.warn({ err, pool: pool.name }, 'cannot unmount pool');
      }
    }
  }
  for (const path of [config.controlSocket, config.kvSocket]) rmSync(path, { force: true });
  log.info('stopped');
}
