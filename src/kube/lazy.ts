// The part of the kube room that loads without @kubernetes/client-node (~0.5 s of start-up, ~70 MiB of
// memory): the annotation names, "Kubernetes off", and openKubeClient, which loads the library only when
// Kubernetes is configured. Code that runs in every driver process imports from here, not from index.ts.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { kubernetesServiceInEnv } from '../config/environment.js';
import type { KubeClient, KubeClientOptions, PvcImageSource } from './client.js';
import { KubeError } from './errors.js';

/** Where the service account's credentials are mounted in a pod (client-node appends these to a prefix). */
const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** PVC annotation naming an image imported into the new volume: an absolute back-end path or an http(s) URL. */
export const IMAGE_SOURCE_ANNOTATION = 'sdshypervisor.csi/image-source';
/** Optional PVC annotation with the image's checksum, `sha256:<hex>` or `md5:<hex>`. */
export const IMAGE_CHECKSUM_ANNOTATION = 'sdshypervisor.csi/image-checksum';

export const KUBERNETES_OFF = 'no kubeconfig and no in-cluster service account: Kubernetes features are off';

export function inClusterConfigPresent(root: string): boolean {
  return Boolean(kubernetesServiceInEnv() && existsSync(join(root, SERVICE_ACCOUNT_TOKEN)));
}

export class DisabledKubeClient implements KubeClient {
  readonly enabled = false;
  readonly configSource = 'none' as const;
  private fail(): Promise<never> {
    return Promise.reject(
      new KubeError('Disabled', 'Kubernetes features are off: no in-cluster config and no --kubeconfig / KUBECONFIG'),
    );
  }
  readNodeTopology(): Promise<Record<string, string>> {
    return this.fail();
  }
  readPvcImageSource(): Promise<PvcImageSource | undefined> {
    return this.fail();
  }
  nodeOutOfService(): Promise<{ node: string; outOfService: boolean } | undefined> {
    return this.fail();
  }
  recordPvcEvent(): Promise<void> {
    return this.fail();
  }
}

/**
 * createKubeClient, with @kubernetes/client-node loaded only when a kubeconfig is given or the in-cluster
 * configuration is present; otherwise the same "off" client, at no cost.
 */
export async function openKubeClient(options: KubeClientOptions): Promise<KubeClient> {
  if (options.kubeconfig || inClusterConfigPresent(options.inClusterRoot ?? '')) {
    const { createKubeClient } = await import('./client.js');
    return createKubeClient(options);
  }
  options.logger.child({ room: 'kube' }).info(KUBERNETES_OFF);
  return new DisabledKubeClient();
}
