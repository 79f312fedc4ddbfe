// src/kube: the driver's Kubernetes API client (the only code using @kubernetes/client-node).
// Importing this module loads client-node; src/main.ts and code every driver process runs use ./lazy.js instead
// (openKubeClient loads the library only when Kubernetes is configured).
//
// How the handlers use it:
//
//   // at start (src/main.ts), once per process:
//   const kube = createKubeClient({ logger, kubeconfig: config.kubeconfig, instance: config.nodeName });
//   // kube.enabled is false without in-cluster config or --kubeconfig / KUBECONFIG; then every call below
//   // rejects with KubeError kind 'Disabled' (check kube.enabled to skip Kubernetes features quietly).
//
//   // NodeGetInfo (node plugin): the configured --topology-labels, next to the driver's own key
//   // topology.sdshypervisor.io/host. Labels the node lacks are left out.
//   const segments = { ...(await kube.readNodeTopology(config.nodeName, config.topologyLabels)), [HOST_KEY]: hostId };
//
//   // CreateVolume (controller), when the provisioner ran with --extra-create-metadata:
//   const ns = req.parameters['csi.storage.k8s.io/pvc/namespace'], name = req.parameters['csi.storage.k8s.io/pvc/name'];
//   const image = await kube.readPvcImageSource(ns, name, { signal });  // { source, checksum?, pvcUid? } | undefined
//   ... import image.source into the new volume (IMPORT_IMAGE_REQ), then:
//   await kube.recordPvcEvent(ns, name, { type: 'Normal', reason: 'ImageImported', message }, { pvcUid: image.pvcUid });
//   // or { type: 'Warning', reason: 'ImageImportFailed', message } on failure.
//
// Every call is bounded by one deadline (default 5 s, CallOptions.deadlineMs) covering retries with exponential
// backoff on 429, 5xx and network errors; other 4xx fail at once. Failures are KubeError with a `kind`
// (NotFound, Forbidden, InvalidAnnotation, Unavailable, Timeout, Cancelled, ...) for src/server/errors.ts.
// Nothing here logs credentials: only operation names, object names and HTTP statuses.
export {
  createKubeClient,
  IMAGE_CHECKSUM_ANNOTATION,
  IMAGE_SOURCE_ANNOTATION,
  type CallOptions,
  type KubeClient,
  type KubeClientOptions,
  type PvcEvent,
  type PvcImageSource,
} from './client.js';
export { KubeError, isKubeError, type KubeErrorKind } from './errors.js';
export { DEFAULT_RETRY_POLICY, type RetryPolicy } from './retry.js';
