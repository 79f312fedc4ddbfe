// A node that dies with a volume attached, end to end over the real emulator and driver: ControllerUnpublish
// is refused while the VBS reports the host up, forced once the VBS reports it down, and the forced unmap
// fences the volume — the old host, back again and still holding its device, writes to nothing the volume
// keeps: what it had synced before stays, what it writes after never reaches the volume.
// It runs alone (*.alone.test.ts): the fence frees the volume's loop device while the dead host's bind of its
// device node stays until NodeUnpublishVolume, so a test running beside it could be handed that loop number and
// find it already bound at this test's target (and this test's unpublish would rightly leave a mount of another
// volume's device alone).
import { closeSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { failure } from './support/csi-client.js';
import { stageVolume } from './support/features.js';
import { startStack, type Stack } from './support/stack.js';
import { vbsRequest } from './support/vbs.js';

const MiB = 1024 * 1024;
const cap = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' as const } };
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ mode: 'all', pools: ['pool0:2G'] });
});
afterAll(async () => {
  await stack?.stop();
});

function firstBlock(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(16);
    readSync(fd, buffer, 0, 16, 0);
    return buffer.toString('latin1');
  } finally {
    closeSync(fd);
  }
}

function writeSynced(fd: number, text: string): void {
  const block = Buffer.alloc(4096, 0);
  block.write(text.padEnd(16, '.'), 'latin1');
  writeSync(fd, block, 0, block.length, 0);
  fsyncSync(fd);
}

it('refused while the host is up, forced once it is down; the host that comes back writes to nothing', async () => {
  const { controller: ctl, node } = stack.csi;
  const nodeId = (await node.NodeGetInfo({})).node_id;
  const { volume } = await ctl.CreateVolume({
    name: 'pvc-dead-node',
    volume_capabilities: [cap],
    capacity_range: { required_bytes: String(64 * MiB) },
  });
  const id = volume!.volume_id;
  const { staging, target } = await stageVolume(stack, id, cap);
  const file = join(stack.emulatorDataDir, 'pools', 'pool0', 'volumes', id);

  // The pod writes and syncs: that data is safe whatever happens to the node next.
  const holder = openSync(target, 'r+');
  try {
    writeSynced(holder, 'synced-before');
    expect(firstBlock(file)).toBe('synced-before...');

    // The node is still up as far as the VBS knows: a plain unmap, refused.
    expect(await failure(ctl.ControllerUnpublishVolume({ volume_id: id, node_id: nodeId }))).toMatchObject({
      codeName: 'FAILED_PRECONDITION',
    });

    // The node dies (the VBS cluster marks its host down): the volume may go.
    expect((await vbsRequest(stack.vbsSocket, 'SET_HOST_STATE_REQ', { host_id: nodeId, online: '0' })).retcode).toBe(0);
    await ctl.ControllerUnpublishVolume({ volume_id: id, node_id: nodeId });
    expect((await vbsRequest(stack.vbsSocket, 'QUERY_VOLUME_HOSTS_REQ', { vol_name: id })).get('host_num')).toBe('0');
    expect(stack.driverLog()).toMatch(/unmapping with force/);
    expect(stack.emulatorLog()).toMatch(/fenced/);

    // It comes back, its old device still open, and writes: nothing of it reaches the volume.
    expect((await vbsRequest(stack.vbsSocket, 'SET_HOST_STATE_REQ', { host_id: nodeId, online: '1' })).retcode).toBe(0);
    try {
      writeSynced(holder, 'written-after');
    } catch {
      // an I/O error is as good: the write did not land
    }
    expect(firstBlock(file)).toBe('synced-before...');
  } finally {
    closeSync(holder);
  }

  // The node plugin cleans up as after any node restart; the volume can then be published elsewhere or deleted.
  await node.NodeUnpublishVolume({ volume_id: id, target_path: target });
  await node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging });
  await ctl.DeleteVolume({ volume_id: id });
});
