// The driver's Kubernetes client: the only code that talks to the API server (through @kubernetes/client-node).
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  CoreV1Api,
  KubeConfig,
  Observable,
  type CoreV1Event,
  type ObservableMiddleware,
  type RequestContext,
  type ResponseContext,
} from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { hostnameFromEnv } from '../config/environment.js';
import { KubeError } from './errors.js';
import {
  DisabledKubeClient,
  IMAGE_CHECKSUM_ANNOTATION,
  IMAGE_SOURCE_ANNOTATION,
  inClusterConfigPresent,
  KUBERNETES_OFF,
} from './lazy.js';
import { classify } from './classify.js';
import { DEFAULT_RETRY_POLICY, withRetries, type RetryPolicy } from './retry.js';

export { IMAGE_CHECKSUM_ANNOTATION, IMAGE_SOURCE_ANNOTATION };

export interface KubeClientOptions {
  logger: Logger;
  /** --kubeconfig / KUBECONFIG: a kubeconfig file. Absent: in-cluster config when present, else Kubernetes off. */
  kubeconfig?: string;
  /** overall deadline and backoff of every call (default 5 s, 100 ms doubling up to 1 s) */
  retry?: Partial<RetryPolicy>;
  /** reported as the source of Events (default `sdshypervisor-csi`) */
  component?: string;
  /** this instance, e.g. the node or pod name, reported with Events (default: the host name) */
  instance?: string;
  /** prefix of the in-cluster service-account paths; tests point it at a temp dir (default: none) */
  inClusterRoot?: string;
}

export interface CallOptions {
  /** cancels the call, e.g. when the CSI RPC that needs it is cancelled */
  signal?: AbortSignal;
  /** overrides the overall deadline of this call, in ms */
  deadlineMs?: number;
}

export interface PvcImageSource {
  /** absolute path on the back end (`/...` or `file:///...`) or an `http://` / `https://` URL */
  source: string;
  /** `sha256:<hex>` or `md5:<hex>` */
  checksum?: string;
  /** the claim's UID, so recordPvcEvent can skip reading the claim again */
  pvcUid?: string;
}

export interface PvcEvent {
  type: 'Normal' | 'Warning';
  /** UpperCamelCase, e.g. ImageImported / ImageImportFailed */
  reason: string;
  message: string;
}

export interface KubeClient {
  /** false when there is no kubeconfig and no in-cluster config: every call then fails with kind Disabled */
  readonly enabled: boolean;
  /** where the configuration came from */
  readonly configSource: 'kubeconfig' | 'in-cluster' | 'none';
  /** the API server URL, when enabled */
  readonly server?: string;
  /** The values of `labelKeys` on Node `nodeName`; keys the node lacks are left out (and logged). */
  readNodeTopology(
    nodeName: string,
    labelKeys: readonly string[],
    options?: CallOptions,
  ): Promise<Record<string, string>>;
  /**
   * Whether the Node the CSI node id `nodeId` belongs to carries the `node.kubernetes.io/out-of-service`
   * taint (non-graceful node shutdown). The Node is found by the kubelet's `csi.volume.kubernetes.io/nodeid`
   * annotation for `driverName`, else by name; undefined when no Node matches.
   */
  nodeOutOfService(
    nodeId: string,
    driverName: string,
    options?: CallOptions,
  ): Promise<{ node: string; outOfService: boolean } | undefined>;
  /** The image-source annotations of a claim, or undefined when it has none. */
  readPvcImageSource(namespace: string, name: string, options?: CallOptions): Promise<PvcImageSource | undefined>;
  /** Records an Event on a claim (the claim is read for its UID unless `pvcUid` is given). */
  recordPvcEvent(
    namespace: string,
    name: string,
    event: PvcEvent,
    options?: CallOptions & { pvcUid?: string },
  ): Promise<void>;
}

/**
 * Builds the client. A kubeconfig that cannot be loaded is a configuration error (thrown, kind Config): the
 * operator asked for Kubernetes and should hear at start that it will not work.
 */
export function createKubeClient(options: KubeClientOptions): KubeClient {
  const logger = options.logger.child({ room: 'kube' });
  const kubeConfig = new KubeConfig();
  let configSource: KubeClient['configSource'];
  if (options.kubeconfig) {
    try {
      kubeConfig.loadFromString(readFileSync(options.kubeconfig, 'utf8'));
    } catch (err) {
      throw new KubeError(
        'Config',
        `kubeconfig ${options.kubeconfig}: cannot load it: ${(err as Error).message}`,
        undefined,
        { cause: err },
      );
    }
    if (!kubeConfig.getCurrentCluster()) {
      throw new KubeError('Config', `kubeconfig ${options.kubeconfig}: no current-context naming a cluster`);
    }
    configSource = 'kubeconfig';
  } else if (inClusterConfigPresent(options.inClusterRoot ?? '')) {
    kubeConfig.loadFromCluster(options.inClusterRoot ?? '');
    configSource = 'in-cluster';
  } else {
    logger.info(KUBERNETES_OFF);
    return new DisabledKubeClient();
  }
  const server = kubeConfig.getCurrentCluster()?.server;
  logger.info({ configSource, server }, 'Kubernetes API client ready');
  return new ApiKubeClient(kubeConfig, logger, configSource, server, options);
}

