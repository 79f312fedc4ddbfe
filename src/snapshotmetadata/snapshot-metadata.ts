// CSI SnapshotMetadata service (changed-block tracking): the allocated ranges of a snapshot and the ranges
// that differ between two snapshots of one volume, streamed. The back end answers in pages (next_offset);
// this handler follows them, merges ranges that touch across pages, and sends messages of max_results
// tuples, so the CO sees strictly ascending, non-overlapping ranges (docs/snapshot-metadata.md).
import type { GetMetadataAllocatedResponse } from '../generated/csi/v1/GetMetadataAllocatedResponse.js';
import type { SnapshotMetadataHandlers } from '../generated/csi/v1/SnapshotMetadata.js';
import { isValidName } from '../protocol/vbs.js';
import type { ByteRange, CallOptions, ExtentPage, SdsBackend, SnapshotInfo } from '../sds/backend.js';
import { invalidArgument, notFound, outOfRange } from '../server/errors.js';
import type { RpcContext, RpcFactory } from '../server/rpc.js';

/** Tuples per message when the CO leaves max_results at 0. */
export const DEFAULT_MAX_RESULTS = 256;
/** Ranges asked of the back end per page (its limit). */
const BACKEND_PAGE = 1000;

export interface SnapshotMetadataDeps {
  backend: SdsBackend;
}

type Message = Required<
  Pick<GetMetadataAllocatedResponse, 'block_metadata_type' | 'volume_capacity_bytes' | 'block_metadata'>
>;

function parseOffset(raw: string | number | undefined): number {
  const text = String(raw ?? '0');
  if (!/^-?\d+$/.test(text)) throw invalidArgument(`starting_offset ${JSON.stringify(text)} is not a whole number`);
  const n = Number(text);
  if (n < 0) throw outOfRange(`starting_offset ${text} is negative`);
  if (!Number.isSafeInteger(n)) throw outOfRange(`starting_offset ${text} is beyond any volume size`);
  return n;
}

function parseMaxResults(n: number): number {
  if (!Number.isInteger(n) || n < 0) throw invalidArgument(`max_results ${n} must not be negative`);
  return n === 0 ? DEFAULT_MAX_RESULTS : n;
}

async function lookUp(backend: SdsBackend, field: string, id: string, options: CallOptions): Promise<SnapshotInfo> {
  if (id === '') throw invalidArgument(`${field} is required`);
  const snapshot = isValidName(id) ? await backend.getSnapshot(id, options) : undefined;
  if (!snapshot || snapshot.state === 'deleting') throw notFound(`${field}: snapshot ${id} does not exist`);
  return snapshot;
}

/**
 * Follows the back end's pages from `offset` and sends messages of at most `maxResults` ranges. The last
 * range seen is held back until the next page shows whether it continues there. At least one message is
 * sent, so the CO always learns the capacity.
 */
async function stream(
  fetch: (offset: number) => Promise<ExtentPage>,
  offset: number,
  capacity: number,
  maxResults: number,
  ctx: RpcContext,
  send: (message: Message) => Promise<void>,
): Promise<void> {
  const message = (ranges: ByteRange[]): Message => ({
    block_metadata_type: 'VARIABLE_LENGTH',
    volume_capacity_bytes: String(capacity),
    block_metadata: ranges.map((r) => ({ byte_offset: String(r.offset), size_bytes: String(r.length) })),
  });
  const pending: ByteRange[] = [];
  let sent = 0;
  const flush = async (keepLast: boolean) => {
    while (pending.length > (keepLast ? maxResults : 0)) {
      await send(message(pending.splice(0, Math.min(maxResults, pending.length))));
      sent++;
    }
  };
  let next: number | undefined = offset;
  while (next !== undefined) {
    if (ctx.signal.aborted) throw ctx.signal.reason instanceof Error ? ctx.signal.reason : new Error('call cancelled');
    const page = await fetch(next);
    for (const r of page.extents) {
      const last = pending[pending.length - 1];
      if (last && last.offset + last.length === r.offset) last.length += r.length;
      else pending.push({ ...r });
    }
    // Everything but the last range is final; send full messages as they fill.
    await flush(true);
    next = page.nextOffset;
  }
  await flush(false);
  if (sent === 0) await send(message([]));
}

export function snapshotMetadataService(deps: SnapshotMetadataDeps, rpc: RpcFactory): SnapshotMetadataHandlers {
  const { backend } = deps;
  const opts = (ctx: RpcContext): CallOptions => ({ requestId: ctx.requestId, signal: ctx.signal });

  return {
    GetMetadataAllocated: rpc.serverStream('GetMetadataAllocated', async (req, ctx, send) => {
      if (req.snapshot_id === '') throw invalidArgument('snapshot_id is required');
      const offset = parseOffset(req.starting_offset);
      const maxResults = parseMaxResults(req.max_results);
      const snapshot = await lookUp(backend, 'snapshot_id', req.snapshot_id, opts(ctx));
      if (offset > snapshot.sizeBytes)
        throw outOfRange(`starting_offset ${offset} is beyond the snapshot's ${snapshot.sizeBytes} bytes`);
      await stream(
        (o) => backend.snapshotExtents(snapshot.name, { offset: o, limit: BACKEND_PAGE }, opts(ctx)),
        offset,
        snapshot.sizeBytes,
        maxResults,
        ctx,
        send,
      );
    }),

    GetMetadataDelta: rpc.serverStream('GetMetadataDelta', async (req, ctx, send) => {
      if (req.base_snapshot_id === '') throw invalidArgument('base_snapshot_id is required');
      if (req.target_snapshot_id === '') throw invalidArgument('target_snapshot_id is required');
      const offset = parseOffset(req.starting_offset);
      const maxResults = parseMaxResults(req.max_results);
      const base = await lookUp(backend, 'base_snapshot_id', req.base_snapshot_id, opts(ctx));
      const target = await lookUp(backend, 'target_snapshot_id', req.target_snapshot_id, opts(ctx));
      if (base.volumeName !== target.volumeName) {
        throw invalidArgument(
          `base_snapshot_id ${base.name} is a snapshot of volume ${base.volumeName}, target_snapshot_id ${target.name} of volume ${target.volumeName}; both must be snapshots of one volume`,
        );
      }
      if (offset > target.sizeBytes)
        throw outOfRange(`starting_offset ${offset} is beyond the snapshot's ${target.sizeBytes} bytes`);
      await stream(
        (o) => backend.snapshotDelta(base.name, target.name, { offset: o, limit: BACKEND_PAGE }, opts(ctx)),
        offset,
        target.sizeBytes,
        maxResults,
        ctx,
        send,
      );
    }),
  };
}
