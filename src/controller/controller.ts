// CSI Controller service. Handlers validate, take the per-key lock, call the back end (SdsBackend) and map
// the result; back-end errors travel as SdsError and become gRPC codes in src/server/errors.ts.
import type { ControllerHandlers } from '../generated/csi/v1/Controller.js';
import type { ControllerServiceCapability } from '../generated/csi/v1/ControllerServiceCapability.js';
import type { ListSnapshotsResponse } from '../generated/csi/v1/ListSnapshotsResponse.js';
import type { ListVolumesResponse } from '../generated/csi/v1/ListVolumesResponse.js';
import type { ValidateVolumeCapabilitiesResponse } from '../generated/csi/v1/ValidateVolumeCapabilitiesResponse.js';
import type { ProtocolLevel } from '../protocol/catalog.js';
import { isValidName } from '../protocol/vbs.js';
import { MiB, type CallOptions, type Page, type PoolInfo, type SdsBackend, type SnapshotInfo } from '../sds/backend.js';
import { isSdsError } from '../sds/errors.js';
import { alreadyExists, invalidArgument, notFound, outOfRange, unimplemented } from '../server/errors.js';
import type { RpcContext, RpcFactory } from '../server/rpc.js';
import { createVolumeHandler } from './create-volume.js';
import {
  backendNameFor,
  checkCsiName,
  decodePageToken,
  encodePageToken,
  isKnownIdForm,
  type TokenKind,
} from './ids.js';
import { ImageImports, type ImageKube } from './images.js';
import { unmapFromHost, type NodeKube } from './unpublish.js';
import { OperationLocks, snapshotKey, volumeKey } from './locks.js';
import {
  controllerCapabilities,
  EXTENDED_CONTROLLER_CAPABILITIES,
  EXTENDED_ONLY_CALLS,
  removeCloneLeftovers,
} from './original.js';
import { isReadOnlyMode } from '../util/access-modes.js';
import { parseMutableParameters, parseSnapshotParameters, parseVolumeParameters } from './parameters.js';
import { candidatePools, checkPoolCeiling, PoolDirectory, poolsForTopology, withNamedPool } from './placement.js';
import {
  checkVolumeCapability,
  isSingleNodeMode,
  malformedCapability,
  parseCapacityRange,
  requireString,
  roundUpToMiB,
  unsupportedCapability,
  type ByteRange,
} from './validation.js';
import { csiSnapshot, csiVolume, reportedSettings, settingDifferences, volumeCondition } from './volumes.js';

/** What the controller advertises on the extended level (controllerCapabilities(level) for either). */
export const CONTROLLER_CAPABILITIES = EXTENDED_CONTROLLER_CAPABILITIES;

/** publish_context key: `ro` or `rw`, how the volume was mapped to the node's host. */
export const PUBLISH_ACCESS_MODE = 'sdshypervisor.io/access-mode';

export interface ControllerDeps {
  backend: SdsBackend;
  locks?: OperationLocks;
  /** how long CreateVolume waits for an image import before answering (the CO then retries) */
  imageImportTimeoutMs?: number;
  /** the Kubernetes API: claim image-source annotations and Events, Nodes' out-of-service taint (absent or disabled: none) */
  kube?: ImageKube & Partial<NodeKube>;
  /** the CSI driver name, to find a node id's Node by the kubelet's annotation; default csi.sdshypervisor.io */
  driverName?: string;
  /** the VBS's protocol level (default extended): what is advertised and how clones and publishes are made */
  level?: ProtocolLevel;
}

const MAX_BACKEND_PAGE = 1000;
/** With max_entries 0 a response still stops here (and carries next_token) to stay well under gRPC's 4 MiB. */
const MAX_UNLIMITED_ENTRIES = 2000;

