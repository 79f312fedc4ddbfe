// sdshypervisor-csi: the CSI driver process (main.ts loads it, bundled, and calls runDriver). Parses the
// configuration, starts the embedded emulator in all mode, builds the back-end client and the services of the
// chosen mode, serves them on the CSI socket, and on SIGINT/SIGTERM drains in-flight calls before it stops (a
// second signal stops at once).
import { ConfigError, parseCommandLine, type DriverConfig } from './config/config.js';
import { childEnv } from './config/environment.js';
import { identityService } from './identity/identity.js';
import { backendProbe, type ProbeResult } from './identity/probe.js';
import { openKubeClient } from './kube/lazy.js';
import { createLogger, type Logger } from './log/logger.js';
import type { DriverMetrics, OpsHttpServer } from './metrics/index.js';
import type { NodeDeps } from './node/node.js';
import { SdsClient } from './sds/client.js';
import { negotiateLevel } from './sds/level.js';
import type { ProtocolLevel } from './protocol/catalog.js';
import {
  defaultSdsCliPath,
  EmbeddedEmulator,
  makeEmbeddedToken,
  EmulatorStartInterrupted,
} from './server/embedded-emulator.js';
import { makeContextFactory } from './server/rpc.js';
import { CsiServer, parseUnixEndpoint, type CsiServices } from './server/server.js';
import { StopRequest } from './server/stop-request.js';
import { packageVersion } from './util/paths.js';
import { setV8Flag } from './util/v8-flags.js';

// First thing the module does: from here on a stop signal is a request the start honours (see stop-request.ts).
const stopRequest = new StopRequest();

const PROBE_TIMEOUT_MS = 2_000;
const EMULATOR_STOP_TIMEOUT_MS = 15_000;

/** What the entry may ask of a start. */
export interface DriverHooks {
  /**
   * Called once the CSI socket serves, before the run-time V8 flags change (tuneForServing): the moment
   * main.ts writes the code cache in a build's training start (util/code-cache.ts says why then). What it
   * returns is added to the start's log line.
   */
  onServing?: () => Record<string, unknown> | undefined;
}

