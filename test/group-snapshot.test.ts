// CSI GroupController over the real gRPC socket against the real stack (driver + emulator processes): the
// rules of CreateVolumeGroupSnapshot / GetVolumeGroupSnapshot / DeleteVolumeGroupSnapshot, members seen
// through the Controller service, and restores.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VolumeCapability } from '../src/generated/csi/v1/VolumeCapability.js';
import { failure, type ControllerApi, type GroupControllerApi } from './support/csi-client.js';
import { startStack, type Stack } from './support/stack.js';
import { vbsRequest } from './support/vbs.js';

const MiB = 1024 * 1024;
const blockCap: VolumeCapability = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };

let stack: Stack;
let ctl: ControllerApi;
let grp: GroupControllerApi;

async function volume(name: string, parameters: Record<string, string> = {}): Promise<string> {
  const { volume: v } = await ctl.CreateVolume({ name, volume_capabilities: [blockCap], capacity_range: { required_bytes: String(64 * MiB) }, parameters });
  return v!.volume_id;
}

describe('CSI GroupController', () => {
  const ids: string[] = [];

  beforeAll(async () => {
    stack = await startStack({ pools: ['pool0:2G', 'pool1:1G'] });
    ctl = stack.csi.controller;
    grp = stack.csi.groupController;
    for (const n of ['pvc-ga', 'pvc-gb', 'pvc-gc']) ids.push(await volume(n));
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('advertises CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT', async () => {
    const caps = await grp.GroupControllerGetCapabilities({});
    expect(caps.capabilities.map((c) => c.rpc?.type)).toEqual(['CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT']);
  });

  it('creates a group whose members carry its id, idempotently; another member set is ALREADY_EXISTS', async () => {
    const req = { name: 'groupsnapshot-1111', source_volume_ids: [ids[2]!, ids[0]!, ids[1]!], parameters: { quiesce: 'freeze' } };
    const first = (await grp.CreateVolumeGroupSnapshot(req)).group_snapshot!;
    expect(first.group_snapshot_id).toBe('groupsnapshot-1111');
    expect(first.ready_to_use).toBe(true);
    expect(first.snapshots.map((s) => s.source_volume_id).sort()).toEqual([...ids].sort());
    for (const s of first.snapshots) {
      expect(s).toMatchObject({ group_snapshot_id: 'groupsnapshot-1111', ready_to_use: true, size_bytes: String(64 * MiB) });
      expect(s.creation_time).toEqual(first.creation_time);
    }
    const again = (await grp.CreateVolumeGroupSnapshot(req)).group_snapshot!;
    expect(again).toEqual(first);
    const other = await failure(grp.CreateVolumeGroupSnapshot({ ...req, source_volume_ids: [ids[0]!] }));
    expect(other).toMatchObject({ codeName: 'ALREADY_EXISTS', message: expect.stringContaining('source volumes') });
    const otherQuiesce = await failure(grp.CreateVolumeGroupSnapshot({ ...req, parameters: { quiesce: 'flush' } }));
    expect(otherQuiesce.codeName).toBe('ALREADY_EXISTS');

    // Members through the Controller service: GetSnapshot and ListSnapshots report the group.
    const member = first.snapshots[0]!;
    expect((await ctl.GetSnapshot({ snapshot_id: member.snapshot_id })).snapshot).toMatchObject({ group_snapshot_id: 'groupsnapshot-1111' });
    const listed = await ctl.ListSnapshots({ snapshot_id: member.snapshot_id });
    expect(listed.entries[0]!.snapshot).toMatchObject({ group_snapshot_id: 'groupsnapshot-1111' });
    // A member cannot be deleted alone (CSI: INVALID_ARGUMENT, the CO must delete the group).
    const alone = await failure(ctl.DeleteSnapshot({ snapshot_id: member.snapshot_id }));
    expect(alone).toMatchObject({ codeName: 'INVALID_ARGUMENT', message: expect.stringContaining('group snapshot groupsnapshot-1111') });
    // A member restores like any snapshot.
    const restored = await ctl.CreateVolume({
      name: 'pvc-restored', volume_capabilities: [blockCap], volume_content_source: { snapshot: { snapshot_id: member.snapshot_id } },
    });
    expect(restored.volume?.content_source?.snapshot?.snapshot_id).toBe(member.snapshot_id);
    await ctl.DeleteVolume({ volume_id: 'pvc-restored' });
  });

  it('GetVolumeGroupSnapshot: the group; NOT_FOUND when gone; INVALID_ARGUMENT when snapshot_ids do not match', async () => {
    const got = (await grp.GetVolumeGroupSnapshot({ group_snapshot_id: 'groupsnapshot-1111' })).group_snapshot!;
    expect(got.snapshots).toHaveLength(3);
    const ids3 = got.snapshots.map((s) => s.snapshot_id);
    expect((await grp.GetVolumeGroupSnapshot({ group_snapshot_id: 'groupsnapshot-1111', snapshot_ids: [...ids3].reverse() })).group_snapshot).toEqual(got);
    expect((await failure(grp.GetVolumeGroupSnapshot({ group_snapshot_id: 'groupsnapshot-1111', snapshot_ids: [ids3[0]!] }))).codeName).toBe('INVALID_ARGUMENT');
    expect((await failure(grp.GetVolumeGroupSnapshot({ group_snapshot_id: 'groupsnapshot-none' }))).codeName).toBe('NOT_FOUND');
    expect((await failure(grp.GetVolumeGroupSnapshot({ group_snapshot_id: 'bad id!' }))).codeName).toBe('NOT_FOUND');
    expect((await failure(grp.GetVolumeGroupSnapshot({ group_snapshot_id: '' }))).codeName).toBe('INVALID_ARGUMENT');
  });

  it('DeleteVolumeGroupSnapshot: checks snapshot_ids, deletes every member, and is idempotent', async () => {
    const got = (await grp.GetVolumeGroupSnapshot({ group_snapshot_id: 'groupsnapshot-1111' })).group_snapshot!;
    const members = got.snapshots.map((s) => s.snapshot_id);
    expect((await failure(grp.DeleteVolumeGroupSnapshot({ group_snapshot_id: 'groupsnapshot-1111', snapshot_ids: ['x'] }))).codeName).toBe('INVALID_ARGUMENT');
    await grp.DeleteVolumeGroupSnapshot({ group_snapshot_id: 'groupsnapshot-1111', snapshot_ids: members });
    for (const m of members) expect((await failure(ctl.GetSnapshot({ snapshot_id: m }))).codeName).toBe('NOT_FOUND');
    expect((await vbsRequest(stack.vbsSocket, 'QUERY_GROUP_SNAPSHOT_REQ', { group_name: 'groupsnapshot-1111' })).retcode).toBe(-900079);
    await grp.DeleteVolumeGroupSnapshot({ group_snapshot_id: 'groupsnapshot-1111' });
    await grp.DeleteVolumeGroupSnapshot({ group_snapshot_id: 'never-existed' });
    await grp.DeleteVolumeGroupSnapshot({ group_snapshot_id: 'bad id!' });
    expect((await failure(grp.DeleteVolumeGroupSnapshot({ group_snapshot_id: '' }))).codeName).toBe('INVALID_ARGUMENT');
  });

  it.each([
    [{ name: '', source_volume_ids: ['pvc-ga'] }, 'INVALID_ARGUMENT', 'name'],
    [{ name: 'g-x', source_volume_ids: [] }, 'INVALID_ARGUMENT', 'source_volume_ids is required'],
    [{ name: 'g-x', source_volume_ids: ['pvc-ga', 'pvc-ga'] }, 'INVALID_ARGUMENT', 'twice'],
    [{ name: 'g-x', source_volume_ids: ['pvc-ga', ''] }, 'INVALID_ARGUMENT', 'source_volume_ids[1]'],
    [{ name: 'g-x', source_volume_ids: ['pvc-ga'], parameters: { quiesce: 'nap' } }, 'INVALID_ARGUMENT', 'parameters.quiesce'],
    [{ name: 'g-x', source_volume_ids: ['pvc-ga'], parameters: { color: 'red' } }, 'INVALID_ARGUMENT', '"color"'],
    [{ name: 'g-x', source_volume_ids: ['pvc-ga'], parameters: { freezeTimeoutSeconds: '600' } }, 'INVALID_ARGUMENT', 'freezeTimeoutSeconds'],
    [{ name: 'g-x', source_volume_ids: ['pvc-ga', 'pvc-missing'] }, 'NOT_FOUND', 'pvc-missing'],
    [{ name: 'g-x', source_volume_ids: ['pvc-ga', 'bad id!'] }, 'NOT_FOUND', 'bad id!'],
  ])('CreateVolumeGroupSnapshot %j → %s', async (req, code, text) => {
    const f = await failure(grp.CreateVolumeGroupSnapshot(req));
    expect(f).toMatchObject({ codeName: code, message: expect.stringContaining(text) });
    expect((await vbsRequest(stack.vbsSocket, 'QUERY_GROUP_SNAPSHOT_REQ', { group_name: 'g-x' })).retcode).toBe(-900079);
  });

  it('members in several pools cannot be snapshotted together: FAILED_PRECONDITION, nothing left', async () => {
    const other = await volume('pvc-other-pool', { pool: 'pool1' });
    const f = await failure(grp.CreateVolumeGroupSnapshot({ name: 'g-pools', source_volume_ids: [ids[0]!, other], parameters: { 'csi.storage.k8s.io/volumegroupsnapshot/name': 'x' } }));
    expect(f).toMatchObject({ codeName: 'FAILED_PRECONDITION', message: expect.stringContaining('share one pool') });
    const listed = await ctl.ListSnapshots({ source_volume_id: ids[0]! });
    expect(listed.entries).toEqual([]);
  });
});
