// ControllerUnpublishVolume for one host: a plain unmap; when the VBS refuses it because the volume is still
// attached there, a forced unmap if — and only if — that host no longer serves the volume:
//  - the VBS reports the host down (`online=0` in its host record), or
//  - the host's Kubernetes Node carries the `node.kubernetes.io/out-of-service` taint (non-graceful node
//    shutdown: the operator's word that the node is off).
// Otherwise the refusal stands (FAILED_PRECONDITION): the node plugin must unstage the volume first. The VBS
// fences a forced unmap, so a host that comes back cannot write to the volume any more (docs/operations.md).
import type { KubeClient } from '../kube/client.js';
import type { CallOptions, SdsBackend } from '../sds/backend.js';
import { isSdsError } from '../sds/errors.js';
import type { Logger } from '../log/logger.js';

export type NodeKube = Pick<KubeClient, 'enabled' | 'nodeOutOfService'>;

export interface UnpublishDeps {
  backend: SdsBackend;
  kube?: Partial<NodeKube> & { enabled: boolean };
  driverName: string;
  log: Logger;
}

export async function unmapFromHost(
  deps: UnpublishDeps,
  volumeId: string,
  hostId: string,
  opts: CallOptions,
): Promise<void> {
  try {
    await deps.backend.unmapVolume(volumeId, hostId, {}, opts);
    return;
  } catch (err) {
    if (!isSdsError(err, 'Attached')) throw err;
    const reason = await forceReason(deps, volumeId, hostId, opts);
    if (!reason) throw err;
    deps.log.warn(
      { volumeId, hostId, reason },
      'the volume is attached on a host that no longer serves it: unmapping with force',
    );
    await deps.backend.unmapVolume(volumeId, hostId, { force: true }, opts);
  }
}

/** Why the host no longer serves the volume, or undefined when it may still be using it. */
async function forceReason(
  deps: UnpublishDeps,
  volumeId: string,
  hostId: string,
  opts: CallOptions,
): Promise<string | undefined> {
  const mapping = (await deps.backend.volumeHosts(volumeId, opts)).find((h) => h.hostId === hostId);
  if (mapping && !mapping.online) return `the VBS reports host ${hostId} down`;
  const { kube } = deps;
  if (!kube?.enabled || !kube.nodeOutOfService) return undefined;
  try {
    const node = await kube.nodeOutOfService(hostId, deps.driverName, opts.signal ? { signal: opts.signal } : {});
    if (node?.outOfService) return `Node ${node.node} carries the node.kubernetes.io/out-of-service taint`;
  } catch (err) {
    // Without the taint's answer the host may still be writing: the plain refusal stands, the CO retries.
    deps.log.warn({ err, volumeId, hostId }, 'cannot read the Node for the out-of-service taint');
  }
  return undefined;
}