async function run(config: DriverConfig, log: Logger, hooks: DriverHooks): Promise<number> {
  let emulator: EmbeddedEmulator | undefined;
  if (config.startEmulator) {
    // The embedded emulator always requires a token (docs/RELIABILITY.md, threat model): the configured one,
    // from a file or SDS_VBS_TOKEN, or a random one for this run (also in <data>/vbs.token, 0600, for the export
    // command); it reaches the child in its environment (readable by root only). TCP stays off unless
    // --vbs-port / SDS_VBS_PORT asks for it: the 0600 unix socket serves.
    config.vbsToken ??= makeEmbeddedToken(config.dataDir);
    const emulatorEnv = childEnv({ SDS_VBS_TOKEN: config.vbsToken, SDS_VBS_TOKEN_FILE: undefined });
    try {
      emulator = await EmbeddedEmulator.start({
        dataDir: config.dataDir,
        log: log.child({ room: 'emulator' }),
        port: config.vbsPortGiven ? config.vbsPort : -1,
        env: emulatorEnv,
        signal: stopRequest.signal,
      });
    } catch (err) {
      // Stopped and waited for: nothing of the emulator is left.
      if (!(err instanceof EmulatorStartInterrupted)) throw err;
      log.info(
        { signal: stopRequest.requestedBy, dataDir: config.dataDir },
        'start interrupted: the embedded emulator is stopped',
      );
      return 0;
    }
    config.sdsCli ??= defaultSdsCliPath();
  }

  let backend: SdsClient | undefined;
  let server: CsiServer | undefined;
  let ops: OpsHttpServer | undefined;
  stopRequest.onHardStop(() => {
    server?.forceShutdown();
    emulator?.kill();
  });
  try {
    // The metrics room is loaded only when it is used (prom-client is not free to load).
    const metricsRoom = config.metricsAddress ? await import('./metrics/index.js') : undefined;
    const metrics =
      metricsRoom &&
      new metricsRoom.DriverMetrics({ version: packageVersion(), mode: config.mode, driverName: config.driverName });
    backend = new SdsClient({
      addresses: config.vbsUrl ?? (emulator ? `unix://${emulator.info.controlSocket}` : '127.0.0.1'),
      defaultPort: config.vbsPort,
      ...(config.vbsToken ? { token: config.vbsToken } : {}),
      requestTimeoutMs: config.vbsTimeoutMs,
      logger: log.child({ room: 'sds' }),
      ...(metrics ? { observer: metrics.backend } : {}),
      pools: config.vbsPools,
    });
    const sds = backend;
    // Before the CSI socket opens: the sidecars read the capabilities once.
    const level = await negotiate(sds, config, log);
    if (level === undefined) return 0; // asked to stop while negotiating
    server = new CsiServer(parseUnixEndpoint(config.endpoint), log);
    if (metrics) server.tracker.observer = metrics.rpc;
    const rpc = makeContextFactory(log, server.tracker);
    const probe = backendProbe(sds, { timeoutMs: PROBE_TIMEOUT_MS, log: log.child({ room: 'probe' }) });
    const services: CsiServices = {
      identity: identityService(
        {
          driverName: config.driverName,
          vendorVersion: packageVersion(),
          probe: async () => (await probe()).ready,
          // The same set in every mode (CSI: every instance of a plugin version reports the same); the CO
          // calls these services on the controller.
          groupControllerService: level === 'extended',
          snapshotMetadataService: level === 'extended',
        },
        rpc,
      ),
    };
    if (config.mode === 'controller' || config.mode === 'all') {
      // Claims' image-source annotations and Events; off (quietly) without in-cluster config or a kubeconfig.
      const kube = await openKubeClient({ logger: log, kubeconfig: config.kubeconfig, instance: config.nodeName });
      // Each mode loads only its own services: a node plugin never parses the controller's code.
      const { controllerService } = await import('./controller/controller.js');
      services.controller = controllerService({ backend: sds, kube, driverName: config.driverName, level }, rpc);
      if (level === 'extended') {
        const [{ groupControllerService }, { snapshotMetadataService }] = await Promise.all([
          import('./groupcontroller/group-controller.js'),
          import('./snapshotmetadata/snapshot-metadata.js'),
        ]);
        services.groupController = groupControllerService({ backend: sds }, rpc);
        services.snapshotMetadata = snapshotMetadataService({ backend: sds }, rpc);
      }
    }
    if (config.mode === 'node' || config.mode === 'all') {
      const { nodeService } = await import('./node/node.js');
      services.node = nodeService(await nodeDeps(config, sds, log, metrics, emulator?.info.kvSocket), rpc);
    }
    server.register(services);
    let draining = false;
    if (metricsRoom && metrics) {
      // Pool and volume figures come from the controller: every node would report the same ones.
      if (config.mode !== 'node')
        metrics.watchBackend(sds, { ...metricsRoom.BACKEND_STATS_DEFAULTS, log: log.child({ room: 'metrics' }) });
      const health = (): Promise<ProbeResult> =>
        draining ? Promise.resolve({ ready: false, reason: 'shutting down' }) : probe();
      // Before the CSI socket: a taken port stops the start before anything is served.
      ops = await metricsRoom.OpsHttpServer.start({
        address: config.metricsAddress,
        registry: metrics.registry,
        health,
        log,
      });
    }
    await server.listen(config.endpointMode);
    const servingFields = hooks.onServing?.();
    tuneForServing(config.mode);
    log.info(
      {
        mode: config.mode,
        endpoint: config.endpoint,
        driver: config.driverName,
        version: packageVersion(),
        metrics: ops ? `http://${ops.address}/metrics` : 'off',
        ...(emulator
          ? { emulator: config.dataDir, vbsSocket: emulator.info.controlSocket, kvSocket: emulator.info.kvSocket }
          : {}),
        ...servingFields,
      },
      'sdshypervisor-csi started',
    );

    // A signal during the start above lands here at once: the drain finds nothing in flight.
    const reason = await stopRequested(log, emulator);
    draining = true;
    await server.shutdown(config.shutdownGraceMs);
    server = undefined;
    return reason === 'emulator-exited' ? 1 : 0;
  } finally {
    server?.forceShutdown();
    await ops?.close();
    if (backend) {
      backend.close();
      log.info('back-end client closed');
    }
    if (emulator) {
      const exit = await emulator.stop(EMULATOR_STOP_TIMEOUT_MS);
      if (exit.code !== 0 && exit.code !== null) log.warn(exit, 'the embedded emulator exited with an error');
    }
  }
}

