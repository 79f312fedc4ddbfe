// What the node service needs from the rest of the driver. The KV connector (src/connector's KvConnector)
// satisfies `NodeConnector`; tests of this room may pass a stand-in that throws the same ConnectorError.
import type { Logger } from '../log/logger.js';
import type { SdsBackend } from '../sds/backend.js';

/** `requestId`: the CSI call's, for the connector's log lines. */
export interface ConnectorCallOptions {
  signal?: AbortSignal;
  requestId?: string;
}

export interface NodeConnector {
  /** Attaches the volume to this host (idempotent) and resolves with its block device once it exists. */
  attach(volumeName: string, opts?: ConnectorCallOptions): Promise<string>;
  /** Detaches the volume from this host; a volume that is not attached is success. */
  detach(volumeName: string, opts?: ConnectorCallOptions): Promise<void>;
  /** The volume's block device on this host, or undefined when it is not attached here. */
  queryDevice(volumeName: string, opts?: ConnectorCallOptions): Promise<string | undefined>;
}

export interface NodeDeps {
  connector: NodeConnector;
  /** this node's host id on the back end (`--host-id`); asked of `backend` when absent */
  hostId?: string;
  /** the local VBS, for `systemInfo().hostId` */
  backend?: Pick<SdsBackend, 'systemInfo'>;
  maxVolumesPerNode: number;
  /** extra topology segments (the Node's labels named by --topology-labels); none when absent */
  topologyLabels?: (signal?: AbortSignal) => Promise<Record<string, string>>;
  log: Logger;
  /** how long NodeExpandVolume waits for the device to show the size the controller gave it */
  deviceGrowWaitMs?: number;
}

/** publish_context key set by ControllerPublishVolume: 'ro' when the host mapping is read-only. */
export const PUBLISH_ACCESS_MODE_KEY = 'sdshypervisor.io/access-mode';

/**
 * volume_context key set by CreateVolume when the volume's content came from somewhere ('image', 'snapshot',
 * 'volume'; the controller's CONTEXT_CONTENT_ORIGIN): such a volume is never formatted.
 */
export const CONTEXT_CONTENT_ORIGIN_KEY = 'sdshypervisor.io/contentOrigin';

/** Topology segment key naming the back-end host (the same key the controller reads). */
export const TOPOLOGY_HOST_KEY = 'topology.sdshypervisor.io/host';
