// CreateVolume: the request checked, the existing volume judged by CSI's rules (a compatible repeat is
// success), the pool chosen, and the volume made — blank, from a snapshot, a clone or an image. On the
// original protocol level every create asks for the name first and clones go through a temporary snapshot.
import type { CreateVolumeRequest__Output } from '../generated/csi/v1/CreateVolumeRequest.js';
import type { CreateVolumeResponse } from '../generated/csi/v1/CreateVolumeResponse.js';
import type { ProtocolLevel } from '../protocol/catalog.js';
import { isValidName } from '../protocol/vbs.js';
import type { CallOptions, PoolInfo, SdsBackend, VolumeInfo } from '../sds/backend.js';
import { isSdsError } from '../sds/errors.js';
import { aborted, alreadyExists, failedPrecondition, invalidArgument, notFound } from '../server/errors.js';
import type { RpcContext } from '../server/rpc.js';
import { backendNameFor, checkCsiName } from './ids.js';
import type { ImageImports } from './images.js';
import { volumeKey, type OperationLocks } from './locks.js';
import { checkOriginalSettings, cloneThroughSnapshot, finishClone } from './original.js';
import { parseMutableParameters, parseVolumeParameters, type VolumeParameters } from './parameters.js';
import { checkPoolCeiling, choosePool, poolSatisfies, withNamedPool, type PoolDirectory } from './placement.js';
import { checkVolumeCapabilities, chooseSize, parseCapacityRange, requireString } from './validation.js';
import { csiVolume, incompatibilities, volumeContext, withFilesystemMinimum, type RequestedSource } from './volumes.js';

export interface CreateVolumeDeps {
  backend: SdsBackend;
  locks: OperationLocks;
  images: ImageImports;
  poolDirectory: PoolDirectory;
  level: ProtocolLevel;
}