/** The VBS's protocol level (docs/protocol-levels.md), set on the client; undefined when a stop signal came first. */
async function negotiate(sds: SdsClient, config: DriverConfig, log: Logger): Promise<ProtocolLevel | undefined> {
  const stop = new AbortController();
  const onStopSignal = (): void => stop.abort(new Error('stopped while negotiating the protocol level'));
  process.once('SIGINT', onStopSignal);
  process.once('SIGTERM', onStopSignal);
  let negotiated;
  try {
    negotiated = await negotiateLevel(sds, config.vbsProtocol, {
      signal: stop.signal,
      onUnreachable: (attempt, message) => log.warn({ attempt }, message),
    });
  } catch (err) {
    if (stop.signal.aborted) return undefined;
    throw err;
  } finally {
    process.off('SIGINT', onStopSignal);
    process.off('SIGTERM', onStopSignal);
  }
  sds.setLevel(negotiated.level);
  if (negotiated.how === 'assumed')
    log.warn('the VBS did not answer: the extended protocol level is assumed (set --vbs-protocol to be sure)');
  log.info(
    {
      level: negotiated.level,
      how: negotiated.how,
      pools: config.vbsPools,
      capabilities: negotiated.system?.capabilities,
    },
    'VBS protocol level',
  );
  if (negotiated.level === 'original' && config.vbsPools.length === 0) {
    log.warn(
      'the VBS speaks the original protocol level and no --vbs-pools are configured: the driver asks for all pools, which the product may answer with none',
    );
  }
  return negotiated.level;
}

/**
 * The node service's collaborators: the KV connector (its sds_cli finds the VBS's data plane through
 * SDS_KV_SOCKET in its environment: the embedded emulator's in all mode, else the inherited one), the back
 * end for the host id, and the Node's labels for topology.
 */
async function nodeDeps(
  config: DriverConfig,
  backend: SdsClient,
  log: Logger,
  metrics: DriverMetrics | undefined,
  embeddedKvSocket: string | undefined,
): Promise<NodeDeps> {
  const original = backend.level === 'original';
  const cliEnv = embeddedKvSocket ? childEnv({ SDS_KV_SOCKET: embeddedKvSocket }) : childEnv();
  const { KvConnector } = await import('./connector/index.js');
  const connector = new KvConnector({
    cliPath: config.sdsCli,
    env: cliEnv,
    originalCli: original,
    ...(original
      ? {
          volumeExists: async (name: string, signal?: AbortSignal) =>
            (await backend.getVolume(name, signal ? { signal } : {})) !== undefined,
        }
      : {}),
    logger: log.child({ room: 'connector' }),
    ...(metrics ? { observer: metrics.connector } : {}),
  });
  let topologyLabels: NodeDeps['topologyLabels'];
  if (config.topologyLabels.length > 0) {
    const kube = await openKubeClient({ logger: log, kubeconfig: config.kubeconfig, instance: config.nodeName });
    if (!kube.enabled)
      log.warn(
        { topologyLabels: config.topologyLabels },
        '--topology-labels is set but Kubernetes is off: NodeGetInfo will fail until a kubeconfig or in-cluster config is available',
      );
    topologyLabels = (signal) => kube.readNodeTopology(config.nodeName, config.topologyLabels, { signal });
  }
  log.info(
    { sdsCli: connector.cli, kvSocket: cliEnv.SDS_KV_SOCKET, hostId: config.hostId ?? '(asked of the VBS)' },
    'node service: data plane',
  );
  return {
    connector,
    backend,
    maxVolumesPerNode: config.maxVolumesPerNode,
    log: log.child({ room: 'node' }),
    // The original level has no capability query to tell the host id, nor mapping that would need it.
    ...(config.hostId ? { hostId: config.hostId } : original ? { hostId: config.nodeName } : {}),
    ...(topologyLabels ? { topologyLabels } : {}),
  };
}

