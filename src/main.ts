#!/usr/bin/env node
// sdshypervisor-csi: the CSI driver process. Parses the configuration, starts the embedded emulator in
// all mode, builds the back-end client and the services of the chosen mode, serves them on the CSI socket,
// and on SIGINT/SIGTERM drains in-flight calls before it stops (a second signal stops at once).
import { ConfigError, parseCommandLine, type DriverConfig } from './config/config.js';
import { controllerService } from './controller/controller.js';
import { KvConnector } from './connector/index.js';
import { identityService } from './identity/identity.js';
import { createLogger, type Logger } from './log/logger.js';
import { nodeService, type NodeDeps } from './node/node.js';
import { SdsClient } from './sds/client.js';
import { defaultSdsCliPath, EmbeddedEmulator } from './server/embedded-emulator.js';
import { makeContextFactory } from './server/rpc.js';
import { CsiServer, parseUnixEndpoint, type CsiServices } from './server/server.js';
import { packageVersion } from './util/paths.js';

const PROBE_TIMEOUT_MS = 2_000;
const EMULATOR_STOP_TIMEOUT_MS = 15_000;
/** A repeat of the first stop signal this soon is the same signal delivered twice, not a second request. */
const DUPLICATE_SIGNAL_MS = 100;

async function run(config: DriverConfig, log: Logger): Promise<number> {
  let emulator: EmbeddedEmulator | undefined;
  if (config.startEmulator) {
    emulator = await EmbeddedEmulator.start({
      dataDir: config.dataDir,
      log: log.child({ room: 'emulator' }),
      port: process.env.SDS_VBS_PORT ? Number(process.env.SDS_VBS_PORT) : 0,
    });
    // The node side finds the emulator's data plane through these (sds_cli reads SDS_KV_SOCKET).
    process.env.SDS_KV_SOCKET = emulator.info.kvSocket;
    config.sdsCli ??= defaultSdsCliPath();
  }

  let backend: SdsClient | undefined;
  let server: CsiServer | undefined;
  try {
    backend = new SdsClient({
      addresses: config.vbsUrl ?? (emulator ? `unix://${emulator.info.controlSocket}` : '127.0.0.1'),
      defaultPort: config.vbsPort,
      ...(config.vbsToken ? { token: config.vbsToken } : {}),
      requestTimeoutMs: config.vbsTimeoutMs,
      logger: log.child({ room: 'sds' }),
    });
    const sds = backend;
    server = new CsiServer(parseUnixEndpoint(config.endpoint), log);
    const rpc = makeContextFactory(log, server.tracker);
    const services: CsiServices = {
      identity: identityService(
        {
          driverName: config.driverName,
          vendorVersion: packageVersion(),
          probe: () =>
            sds.systemInfo({ signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) }).then(
              () => true,
              () => false,
            ),
        },
        rpc,
      ),
    };
    if (config.mode === 'controller' || config.mode === 'all') services.controller = controllerService({ backend: sds }, rpc);
    if (config.mode === 'node' || config.mode === 'all') services.node = nodeService(await nodeDeps(config, sds, log), rpc);
    server.register(services);
    await server.listen(config.endpointMode);
    log.info(
      { mode: config.mode, endpoint: config.endpoint, driver: config.driverName, version: packageVersion(), emulator: emulator ? config.dataDir : undefined },
      'sdshypervisor-csi started',
    );

    const reason = await stopRequested(log, emulator, () => {
      server?.forceShutdown();
      emulator?.kill();
    });
    await server.shutdown(config.shutdownGraceMs);
    server = undefined;
    return reason === 'emulator-exited' ? 1 : 0;
  } finally {
    server?.forceShutdown();
    backend?.close();
    if (emulator) {
      const exit = await emulator.stop(EMULATOR_STOP_TIMEOUT_MS);
      if (exit.code !== 0 && exit.code !== null) log.warn(exit, 'the embedded emulator exited with an error');
    }
  }
}

/**
 * The node service's collaborators: the KV connector (its sds_cli finds the VBS's data plane through
 * SDS_KV_SOCKET, set above in all mode), the back end for the host id, and the Node's labels for topology.
 */
async function nodeDeps(config: DriverConfig, backend: SdsClient, log: Logger): Promise<NodeDeps> {
  const connector = new KvConnector({ cliPath: config.sdsCli, logger: log.child({ room: 'connector' }) });
  let topologyLabels: NodeDeps['topologyLabels'];
  if (config.topologyLabels.length > 0) {
    // Loaded only when used: @kubernetes/client-node costs ~0.5 s of start-up and ~70 MiB of RSS.
    const { createKubeClient } = await import('./kube/index.js');
    const kube = createKubeClient({ logger: log, kubeconfig: config.kubeconfig, instance: config.nodeName });
    if (!kube.enabled) log.warn({ topologyLabels: config.topologyLabels }, '--topology-labels is set but Kubernetes is off: NodeGetInfo will fail until a kubeconfig or in-cluster config is available');
    topologyLabels = (signal) => kube.readNodeTopology(config.nodeName, config.topologyLabels, { signal });
  }
  log.info({ sdsCli: connector.cli, kvSocket: process.env.SDS_KV_SOCKET, hostId: config.hostId ?? '(asked of the VBS)' }, 'node service: data plane');
  return {
    connector,
    backend,
    maxVolumesPerNode: config.maxVolumesPerNode,
    log: log.child({ room: 'node' }),
    ...(config.hostId ? { hostId: config.hostId } : {}),
    ...(topologyLabels ? { topologyLabels } : {}),
  };
}

/** Resolves on the first SIGINT/SIGTERM (or when the embedded emulator dies); a second signal calls `hardStop` and exits. */
function stopRequested(log: Logger, emulator: EmbeddedEmulator | undefined, hardStop: () => void): Promise<'signal' | 'emulator-exited'> {
  return new Promise((resolve) => {
    let signalled = false;
    let first: { signal: NodeJS.Signals; at: number } | undefined;
    const onSignal = (signal: NodeJS.Signals) => {
      // One Ctrl-C under `npm start` arrives twice within milliseconds: the terminal signals the foreground
      // process group, and npm forwards it to its child. That is still the first request: drain.
      if (first && first.signal === signal && Date.now() - first.at < DUPLICATE_SIGNAL_MS) return;
      if (signalled) {
        log.warn({ signal }, 'second signal: stopping at once');
        hardStop();
        process.exit(1);
      }
      signalled = true;
      first = { signal, at: Date.now() };
      log.info({ signal }, 'stopping: draining in-flight calls');
      resolve('signal');
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    void emulator?.exited.then((exit) => {
      if (signalled) return;
      signalled = true;
      log.error(exit, 'the embedded emulator exited; stopping the driver');
      resolve('emulator-exited');
    });
  });
}

async function main(argv: string[]): Promise<number> {
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
  try {
    return await run(parsed.config, log);
  } catch (err) {
    log.fatal({ err }, 'sdshypervisor-csi failed');
    return 1;
  } finally {
    log.flush();
  }
}

main(process.argv.slice(2)).then(
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
