// Copy image to volume: which image a new volume gets (the StorageClass's `imageSource`, or the claim's
// annotation when the class allows it), the import through the back end, and the Events on the claim.
//
// Precedence: a claim's annotation is more specific than its class, so it wins, but only in a class with
// `allowPvcImageSource: "true"`. The default is "false" because an annotation is written by whoever may create
// claims: it could make the VBS read any file in its image directories, or fetch any URL the VBS host can
// reach, into a volume that user then reads. An administrator opts in per StorageClass.
import type { RpcContext } from '../server/rpc.js';
import type { CallOptions, ImageJob, SdsBackend, VolumeInfo } from '../sds/backend.js';
import { isSdsError } from '../sds/errors.js';
import { isKubeError } from '../kube/errors.js';
import type { KubeClient, PvcEvent } from '../kube/index.js';
import { IMAGE_SOURCE_ANNOTATION } from '../kube/lazy.js';
import { failedPrecondition, invalidArgument, resourceExhausted } from '../server/errors.js';
import type { VolumeParameters } from './parameters.js';
import { urlWithoutCredentials } from '../protocol/urls.js';

/** Parameters external-provisioner adds with --extra-create-metadata. */
export const PVC_NAME_KEY = 'csi.storage.k8s.io/pvc/name';
export const PVC_NAMESPACE_KEY = 'csi.storage.k8s.io/pvc/namespace';

export type ImageKube = Pick<KubeClient, 'enabled' | 'readPvcImageSource' | 'recordPvcEvent'>;

export interface Claim {
  namespace: string;
  name: string;
  uid?: string;
}

export interface ImageRequest {
  url: string;
  checksum?: string;
  /** where the image was named, for messages */
  origin: string;
  /** the claim to record Events on, when the driver can reach Kubernetes */
  claim?: Claim;
}