/**
 * V8 as the serving process wants it; every flag here changes only once serving, because V8 checks the code
 * cache of each file against the flags in force when it compiled (util/code-cache.ts).
 * - TurboFan: main.ts starts every mode without it. The node plugin runs a few calls a minute, each mostly
 *   waiting on programs and mounts: TurboFan would add its code and the optimized code to every node's RSS
 *   (~4 MiB of ~59 idle), so it stays off there; the controller's hot paths want it back.
 * - The old generation grows 30 % past what the last full collection kept alive, not up to 4x: under
 *   create/delete at concurrency 64 the controller's RSS peaked at ~150 MiB though ~15 MiB of it was live
 *   (docs/BENCHMARKS.md).
 * - The node plugin also keeps its young generation at the size it has (a few calls a minute: nothing to gain
 *   from a larger one). The controller does not: V8's memory reducer shrinks the young generation of an idle
 *   process to its minimum, and kept there, a burst of calls after an idle spell scavenges every few calls
 *   (CreateVolume+DeleteVolume at c=16 fell from ~930 to 530-630 pairs/s); its young generation is capped
 *   instead, at start (--max-semi-space-size, src/config/deployed-node-args.ts).
 * The heap flags are only read by the collector's sizing heuristics, so setting them at run time is safe; set
 * after the start, its many long-lived module objects are not copied between small young halves.
 */
function tuneForServing(mode: DriverConfig['mode']): void {
  if (mode === 'node') setV8Flag('--semi-space-growth-factor=1');
  else setV8Flag('--opt');
  setV8Flag('--heap-growing-percent=30');
}

/** Resolves on the first stop signal (or when the embedded emulator dies first). */
function stopRequested(log: Logger, emulator: EmbeddedEmulator | undefined): Promise<'signal' | 'emulator-exited'> {
  return new Promise((resolve) => {
    let settled = false;
    void stopRequest.requested().then(() => {
      if (!settled) resolve('signal');
      settled = true;
    });
    void emulator?.exited.then((exit) => {
      if (settled) return;
      settled = true;
      log.error(exit, 'the embedded emulator exited; stopping the driver');
      resolve('emulator-exited');
    });
  });
}

async function main(argv: string[], hooks: DriverHooks): Promise<number> {
  if (argv[0] === 'export' || argv[0] === 'import') {
    setV8Flag('--opt'); // main.ts started without it
    // The image tools keep the default signal actions until they listen themselves.
    stopRequest.dispose();
    if (stopRequest.requestedBy) return 1;
    // Loaded only here: the driver's own modes never parse the image tools.
    const run =
      argv[0] === 'export' ? (await import('./cli/export.js')).runExport : (await import('./cli/import.js')).runImport;
    return run(argv.slice(1), {
      stdout: (t) => process.stdout.write(t),
      stderr: (t) => process.stderr.write(t),
    });
  }
  let parsed;
  try {
    parsed = parseCommandLine(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`sdshypervisor-csi: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(`${parsed.text}\n`);
    return 0;
  }
  if (parsed.kind === 'version') {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  const log = createLogger({ level: parsed.config.logLevel });
  stopRequest.attachLog(log);
  if (stopRequest.requestedBy) {
    log.info({ signal: stopRequest.requestedBy }, 'start interrupted before anything was started');
    return 0;
  }
  try {
    return await run(parsed.config, log, hooks);
  } catch (err) {
    // The line names the cause (for the emulator: its own error and the data directory).
    log.fatal({ err }, `sdshypervisor-csi failed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    log.flush();
  }
}

/** Runs the driver (or an image tool) with these arguments, then exits the process with its code. */
export function runDriver(argv: string[], hooks: DriverHooks = {}): void {
  main(argv, hooks).then(
    (code) => {
      // Give pino's asynchronous destination a moment to flush; lingering handles must not keep us alive.
      process.exitCode = code;
      setTimeout(() => process.exit(code), 100);
    },
    (err: unknown) => {
      process.stderr.write(`sdshypervisor-csi: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
