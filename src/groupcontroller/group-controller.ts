// CSI GroupController service: crash-consistent group snapshots. The back end cuts every member at one point
// in time (docs/group-snapshots.md); handlers validate, take the per-group lock, and map records to CSI.
// group_snapshot_id is the back-end group name; member snapshot ids are the member snapshots' names.
import { z } from 'zod';
import type { GroupControllerHandlers } from '../generated/csi/v1/GroupController.js';
import type { VolumeGroupSnapshot } from '../generated/csi/v1/VolumeGroupSnapshot.js';
import { isValidName } from '../protocol/vbs.js';
import type { CallOptions, GroupSnapshotInfo, QuiesceMode, SdsBackend } from '../sds/backend.js';
import { aborted, alreadyExists, invalidArgument, notFound } from '../server/errors.js';
import type { RpcContext, RpcFactory } from '../server/rpc.js';
import { backendNameFor, checkCsiName } from '../controller/ids.js';
import { OperationLocks } from '../controller/locks.js';
import { KUBERNETES_PREFIX } from '../controller/parameters.js';
import { csiSnapshot } from '../controller/volumes.js';

export const GROUP_CONTROLLER_CAPABILITIES = ['CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT'] as const;

export interface GroupControllerDeps {
  backend: SdsBackend;
  locks?: OperationLocks;
}

export interface GroupParameters {
  quiesce?: QuiesceMode;
  freezeTimeoutMs?: number;
}

const groupParametersSchema = z
  .object({
    quiesce: z.enum(['freeze', 'flush']).optional(),
    freezeTimeoutSeconds: z
      .string()
      .regex(/^\d{1,2}$/, 'must be a whole number of seconds')
      .transform(Number)
      .refine((n) => n >= 1 && n <= 60, 'must be between 1 and 60')
      .optional(),
  })
  .strict();

/** VolumeGroupSnapshotClass parameters: `quiesce` (freeze|flush), `freezeTimeoutSeconds` (1-60). */
export function parseGroupParameters(params: Record<string, string>): GroupParameters {
  const own = Object.fromEntries(Object.entries(params).filter(([k]) => !k.startsWith(KUBERNETES_PREFIX)));
  const result = groupParametersSchema.safeParse(own);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    if (issue.code === 'unrecognized_keys')
      throw invalidArgument(`parameters: unknown key ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`);
    throw invalidArgument(`parameters.${issue.path.join('.')}: ${issue.message}`);
  }
  const out: GroupParameters = {};
  if (result.data.quiesce !== undefined) out.quiesce = result.data.quiesce;
  if (result.data.freezeTimeoutSeconds !== undefined) out.freezeTimeoutMs = result.data.freezeTimeoutSeconds * 1000;
  return out;
}

export function csiGroupSnapshot(info: GroupSnapshotInfo): VolumeGroupSnapshot {
  const ms = info.createdAt.getTime();
  return {
    group_snapshot_id: info.name,
    // Every member carries the group's id (csiSnapshot reads it from the record's group_name).
    snapshots: info.snapshots.map((s) => ({ ...csiSnapshot(s), group_snapshot_id: info.name })),
    creation_time: { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 },
    ready_to_use:
      info.state === 'available' && info.snapshots.every((s) => s.state === 'available' || s.state === 'in-use'),
  };
}

/** The group's member snapshot ids differ from `snapshotIds` (when the CO sent any). */
function mismatch(info: GroupSnapshotInfo, snapshotIds: string[]): string | undefined {
  if (snapshotIds.length === 0) return undefined;
  const have = info.snapshots.map((s) => s.name).sort();
  const given = [...new Set(snapshotIds)].sort();
  if (have.join('\n') === given.join('\n')) return undefined;
  return `snapshot_ids do not match group snapshot ${info.name}: its members are ${have.join(', ')}`;
}

const groupKey = (name: string) => `group/${name}`;