/** The kubelet's record of each CSI driver's node id on a Node (JSON: driver name → node id). */
const NODE_ID_ANNOTATION = 'csi.volume.kubernetes.io/nodeid';
/** Non-graceful node shutdown: an operator's word that the node is down and its volumes may go. */
export const OUT_OF_SERVICE_TAINT = 'node.kubernetes.io/out-of-service';

// Kubernetes name rules, checked before a request so a bad argument is not sent (and not retried).
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_KEY =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const EVENT_REASON = /^[A-Za-z][A-Za-z0-9]{0,127}$/;
const IMAGE_SOURCE = /^(\/|file:\/\/\/|https?:\/\/)/;
const CHECKSUM = /^(sha256:[0-9a-fA-F]{64}|md5:[0-9a-fA-F]{32})$/;
/** client-go's recorder truncates messages to this; the events.k8s.io API refuses longer notes. */
const MAX_EVENT_MESSAGE = 1024;

function requireName(field: string, value: string, pattern: RegExp, maxLength: number): void {
  if (typeof value !== 'string' || value.length === 0 || value.length > maxLength || !pattern.test(value)) {
    throw new KubeError('InvalidArgument', `${field} ${JSON.stringify(value)} is not a valid Kubernetes name`);
  }
}

class ApiKubeClient implements KubeClient {
  readonly enabled = true;
  private readonly core: CoreV1Api;
  private readonly policy: RetryPolicy;
  private readonly component: string;
  private readonly instance: string;

  constructor(
    kubeConfig: KubeConfig,
    private readonly logger: Logger,
    readonly configSource: 'kubeconfig' | 'in-cluster',
    readonly server: string | undefined,
    options: KubeClientOptions,
  ) {
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.policy = { ...DEFAULT_RETRY_POLICY, ...options.retry };
    this.component = options.component ?? 'sdshypervisor-csi';
    this.instance = options.instance ?? hostnameFromEnv() ?? 'unknown';
  }

  async readNodeTopology(
    nodeName: string,
    labelKeys: readonly string[],
    options: CallOptions = {},
  ): Promise<Record<string, string>> {
    requireName('node name', nodeName, DNS_SUBDOMAIN, 253);
    for (const key of labelKeys) {
      if (typeof key !== 'string' || !LABEL_KEY.test(key)) {
        throw new KubeError(
          'InvalidArgument',
          `topology label key ${JSON.stringify(key)} is not a Kubernetes label key`,
        );
      }
    }
    const node = await this.call(`GET node ${nodeName}`, options, (o) => this.core.readNode({ name: nodeName }, o));
    const labels = node.metadata?.labels ?? {};
    const topology: Record<string, string> = {};
    const missing: string[] = [];
    for (const key of labelKeys) {
      if (typeof labels[key] === 'string') topology[key] = labels[key];
      else missing.push(key);
    }
    if (missing.length > 0)
      this.logger.warn({ node: nodeName, missing }, 'node lacks topology labels; they are left out of its topology');
    return topology;
  }

  async nodeOutOfService(
    nodeId: string,
    driverName: string,
    options: CallOptions = {},
  ): Promise<{ node: string; outOfService: boolean } | undefined> {
    const list = await this.call('LIST nodes', options, (o) => this.core.listNode({}, o));
    const nodeIdOf = (annotations: Record<string, string> | undefined): string | undefined => {
      try {
        const ids = JSON.parse(annotations?.[NODE_ID_ANNOTATION] ?? '{}') as Record<string, unknown>;
        return typeof ids[driverName] === 'string' ? (ids[driverName] as string) : undefined;
      } catch {
        return undefined; // not ours to judge: a Node with a garbled annotation matches by name only
      }
    };
    const node =
      list.items.find((n) => nodeIdOf(n.metadata?.annotations) === nodeId) ??
      list.items.find((n) => n.metadata?.name === nodeId);
    if (!node?.metadata?.name) return undefined;
    const outOfService = (node.spec?.taints ?? []).some((t) => t.key === OUT_OF_SERVICE_TAINT);
    return { node: node.metadata.name, outOfService };
  }