/** A URL without user and password, for messages and Events. */
export function displayImage(url: string): string {
  if (!/^https?:\/\//i.test(url)) return url;
  return urlWithoutCredentials(url);
}

export class ImageImports {
  constructor(
    private readonly backend: SdsBackend,
    private readonly kube: ImageKube | undefined,
    private readonly timeoutMs: number,
  ) {}

  /**
   * The image a new volume gets, or undefined. Reads the claim (one GET, bounded by the Kubernetes client's
   * deadline and the RPC's signal) when the provisioner named it and Kubernetes is reachable.
   */
  async resolve(
    params: VolumeParameters,
    parameters: Record<string, string>,
    hasContentSource: boolean,
    ctx: RpcContext,
  ): Promise<ImageRequest | undefined> {
    const namespace = parameters[PVC_NAMESPACE_KEY];
    const name = parameters[PVC_NAME_KEY];
    const named = namespace !== undefined && name !== undefined && namespace !== '' && name !== '';
    const kube = this.kube?.enabled ? this.kube : undefined;
    let claim: Claim | undefined = named && kube ? { namespace, name } : undefined;

    if (params.allowPvcImageSource && named && !kube) {
      throw failedPrecondition(
        'parameters.allowPvcImageSource is "true", but the driver has no Kubernetes access to read the claim (no in-cluster config and no --kubeconfig)',
      );
    }
    let annotated: { source: string; checksum?: string } | undefined;
    if (claim && kube) {
      try {
        const found = await kube.readPvcImageSource(claim.namespace, claim.name, { signal: ctx.signal });
        if (found) {
          annotated = { source: found.source, ...(found.checksum ? { checksum: found.checksum } : {}) };
          if (found.pvcUid) claim = { ...claim, uid: found.pvcUid };
        }
      } catch (err) {
        if (isKubeError(err, 'InvalidAnnotation')) {
          await this.event(
            claim,
            { type: 'Warning', reason: 'ImageImportFailed', message: (err as Error).message },
            ctx,
          );
          throw err;
        }
        // A class that does not take images from claims needs nothing from the claim: provisioning goes on.
        if (params.allowPvcImageSource) throw err;
        ctx.log.warn(
          { err, pvc: `${claim.namespace}/${claim.name}` },
          'cannot read the claim; its annotations are not honoured by this class anyway',
        );
      }
    }
    if (annotated && claim) {
      const origin = `annotation ${IMAGE_SOURCE_ANNOTATION} of PVC ${claim.namespace}/${claim.name}`;
      if (!params.allowPvcImageSource) {
        const message = `${origin} is set, but the StorageClass does not take images from claims (parameter allowPvcImageSource: "true")`;
        await this.event(claim, { type: 'Warning', reason: 'ImageImportFailed', message }, ctx);
        throw invalidArgument(message);
      }
      if (hasContentSource) {
        const message = `${origin} cannot be combined with a dataSource (snapshot or volume)`;
        await this.event(claim, { type: 'Warning', reason: 'ImageImportFailed', message }, ctx);
        throw invalidArgument(message);
      }
      return { url: annotated.source, ...(annotated.checksum ? { checksum: annotated.checksum } : {}), origin, claim };
    }
    if (params.image) {
      return {
        url: params.image.url,
        ...(params.image.checksum ? { checksum: params.image.checksum } : {}),
        origin: 'parameters.imageSource',
        ...(claim ? { claim } : {}),
      };
    }
    return undefined;
  }

  /** Starts the import that creates volume `spec.name`, and waits for it. */
  async importNew(
    spec: {
      name: string;
      poolId: string;
      thin: boolean;
      qos: VolumeParameters['qos'];
      cachePolicy?: VolumeParameters['cachePolicy'];
    },
    image: ImageRequest,
    sizeBytes: number | undefined,
    ctx: RpcContext,
  ): Promise<VolumeInfo> {
    let started: { job: ImageJob; volume: VolumeInfo };
    try {
      started = await this.backend.importImage(
        {
          ...spec,
          url: image.url,
          ...(image.checksum ? { checksum: image.checksum } : {}),
          ...(sizeBytes !== undefined ? { sizeBytes } : {}),
        },
        this.opts(ctx),
      );
    } catch (err) {
      // Refused before anything was made: unreadable source, format or path, bad size.
      if (isSdsError(err, 'ImageError') || isSdsError(err, 'InvalidParameter')) {
        const message = `${image.origin}: the image ${displayImage(image.url)} cannot be imported: ${(err as Error).message}`;
        await this.failed(image, message, ctx);
        throw invalidArgument(message);
      }
      throw err;
    }
    return this.finish(spec.name, started.job.id, image, ctx, started.volume);
  }

  /**
   * Waits for an import already running into `volume` (a retry after the call that started it gave up at
   * its deadline). The wait is bounded by the RPC's deadline and the import timeout, never open-ended.
   */
  async awaitRunning(volume: VolumeInfo, image: ImageRequest | undefined, ctx: RpcContext): Promise<VolumeInfo> {
    const request = image ?? { url: 'the image', origin: 'the image import' };
    return this.finish(volume.name, volume.imageJobId!, request, ctx, volume);
  }

  private async finish(
    name: string,
    jobId: string,
    image: ImageRequest,
    ctx: RpcContext,
    fallback: VolumeInfo,
  ): Promise<VolumeInfo> {
    const started = Date.now();
    const done = await this.backend.waitImageJob(jobId, this.timeoutMs, this.opts(ctx));
    // A failed import removes its volume on the back end, so nothing half-made is left behind.
    if (done.state !== 'done') {
      const message = `${image.origin}: the image ${displayImage(image.url)} could not be imported into volume ${name}: ${done.error ?? done.state}`;
      await this.failed(image, message, ctx);
      // A full pool is a lack of capacity, not a bad argument: the CO may retry elsewhere or later.
      throw done.outOfSpace ? resourceExhausted(message) : invalidArgument(message);
    }
    const volume = (await this.backend.getVolume(name, this.opts(ctx))) ?? fallback;
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    await this.event(
      image.claim,
      {
        type: 'Normal',
        reason: 'ImageImported',
        message: `imported ${displayImage(image.url)} (${done.bytesTotal} bytes) into volume ${name} of ${volume.sizeBytes} bytes; waited ${seconds} s`,
      },
      ctx,
    );
    return volume;
  }

  private async failed(image: ImageRequest, message: string, ctx: RpcContext): Promise<void> {
    await this.event(image.claim, { type: 'Warning', reason: 'ImageImportFailed', message }, ctx);
  }

  /** Records an Event; a failure to record it is logged, never the RPC's failure. */
  private async event(claim: Claim | undefined, event: PvcEvent, ctx: RpcContext): Promise<void> {
    if (!claim || !this.kube?.enabled) return;
    try {
      await this.kube.recordPvcEvent(claim.namespace, claim.name, event, {
        signal: ctx.signal,
        ...(claim.uid ? { pvcUid: claim.uid } : {}),
      });
    } catch (err) {
      ctx.log.warn(
        { err, pvc: `${claim.namespace}/${claim.name}`, reason: event.reason },
        'cannot record the event on the claim',
      );
    }
  }

  private opts(ctx: RpcContext): CallOptions {
    return { requestId: ctx.requestId, signal: ctx.signal };
  }
}