export function groupControllerService(deps: GroupControllerDeps, rpc: RpcFactory): GroupControllerHandlers {
  const { backend } = deps;
  const locks = deps.locks ?? new OperationLocks();
  const opts = (ctx: RpcContext): CallOptions => ({ requestId: ctx.requestId, signal: ctx.signal });

  return {
    GroupControllerGetCapabilities: rpc.unary('GroupControllerGetCapabilities', async () => ({
      capabilities: GROUP_CONTROLLER_CAPABILITIES.map((type) => ({ rpc: { type } })),
    })),

    CreateVolumeGroupSnapshot: rpc.unary('CreateVolumeGroupSnapshot', async (req, ctx) => {
      checkCsiName('name', req.name);
      if (req.source_volume_ids.length === 0) throw invalidArgument('source_volume_ids is required');
      req.source_volume_ids.forEach((id, i) => {
        if (id === '') throw invalidArgument(`source_volume_ids[${i}] is empty`);
      });
      if (new Set(req.source_volume_ids).size !== req.source_volume_ids.length)
        throw invalidArgument('source_volume_ids lists a volume twice');
      const params = parseGroupParameters(req.parameters);
      const unknown = req.source_volume_ids.find((id) => !isValidName(id));
      const name = backendNameFor(req.name);
      const wanted = [...req.source_volume_ids].sort();
      return locks.run(groupKey(name), `group snapshot ${name}`, async () => {
        const existing = await backend.getGroupSnapshot(name, opts(ctx));
        if (existing) {
          const diffs: string[] = [];
          if (existing.volumeNames.join(':') !== wanted.join(':'))
            diffs.push(`its source volumes are ${existing.volumeNames.join(', ')}`);
          if (params.quiesce !== undefined && existing.quiesce !== params.quiesce)
            diffs.push(`it was quiesced by ${existing.quiesce}`);
          if (diffs.length > 0)
            throw alreadyExists(
              `group snapshot ${name} (name ${JSON.stringify(req.name)}) already exists, but ${diffs.join('; ')}`,
            );
          if (existing.state === 'deleting') throw aborted(`group snapshot ${name} is being deleted; retry later`);
          return { group_snapshot: csiGroupSnapshot(existing) };
        }
        if (unknown !== undefined) throw notFound(`source volume ${unknown} does not exist`);
        const created = await backend.createGroupSnapshot({ name, volumeNames: wanted, ...params }, opts(ctx));
        return { group_snapshot: csiGroupSnapshot(created) };
      });
    }),

    DeleteVolumeGroupSnapshot: rpc.unary('DeleteVolumeGroupSnapshot', async (req, ctx) => {
      if (req.group_snapshot_id === '') throw invalidArgument('group_snapshot_id is required');
      // An id that can never name a group names one that does not exist: done.
      if (!isValidName(req.group_snapshot_id)) return {};
      const name = req.group_snapshot_id;
      await locks.run(groupKey(name), `group snapshot ${name}`, async () => {
        const existing = await backend.getGroupSnapshot(name, opts(ctx));
        if (!existing) return;
        const wrong = mismatch(existing, req.snapshot_ids);
        if (wrong) throw invalidArgument(wrong);
        await backend.deleteGroupSnapshot(name, opts(ctx));
      });
      return {};
    }),

    GetVolumeGroupSnapshot: rpc.unary('GetVolumeGroupSnapshot', async (req, ctx) => {
      if (req.group_snapshot_id === '') throw invalidArgument('group_snapshot_id is required');
      const found = isValidName(req.group_snapshot_id)
        ? await backend.getGroupSnapshot(req.group_snapshot_id, opts(ctx))
        : undefined;
      if (!found) throw notFound(`group snapshot ${req.group_snapshot_id} does not exist`);
      const wrong = mismatch(found, req.snapshot_ids);
      if (wrong) throw invalidArgument(wrong);
      return { group_snapshot: csiGroupSnapshot(found) };
    }),
  };
}