export function createVolumeHandler(
  deps: CreateVolumeDeps,
): (req: CreateVolumeRequest__Output, ctx: RpcContext) => Promise<CreateVolumeResponse> {
  const { backend, locks, images, poolDirectory } = deps;
  const original = deps.level === 'original';
  const opts = (ctx: RpcContext): CallOptions => ({ requestId: ctx.requestId, signal: ctx.signal });

  async function createVolume(req: CreateVolumeRequest__Output, ctx: RpcContext): Promise<CreateVolumeResponse> {
    checkCsiName('name', req.name);
    const caps = checkVolumeCapabilities('volume_capabilities', req.volume_capabilities);
    const params = parseVolumeParameters(req.parameters, parseMutableParameters(req.mutable_parameters));
    if (original)
      checkOriginalSettings(params, (key) => (key in req.mutable_parameters ? 'mutable_parameters' : 'parameters'));
    if (params.fsType && caps.fsTypes.size > 0 && !caps.fsTypes.has(params.fsType)) {
      throw invalidArgument(
        `parameters.fsType ${params.fsType} contradicts the capability's fs_type ${[...caps.fsTypes].join(', ')}`,
      );
    }
    const range = withFilesystemMinimum(
      'capacity_range',
      parseCapacityRange('capacity_range', req.capacity_range),
      caps,
      params,
    );
    const source = requestedSource(req);
    if (source && params.image)
      throw invalidArgument('parameters.imageSource cannot be combined with volume_content_source');
    const name = backendNameFor(req.name);
    const image = await images.resolve(params, req.parameters, source !== undefined, ctx);
    const context = volumeContext(params, source ? source.type : image ? 'image' : undefined);
    // The annotation's image stands for the class's in every comparison below.
    const wanted: VolumeParameters = image ? { ...params, image: { url: image.url } } : params;

    return locks.run(volumeKey(name), `volume ${name}`, async () => {
      const pools = await withNamedPool(backend, await poolDirectory.pools(opts(ctx)), params.poolId, opts(ctx));
      /** A volume that already has the name answers by CSI's rules: a compatible repeat is success. */
      const acceptExisting = async (existing: VolumeInfo): Promise<CreateVolumeResponse> => {
        // The original level tells only that the name is taken (the name derives from the CSI name): the
        // rest of the answer comes from the request (docs/socket-api.md, "what the sources do not say").
        if (existing.statusOnly) return acceptStatusOnly(existing);
        const diffs = incompatibilities(existing, { range, params: wanted, source, cloneType: params.cloneMode });
        const pool = pools.find((p) => p.id === existing.poolId);
        if (pool && !poolSatisfies(pool, req.accessibility_requirements))
          diffs.push('it is not reachable from the required topology');
        if (diffs.length > 0)
          throw alreadyExists(
            `volume ${name} (name ${JSON.stringify(req.name)}) already exists, but ${diffs.join('; ')}`,
          );
        if (existing.state === 'busy' && existing.source.type === 'image' && existing.imageJobId) {
          // An earlier call started the import and gave up waiting: this one waits for it (bounded).
          return { volume: csiVolume(await images.awaitRunning(existing, image, ctx), pool, context) };
        }
        if (existing.state === 'busy' || existing.state === 'deleting') {
          throw aborted(
            `volume ${name} is still ${existing.state === 'busy' ? 'being created' : 'being deleted'}; retry later`,
          );
        }
        return { volume: csiVolume(existing, pool, context) };
      };

      const acceptStatusOnly = async (existing: VolumeInfo): Promise<CreateVolumeResponse> => {
        if (existing.state === 'busy') throw aborted(`volume ${name} is still being created; retry later`);
        if (source?.type === 'volume') await finishClone(backend, name, opts(ctx));
        const sizeGiven = range.requiredBytes > 0 || range.limitBytes > 0;
        const capacity =
          existing.sizeBytes > 0 ? existing.sizeBytes : sizeGiven ? chooseSize('capacity_range', range) : 0;
        const volume = csiVolume(
          {
            ...existing,
            sizeBytes: capacity,
            source: source ? { type: source.type, name: source.id } : { type: 'none' },
          },
          undefined,
          context,
        );
        return { volume };
      };

      // Clones and imports look for an existing volume first: their preparation costs more than a query. A
      // plain volume goes straight to the create, which finds a taken name itself (one request, not two). On
      // the original level every create asks first: its failure for a taken name says nothing more.
      if (source || image || original) {
        const existing = await backend.getVolume(name, opts(ctx));
        if (existing) return acceptExisting(existing);
      }

      const sourceInfo = source ? await lookUpSource(source, ctx) : undefined;
      // A source of the original level does not say its pool: the clone is made where the VBS makes it.
      const pool =
        sourceInfo && !sourceInfo.statusOnly
          ? sourcePool(pools, sourceInfo.poolId, params, req)
          : choosePool(pools, params.poolId, req.accessibility_requirements);
      const cloneType = params.cloneMode ?? (pool.linkedClone ? 'linked' : 'full');
      if (sourceInfo && cloneType === 'linked' && !pool.linkedClone) {
        // Asked for explicitly: the pool's state, not the request, is what cannot be met.
        throw failedPrecondition(
          `parameters.cloneMode: pool ${pool.id} (${pool.type}) cannot make linked clones; use cloneMode "full", or leave cloneMode out to get full copies there`,
        );
      }
      const sizeGiven = range.requiredBytes > 0 || range.limitBytes > 0;
      if (sourceInfo?.statusOnly && !sizeGiven) {
        throw invalidArgument(
          "capacity_range.required_bytes is needed for a volume made from a source on this back end (its protocol level does not tell the source's size)",
        );
      }
      const sizeBytes =
        image && !sizeGiven
          ? undefined
          : chooseSize('capacity_range', range, sourceInfo?.statusOnly ? undefined : sourceInfo?.sizeBytes);
      if (sizeBytes !== undefined) checkPoolCeiling(pool, params.thin, sizeBytes);

      const spec = {
        name,
        poolId: pool.id,
        thin: params.thin,
        qos: params.qos,
        ...(params.cachePolicy ? { cachePolicy: params.cachePolicy } : {}),
      };
      let created: VolumeInfo;
      try {
        if (source?.type === 'snapshot') {
          created = await backend.createVolumeFromSnapshot(
            { ...spec, sizeBytes: sizeBytes!, snapshotName: source.id, cloneType },
            opts(ctx),
          );
        } else if (source?.type === 'volume' && original) {
          created = await cloneThroughSnapshot(
            backend,
            { ...spec, sizeBytes: sizeBytes!, sourceVolumeName: source.id },
            opts(ctx),
          );
        } else if (source?.type === 'volume') {
          created = await backend.cloneVolume(
            { ...spec, sizeBytes: sizeBytes!, sourceVolumeName: source.id, cloneType },
            opts(ctx),
          );
        } else if (image) {
          created = await images.importNew(spec, image, sizeBytes, ctx);
        } else {
          created = await backend.createVolume({ ...spec, sizeBytes: sizeBytes! }, opts(ctx));
        }
      } catch (err) {
        // The back end found the name taken by a volume unlike this request, or busy: judge it by CSI's rules
        // (the back end compares exact sizes; CSI accepts any size within the capacity range).
        if (!isSdsError(err, 'AlreadyExists') && !isSdsError(err, 'Busy')) throw err;
        const existing = await backend.getVolume(name, opts(ctx));
        if (!existing) throw err;
        return acceptExisting(existing);
      }
      // The back end answers a repeat of an identical create with the volume that exists: the same rules apply.
      return acceptExisting(created);
    });
  }

  function requestedSource(req: CreateVolumeRequest__Output): RequestedSource | undefined {
    const src = req.volume_content_source;
    if (!src) return undefined;
    if (src.type === 'snapshot')
      return {
        type: 'snapshot',
        id: requireString('volume_content_source.snapshot.snapshot_id', src.snapshot?.snapshot_id ?? ''),
      };
    if (src.type === 'volume')
      return {
        type: 'volume',
        id: requireString('volume_content_source.volume.volume_id', src.volume?.volume_id ?? ''),
      };
    throw invalidArgument('volume_content_source: a snapshot or a volume is required');
  }

  async function lookUpSource(
    source: RequestedSource,
    ctx: RpcContext,
  ): Promise<{ sizeBytes: number; poolId: string; statusOnly?: boolean }> {
    const found = !isValidName(source.id)
      ? undefined
      : source.type === 'snapshot'
        ? await backend.getSnapshot(source.id, opts(ctx))
        : await backend.getVolume(source.id, opts(ctx));
    if (!found) throw notFound(`source ${source.type} ${source.id} does not exist`);
    return { sizeBytes: found.sizeBytes, poolId: found.poolId, ...(found.statusOnly ? { statusOnly: true } : {}) };
  }

  /** Clones live in their source's pool. */
  function sourcePool(
    pools: PoolInfo[],
    poolId: string,
    params: VolumeParameters,
    req: CreateVolumeRequest__Output,
  ): PoolInfo {
    if (params.poolId !== undefined && params.poolId !== poolId) {
      throw invalidArgument(
        `parameters.pool: the source is in pool ${poolId}; a volume made from it must be in the same pool`,
      );
    }
    const pool = pools.find((p) => p.id === poolId);
    if (!pool) throw failedPrecondition(`the source's pool ${poolId} is not reported by the back end`);
    if (!poolSatisfies(pool, req.accessibility_requirements)) {
      return choosePool([pool], poolId, req.accessibility_requirements); // throws RESOURCE_EXHAUSTED naming the hosts
    }
    return pool;
  }

  return createVolume;
}