  async readPvcImageSource(
    namespace: string,
    name: string,
    options: CallOptions = {},
  ): Promise<PvcImageSource | undefined> {
    requireName('PVC namespace', namespace, DNS_LABEL, 63);
    requireName('PVC name', name, DNS_SUBDOMAIN, 253);
    const pvc = await this.call(`GET persistentvolumeclaim ${namespace}/${name}`, options, (o) =>
      this.core.readNamespacedPersistentVolumeClaim({ namespace, name }, o),
    );
    const annotations = pvc.metadata?.annotations ?? {};
    const source = annotations[IMAGE_SOURCE_ANNOTATION]?.trim();
    const checksum = annotations[IMAGE_CHECKSUM_ANNOTATION]?.trim();
    if (!source) {
      if (checksum) {
        throw new KubeError(
          'InvalidAnnotation',
          `PVC ${namespace}/${name}: ${IMAGE_CHECKSUM_ANNOTATION} is set but ${IMAGE_SOURCE_ANNOTATION} is not`,
        );
      }
      return undefined;
    }
    if (!IMAGE_SOURCE.test(source)) {
      throw new KubeError(
        'InvalidAnnotation',
        `PVC ${namespace}/${name}: ${IMAGE_SOURCE_ANNOTATION} must be an absolute path, a file:/// URL or an http(s) URL, not ${JSON.stringify(source)}`,
      );
    }
    if (checksum !== undefined && checksum !== '' && !CHECKSUM.test(checksum)) {
      throw new KubeError(
        'InvalidAnnotation',
        `PVC ${namespace}/${name}: ${IMAGE_CHECKSUM_ANNOTATION} must be sha256:<64 hex> or md5:<32 hex>`,
      );
    }
    return { source, ...(checksum ? { checksum } : {}), ...(pvc.metadata?.uid ? { pvcUid: pvc.metadata.uid } : {}) };
  }

  async recordPvcEvent(
    namespace: string,
    name: string,
    event: PvcEvent,
    options: CallOptions & { pvcUid?: string } = {},
  ): Promise<void> {
    requireName('PVC namespace', namespace, DNS_LABEL, 63);
    requireName('PVC name', name, DNS_SUBDOMAIN, 253);
    if (event.type !== 'Normal' && event.type !== 'Warning') {
      throw new KubeError('InvalidArgument', `event type must be Normal or Warning, not ${JSON.stringify(event.type)}`);
    }
    if (!EVENT_REASON.test(event.reason)) {
      throw new KubeError(
        'InvalidArgument',
        `event reason ${JSON.stringify(event.reason)} must be UpperCamelCase letters and digits`,
      );
    }
    // One deadline for both requests: the claim read (for its UID) and the Event.
    const started = Date.now();
    const deadlineMs = options.deadlineMs ?? this.policy.deadlineMs;
    let uid = options.pvcUid;
    if (!uid) {
      const pvc = await this.call(`GET persistentvolumeclaim ${namespace}/${name}`, options, (o) =>
        this.core.readNamespacedPersistentVolumeClaim({ namespace, name }, o),
      );
      uid = pvc.metadata?.uid;
    }
    const now = new Date();
    const message =
      event.message.length > MAX_EVENT_MESSAGE ? `${event.message.slice(0, MAX_EVENT_MESSAGE - 3)}...` : event.message;
    const body: CoreV1Event = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: {
        // client-go's naming: the object's name and a hex nanosecond timestamp (random below the millisecond).
        name: `${name.slice(0, 253 - 17)}.${(BigInt(now.getTime()) * 1_000_000n + BigInt(randomInt(1_000_000))).toString(16)}`,
        namespace,
      },
      involvedObject: { apiVersion: 'v1', kind: 'PersistentVolumeClaim', namespace, name, ...(uid ? { uid } : {}) },
      type: event.type,
      reason: event.reason,
      message,
      source: { component: this.component },
      reportingComponent: this.component,
      reportingInstance: this.instance,
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
    };
    const remaining = Math.max(1, deadlineMs - (Date.now() - started));
    await this.call(
      `POST event on persistentvolumeclaim ${namespace}/${name}`,
      { ...options, deadlineMs: remaining },
      (o) => this.core.createNamespacedEvent({ namespace, body }, o),
    );
    this.logger.debug({ pvc: `${namespace}/${name}`, reason: event.reason }, 'event recorded');
  }

  /** One API call with the deadline, retries and error typing of this room. */
  private call<T>(
    operation: string,
    options: CallOptions,
    request: (o: { middleware: ObservableMiddleware[]; middlewareMergeStrategy: 'append' }) => Promise<T>,
  ): Promise<T> {
    const policy = { ...this.policy, ...(options.deadlineMs !== undefined ? { deadlineMs: options.deadlineMs } : {}) };
    return withRetries(
      { operation, logger: this.logger, policy, signal: options.signal, classify: (err) => classify(operation, err) },
      (signal) => request({ middleware: [abortOn(signal)], middlewareMergeStrategy: 'append' }),
    );
  }
}

/** Middleware handing our AbortSignal to the HTTP request, so an attempt past the deadline is torn down. */
function abortOn(signal: AbortSignal): ObservableMiddleware {
  return {
    pre: (context: RequestContext) => {
      context.setSignal(signal);
      return new Observable(Promise.resolve(context));
    },
    post: (context: ResponseContext) => new Observable(Promise.resolve(context)),
  };
}