export function controllerService(deps: ControllerDeps, rpc: RpcFactory): ControllerHandlers {
  const { backend } = deps;
  const level = deps.level ?? 'extended';
  const original = level === 'original';
  const locks = deps.locks ?? new OperationLocks();
  const images = new ImageImports(backend, deps.kube, deps.imageImportTimeoutMs ?? 30 * 60_000);
  const opts = (ctx: RpcContext): CallOptions => ({ requestId: ctx.requestId, signal: ctx.signal });

  const poolDirectory = new PoolDirectory((callOpts) => backend.queryPools(undefined, callOpts));
  const poolOf = (poolId: string, ctx: RpcContext): Promise<PoolInfo | undefined> =>
    poolDirectory.pool(poolId, opts(ctx));

  /** Collects up to `maxEntries` (0 = all) items from a marker-paged back-end list. */
  async function collect<T>(
    kind: TokenKind,
    token: string,
    maxEntries: number,
    fetch: (marker: string, limit: number) => Promise<Page<T>>,
  ): Promise<{ items: T[]; nextToken: string }> {
    if (maxEntries < 0) throw invalidArgument('max_entries must not be negative');
    const max = maxEntries === 0 ? MAX_UNLIMITED_ENTRIES : maxEntries;
    let marker = decodePageToken(kind, token);
    const items: T[] = [];
    do {
      const page = await fetch(marker, Math.min(MAX_BACKEND_PAGE, max - items.length));
      items.push(...page.items);
      marker = page.nextMarker;
    } while (marker !== '' && items.length < max);
    return { items, nextToken: encodePageToken(kind, marker) };
  }

  const createVolume = createVolumeHandler({ backend, locks, images, poolDirectory, level });

  const handlers: ControllerHandlers = {
    CreateVolume: rpc.unary('CreateVolume', createVolume),

    DeleteVolume: rpc.unary('DeleteVolume', async (req, ctx) => {
      // An id that can never name a volume names one that does not exist: done.
      if (!isKnownIdForm('volume_id', req.volume_id)) return {};
      await locks.run(volumeKey(req.volume_id), `volume ${req.volume_id}`, async () => {
        await backend.deleteVolume(req.volume_id, opts(ctx));
        if (original) await removeCloneLeftovers(backend, req.volume_id, opts(ctx));
      });
      return {};
    }),

    ControllerPublishVolume: rpc.unary('ControllerPublishVolume', async (req, ctx) => {
      const known = isKnownIdForm('volume_id', req.volume_id);
      const nodeId = requireString('node_id', req.node_id);
      checkVolumeCapability('volume_capability', req.volume_capability);
      if (!known) throw notFound(`volume ${req.volume_id} does not exist`);
      if (!isValidName(nodeId)) throw notFound(`node ${nodeId} does not exist`);
      const mode = req.volume_capability!.access_mode!.mode;
      const readOnly = req.readonly || isReadOnlyMode(mode);
      return locks.run(volumeKey(req.volume_id), `volume ${req.volume_id}`, async () => {
        if (original) {
          // No mapping request on this level: the node attaches with sds_cli, as os-brick did.
          if (!(await backend.getVolume(req.volume_id, opts(ctx))))
            throw notFound(`volume ${req.volume_id} does not exist`);
          return { publish_context: { [PUBLISH_ACCESS_MODE]: readOnly ? 'ro' : 'rw' } };
        }
        await backend.mapVolume(req.volume_id, nodeId, { readOnly, exclusive: isSingleNodeMode(mode) }, opts(ctx));
        return { publish_context: { [PUBLISH_ACCESS_MODE]: readOnly ? 'ro' : 'rw' } };
      });
    }),

    ControllerUnpublishVolume: rpc.unary('ControllerUnpublishVolume', async (req, ctx) => {
      // A volume or node that cannot exist is not published anywhere: nothing to undo.
      if (!isKnownIdForm('volume_id', req.volume_id)) return {};
      if (req.node_id !== '' && !isValidName(req.node_id)) return {};
      if (original) return {}; // nothing was mapped: the node's NodeUnstage detached it
      await locks.run(volumeKey(req.volume_id), `volume ${req.volume_id}`, async () => {
        try {
          const hosts =
            req.node_id !== ''
              ? [req.node_id]
              : (await backend.volumeHosts(req.volume_id, opts(ctx))).map((h) => h.hostId);
          const unpublish = {
            backend,
            kube: deps.kube,
            driverName: deps.driverName ?? 'csi.sdshypervisor.io',
            log: ctx.log,
          };
          for (const host of hosts) await unmapFromHost(unpublish, req.volume_id, host, opts(ctx));
        } catch (err) {
          // Volume or host unknown to the back end: the volume is certainly not mapped there.
          if (!isSdsError(err, 'NotFound') && !isSdsError(err, 'HostNotFound')) throw err;
        }
      });
      return {};
    }),

    ValidateVolumeCapabilities: rpc.unary(
      'ValidateVolumeCapabilities',
      async (req, ctx): Promise<ValidateVolumeCapabilitiesResponse> => {
        const known = isKnownIdForm('volume_id', req.volume_id);
        if (req.volume_capabilities.length === 0) throw invalidArgument('volume_capabilities is required');
        req.volume_capabilities.forEach((cap, i) => {
          const why = malformedCapability(cap);
          if (why) throw invalidArgument(`volume_capabilities[${i}]: ${why}`);
        });
        const params = parseVolumeParameters(req.parameters, parseMutableParameters(req.mutable_parameters));
        const volume = known ? await backend.getVolume(req.volume_id, opts(ctx)) : undefined;
        if (!volume) throw notFound(`volume ${req.volume_id} does not exist`);
        const reasons = req.volume_capabilities.map(unsupportedCapability).filter((r): r is string => r !== undefined);
        const diffs = volume.statusOnly ? [] : settingDifferences(volume, params, 'thin' in req.parameters);
        const problems = [...reasons, ...diffs.map((d) => `the volume does not match the parameters: ${d}`)];
        if (problems.length > 0) return { message: problems.join('; ') };
        return {
          confirmed: {
            volume_context: req.volume_context,
            volume_capabilities: req.volume_capabilities,
            parameters: req.parameters,
            mutable_parameters: req.mutable_parameters,
          },
        };
      },
    ),

    ListVolumes: rpc.unary('ListVolumes', async (req, ctx): Promise<ListVolumesResponse> => {
      const { items, nextToken } = await collect('lv1', req.starting_token, req.max_entries, (marker, limit) =>
        backend.listVolumes({ ...(marker ? { marker } : {}), limit }, opts(ctx)),
      );
      const pools = new Map((await poolDirectory.pools(opts(ctx))).map((p) => [p.id, p]));
      return {
        entries: items.map((v) => ({
          // No reported settings here: ControllerGetVolume has them. A page of 500 serializes in a quarter of the
          // time without them (docs/BENCHMARKS.md, the scale section), and no CO reads them from a listing.
          volume: csiVolume(v, pools.get(v.poolId)),
          status: { published_node_ids: v.mappedHosts, volume_condition: volumeCondition(v) },
        })),
        next_token: nextToken,
      };
    }),

    GetCapacity: rpc.unary('GetCapacity', async (req, ctx) => {
      const params = parseVolumeParameters(req.parameters);
      const unsupported = req.volume_capabilities.some((cap) => malformedCapability(cap) ?? unsupportedCapability(cap));
      const pools = await withNamedPool(
        backend,
        await backend.queryPools(undefined, opts(ctx)),
        params.poolId,
        opts(ctx),
      );
      // The pool CreateVolume would pick for this topology; nothing can be provisioned where no pool is seen.
      const pool = poolsForTopology(candidatePools(pools, params.poolId), req.accessible_topology).find(
        (p) => p.healthy,
      );
      const available =
        pool && !unsupported
          ? Math.floor((params.thin ? pool.thinCapacityBytes : pool.thickCapacityBytes) / MiB) * MiB
          : 0;
      return {
        available_capacity: String(available),
        maximum_volume_size: { value: String(available) },
        minimum_volume_size: { value: String(MiB) },
      };
    }),

    ControllerGetCapabilities: rpc.unary('ControllerGetCapabilities', async () => ({
      capabilities: controllerCapabilities(level).map((type): ControllerServiceCapability => ({ rpc: { type } })),
    })),

    CreateSnapshot: rpc.unary('CreateSnapshot', async (req, ctx) => {
      checkCsiName('name', req.name);
      const sourceKnown = isKnownIdForm('source_volume_id', req.source_volume_id);
      parseSnapshotParameters(req.parameters);
      const name = backendNameFor(req.name);
      return locks.run(snapshotKey(name), `snapshot ${name}`, async () => {
        const existing = await backend.getSnapshot(name, opts(ctx));
        if (existing?.statusOnly)
          return { snapshot: csiSnapshot({ ...existing, volumeName: req.source_volume_id, createdAt: new Date() }) };
        if (existing) {
          if (existing.volumeName !== req.source_volume_id) {
            throw alreadyExists(
              `snapshot ${name} (name ${JSON.stringify(req.name)}) already exists for volume ${existing.volumeName}, not ${req.source_volume_id}`,
            );
          }
          return { snapshot: csiSnapshot(existing) };
        }
        if (!sourceKnown) throw notFound(`source volume ${req.source_volume_id} does not exist`);
        return { snapshot: csiSnapshot(await backend.createSnapshot(name, req.source_volume_id, opts(ctx))) };
      });
    }),

    DeleteSnapshot: rpc.unary('DeleteSnapshot', async (req, ctx) => {
      if (!isKnownIdForm('snapshot_id', req.snapshot_id)) return {};
      await locks.run(snapshotKey(req.snapshot_id), `snapshot ${req.snapshot_id}`, () =>
        backend.deleteSnapshot(req.snapshot_id, opts(ctx)),
      );
      return {};
    }),

    ListSnapshots: rpc.unary('ListSnapshots', async (req, ctx): Promise<ListSnapshotsResponse> => {
      const cut = (s: SnapshotInfo) => s.state !== 'creating' && s.state !== 'deleting';
      // Filters naming an id that cannot exist match nothing (not an error).
      if (
        (req.snapshot_id !== '' && !isValidName(req.snapshot_id)) ||
        (req.source_volume_id !== '' && !isValidName(req.source_volume_id))
      ) {
        decodePageToken('ls1', req.starting_token);
        return { entries: [], next_token: '' };
      }
      const { items, nextToken } = await collect('ls1', req.starting_token, req.max_entries, (marker, limit) =>
        backend.listSnapshots(
          {
            ...(marker ? { marker } : {}),
            limit,
            ...(req.source_volume_id ? { volumeName: req.source_volume_id } : {}),
            ...(req.snapshot_id ? { snapshotName: req.snapshot_id } : {}),
          },
          opts(ctx),
        ),
      );
      return { entries: items.filter(cut).map((s) => ({ snapshot: csiSnapshot(s) })), next_token: nextToken };
    }),

    GetSnapshot: rpc.unary('GetSnapshot', async (req, ctx) => {
      const known = isKnownIdForm('snapshot_id', req.snapshot_id);
      const snapshot = known ? await backend.getSnapshot(req.snapshot_id, opts(ctx)) : undefined;
      if (!snapshot) throw notFound(`snapshot ${req.snapshot_id} does not exist`);
      return { snapshot: csiSnapshot(snapshot) };
    }),

    ControllerExpandVolume: rpc.unary('ControllerExpandVolume', async (req, ctx) => {
      const known = isKnownIdForm('volume_id', req.volume_id);
      if (!req.capacity_range) throw invalidArgument('capacity_range is required');
      const range = parseCapacityRange('capacity_range', req.capacity_range);
      if (range.requiredBytes === 0 && range.limitBytes === 0)
        throw invalidArgument('capacity_range needs required_bytes or limit_bytes');
      const cap = req.volume_capability ? checkVolumeCapability('volume_capability', req.volume_capability) : undefined;
      if (!known) throw notFound(`volume ${req.volume_id} does not exist`);
      const nodeExpansionRequired = !cap?.block;
      return locks.run(volumeKey(req.volume_id), `volume ${req.volume_id}`, async () => {
        const volume = await backend.getVolume(req.volume_id, opts(ctx));
        if (!volume) throw notFound(`volume ${req.volume_id} does not exist`);
        if (volume.statusOnly) {
          // Its size is not told on this level: grow to the target (EXTEND_VOLUME_REQ of an equal size is a no-op).
          if (range.requiredBytes === 0)
            throw invalidArgument(
              'capacity_range.required_bytes is needed on this back end (its protocol level does not tell the current size)',
            );
          const target = expansionTarget(range, 0);
          const grown = await backend.extendVolume(req.volume_id, target, opts(ctx));
          return { capacity_bytes: String(grown.sizeBytes), node_expansion_required: nodeExpansionRequired };
        }
        const target = expansionTarget(range, volume.sizeBytes);
        if (volume.sizeBytes >= target)
          return { capacity_bytes: String(volume.sizeBytes), node_expansion_required: nodeExpansionRequired };
        const pool = await poolOf(volume.poolId, ctx);
        if (pool) checkPoolCeiling(pool, volume.thin, target);
        const grown = await backend.extendVolume(req.volume_id, target, opts(ctx));
        return { capacity_bytes: String(grown.sizeBytes), node_expansion_required: nodeExpansionRequired };
      });
    }),

    ControllerGetVolume: rpc.unary('ControllerGetVolume', async (req, ctx) => {
      const known = isKnownIdForm('volume_id', req.volume_id);
      const volume = known ? await backend.getVolume(req.volume_id, opts(ctx)) : undefined;
      if (!volume) throw notFound(`volume ${req.volume_id} does not exist`);
      return {
        volume: csiVolume(volume, await poolOf(volume.poolId, ctx), reportedSettings(volume)),
        status: { published_node_ids: volume.mappedHosts, volume_condition: volumeCondition(volume) },
      };
    }),

    ControllerModifyVolume: rpc.unary('ControllerModifyVolume', async (req, ctx) => {
      const known = isKnownIdForm('volume_id', req.volume_id);
      if (Object.keys(req.mutable_parameters).length === 0) throw invalidArgument('mutable_parameters is required');
      const change = parseMutableParameters(req.mutable_parameters);
      if (!known) throw notFound(`volume ${req.volume_id} does not exist`);
      // Only the keys present change: absent ones are undefined and not sent.
      await locks.run(volumeKey(req.volume_id), `volume ${req.volume_id}`, () =>
        backend.modifyVolume(req.volume_id, change, opts(ctx)),
      );
      return {};
    }),
  };
  if (original) {
    // Not advertised on this level (the VBS has no list, record or QoS-change request): say so, as CSI asks.
    for (const call of EXTENDED_ONLY_CALLS) {
      (handlers as unknown as Record<string, unknown>)[call] = rpc.unary(call, async (): Promise<never> => {
        throw unimplemented(`${call} needs a VBS of the extended protocol level; this one speaks the original level`);
      });
    }
  }
  return handlers;
}

/** The size ControllerExpandVolume grows to; the current size when it already satisfies the range. */
function expansionTarget(range: ByteRange, currentBytes: number): number {
  if (range.requiredBytes === Number.POSITIVE_INFINITY)
    throw outOfRange('capacity_range.required_bytes exceeds the largest volume the back end can hold');
  if (range.limitBytes > 0 && currentBytes > range.limitBytes) {
    throw outOfRange(
      `capacity_range.limit_bytes ${range.limitBytes} is below the volume's current ${currentBytes} bytes; volumes cannot shrink`,
    );
  }
  const target = range.requiredBytes > 0 ? roundUpToMiB(range.requiredBytes) : currentBytes;
  if (range.limitBytes > 0 && target > range.limitBytes) {
    throw outOfRange(
      `capacity_range: ${target} bytes (required_bytes rounded up to whole MiB) exceeds limit_bytes ${range.limitBytes}`,
    );
  }
  return Math.max(target, currentBytes);
}
