// One volume, two staging paths, two access types, in the real stack (driver --mode=all and emulator processes,
// the C sds_cli, real loop devices and mounts, the CSI socket). The CO SHALL send one staging_target_path per
// volume, but a kubelet restart or a changed kubelet root can send another; every mix must be answered with
// an exact code, never let raw block I/O in beside a mounted filesystem (a read-write bind of the device node,
// or a read-only loop over it), and leave a state that NodeUnpublish / NodeUnstage alone take apart: no mount,
// no loop device, nothing attached. See docs/node.md, "A second staging path".
import { execFileSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvConnector } from '../src/connector/index.js';
import type { VolumeCapability } from '../src/generated/csi/v1/VolumeCapability.js';
import { blockCap, codeOf, mountCap } from './support/node-harness.js';
import { startStack, type Stack } from './support/stack.js';

const MiB = 1024 * 1024;

let stack: Stack;
let nodeId: string;
let connector: KvConnector;
let seq = 0;

beforeAll(async () => {
  stack = await startStack({ mode: 'all', pools: ['pool0:2G'] });
  nodeId = (await stack.csi.node.NodeGetInfo({})).node_id;
  connector = new KvConnector({ cliPath: stack.sdsCli, env: { ...process.env, SDS_KV_SOCKET: stack.kvSocket } });
});
afterAll(async () => {
  await stack?.stop(); // fails the file if a mount or loop device of the stack is left
});

/** Mount points under `dir` (findmnt reads the kernel's table). */
function mountsUnder(dir: string): string[] {
  return execFileSync('findmnt', ['-rn', '-o', 'TARGET'], { encoding: 'utf8' })
    .split('\n')
    .filter((p) => p === dir || p.startsWith(`${dir}/`));
}

/** Loop devices whose backing file is `device` (the read-only loops of read-only block publishes). */
function loopsOver(device: string): string[] {
  return execFileSync('losetup', ['-j', device], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/**
 * A volume created and ControllerPublished read-write to this node, with calls that record each answer's
 * code under a label: a scenario's answers are compared in one piece at its end, after everything it made
 * was taken apart, so a wrong answer never leaves a mount behind and the failure shows every answer.
 */
async function mixedVolume() {
  const name = `pvc-mix-${process.pid}-${++seq}`;
  const { volume } = await stack.csi.controller.CreateVolume({
    name,
    volume_capabilities: [mountCap('ext4', 'SINGLE_NODE_MULTI_WRITER')],
    capacity_range: { required_bytes: String(64 * MiB) },
  });
  const id = volume!.volume_id;
  const { publish_context } = await stack.csi.controller.ControllerPublishVolume({
    volume_id: id,
    node_id: nodeId,
    volume_capability: mountCap('ext4', 'SINGLE_NODE_MULTI_WRITER'),
  });
  const dir = join(stack.dir, 'kubelet', name);
  await mkdir(dir, { recursive: true });
  const answers: Array<[string, string]> = [];
  const node = stack.csi.node;
  const details = new Map<string, string>();
  const record = async (label: string, call: Promise<unknown>) => {
    answers.push([
      label,
      await codeOf(
        call.catch((err: Error & { details?: string }) => {
          details.set(label, err.details ?? err.message);
          throw err;
        }),
      ),
    ]);
  };
  return {
    id,
    dir,
    answers,
    /** the error details of a refused call, by label */
    details,
    path: (name: string) => join(dir, name),
    device: () => connector.queryDevice(id),
    stage: (label: string, staging: string, cap: VolumeCapability) =>
      record(
        label,
        node.NodeStageVolume({ volume_id: id, staging_target_path: staging, volume_capability: cap, publish_context }),
      ),
    publish: (label: string, staging: string, target: string, cap: VolumeCapability, readonly = false) =>
      record(
        label,
        node.NodePublishVolume({
          volume_id: id,
          staging_target_path: staging,
          target_path: target,
          volume_capability: cap,
          readonly,
          publish_context,
        }),
      ),
    unpublish: (label: string, target: string) =>
      record(label, node.NodeUnpublishVolume({ volume_id: id, target_path: target })),
    unstage: (label: string, staging: string) =>
      record(label, node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging })),
    /** After the scenario's own teardown: nothing of the volume is left on the host, and it goes. */
    async expectGone(device: string | undefined) {
      expect(mountsUnder(dir)).toEqual([]);
      if (device) expect(loopsOver(device)).toEqual([]);
      expect(await connector.queryDevice(id)).toBeUndefined();
      await stack.csi.controller.ControllerUnpublishVolume({ volume_id: id, node_id: nodeId });
      await stack.csi.controller.DeleteVolume({ volume_id: id });
    },
  };
}

describe('one volume staged at two paths (real stack)', () => {
  it('block at A, then filesystem at B: no block publish beside the mounted filesystem; all of it unstages', async () => {
    const v = await mixedVolume();
    const [a, b] = [v.path('staging-a'), v.path('staging-b')];
    const [roTarget, rwTarget, oneTarget] = [v.path('pod-ro'), v.path('pod-rw'), v.path('pod-one')];
    await v.stage('stage block at A', a, blockCap('MULTI_NODE_MULTI_WRITER'));
    await v.stage('stage block at A again', a, blockCap('MULTI_NODE_MULTI_WRITER'));
    // A block staging leaves nothing on the host to see: B cannot know of A, and stages.
    await v.stage('stage filesystem at B', b, mountCap('ext4', 'SINGLE_NODE_MULTI_WRITER'));
    const device = await v.device();
    await v.publish('read-only block publish via A', a, roTarget, blockCap('MULTI_NODE_READER_ONLY'), true);
    const loopsBeside = device ? loopsOver(device) : [];
    await v.publish('read-write block publish via A', a, rwTarget, blockCap('SINGLE_NODE_MULTI_WRITER'));
    await v.publish('single-writer block publish via A', a, oneTarget, blockCap('SINGLE_NODE_WRITER'));
    await v.unpublish('unpublish ro', roTarget);
    await v.unpublish('unpublish rw', rwTarget);
    await v.unpublish('unpublish single', oneTarget);
    // A holds nothing while the device is mounted at B: detaching would pull it from under B.
    await v.unstage('unstage A while B is mounted', a);
    await v.unstage('unstage B', b);
    await v.unstage('unstage A', a);
    await v.unstage('unstage B again', b);
    expect(v.answers).toEqual([
      ['stage block at A', 'OK'],
      ['stage block at A again', 'OK'],
      ['stage filesystem at B', 'OK'],
      ['read-only block publish via A', 'FAILED_PRECONDITION'],
      ['read-write block publish via A', 'FAILED_PRECONDITION'],
      ['single-writer block publish via A', 'FAILED_PRECONDITION'],
      ['unpublish ro', 'OK'],
      ['unpublish rw', 'OK'],
      ['unpublish single', 'OK'],
      ['unstage A while B is mounted', 'FAILED_PRECONDITION'],
      ['unstage B', 'OK'],
      ['unstage A', 'OK'],
      ['unstage B again', 'OK'],
    ]);
    expect(loopsBeside).toEqual([]);
    expect(v.details.get('read-only block publish via A')).toContain(`mounted as a filesystem at ${b}`);
    expect(v.details.get('unstage A while B is mounted')).toContain(`still in use at ${b}`);
    await v.expectGone(device);
  });

  it('filesystem at A (published), then block at B: refused, and no block publish through B; all of it unstages', async () => {
    const v = await mixedVolume();
    const [a, b] = [v.path('staging-a'), v.path('staging-b')];
    const [fsTarget, roTarget, rwTarget] = [v.path('pod-fs'), v.path('pod-ro'), v.path('pod-rw')];
    const fs = mountCap('ext4', 'SINGLE_NODE_MULTI_WRITER');
    await v.stage('stage filesystem at A', a, fs);
    await v.publish('filesystem publish via A', a, fsTarget, fs);
    await v.stage('stage block at B', b, blockCap('MULTI_NODE_MULTI_WRITER'));
    const device = await v.device();
    // A CO that publishes through B anyway (the stage's answer ignored) must not reach the raw device.
    await v.publish('read-only block publish via B', b, roTarget, blockCap('MULTI_NODE_READER_ONLY'), true);
    const loopsBeside = device ? loopsOver(device) : [];
    await v.publish('read-write block publish via B', b, rwTarget, blockCap('SINGLE_NODE_MULTI_WRITER'));
    await v.unpublish('unpublish ro', roTarget);
    await v.unpublish('unpublish rw', rwTarget);
    await v.unstage('unstage B while A is mounted', b);
    await v.unpublish('unpublish fs', fsTarget);
    await v.unstage('unstage A', a);
    await v.unstage('unstage B', b);
    expect(v.answers).toEqual([
      ['stage filesystem at A', 'OK'],
      ['filesystem publish via A', 'OK'],
      ['stage block at B', 'FAILED_PRECONDITION'],
      ['read-only block publish via B', 'FAILED_PRECONDITION'],
      ['read-write block publish via B', 'FAILED_PRECONDITION'],
      ['unpublish ro', 'OK'],
      ['unpublish rw', 'OK'],
      ['unstage B while A is mounted', 'FAILED_PRECONDITION'],
      ['unpublish fs', 'OK'],
      ['unstage A', 'OK'],
      ['unstage B', 'OK'],
    ]);
    expect(loopsBeside).toEqual([]);
    expect(v.details.get('read-write block publish via B')).toContain('mounted as a filesystem at');
    expect(v.details.get('stage block at B')).toContain(`staged as a filesystem at ${a}`);
    await v.expectGone(device);
  });

  it('filesystem at A, then filesystem at B (same, other fs type, read-only): FAILED_PRECONDITION; A stays served', async () => {
    const v = await mixedVolume();
    const [a, b] = [v.path('staging-a'), v.path('staging-b')];
    const target = v.path('pod');
    const fs = mountCap('ext4', 'SINGLE_NODE_MULTI_WRITER');
    await v.stage('stage ext4 at A', a, fs);
    await v.stage('stage ext4 at B', b, fs);
    await v.stage('stage xfs at B', b, mountCap('xfs', 'SINGLE_NODE_MULTI_WRITER'));
    await v.stage('stage read-only ext4 at B', b, mountCap('ext4', 'MULTI_NODE_READER_ONLY'));
    await v.stage('stage ext4 at A again', a, fs);
    await v.stage('stage xfs at A', a, mountCap('xfs', 'SINGLE_NODE_MULTI_WRITER'));
    await v.publish('publish via B', b, target, fs);
    await v.publish('publish via A', a, target, fs);
    const device = await v.device();
    await v.unpublish('unpublish', target);
    await v.unstage('unstage B while A is mounted', b);
    await v.unstage('unstage A', a);
    await v.unstage('unstage B', b);
    expect(v.answers).toEqual([
      ['stage ext4 at A', 'OK'],
      ['stage ext4 at B', 'FAILED_PRECONDITION'],
      ['stage xfs at B', 'FAILED_PRECONDITION'],
      ['stage read-only ext4 at B', 'FAILED_PRECONDITION'],
      ['stage ext4 at A again', 'OK'],
      ['stage xfs at A', 'ALREADY_EXISTS'],
      ['publish via B', 'FAILED_PRECONDITION'],
      ['publish via A', 'OK'],
      ['unpublish', 'OK'],
      ['unstage B while A is mounted', 'FAILED_PRECONDITION'],
      ['unstage A', 'OK'],
      ['unstage B', 'OK'],
    ]);
    await v.expectGone(device);
  });

  it('block at A, published, then filesystem at B: FAILED_PRECONDITION (the raw publish is a user); all of it unstages', async () => {
    const v = await mixedVolume();
    const [a, b] = [v.path('staging-a'), v.path('staging-b')];
    const [rwTarget, roTarget] = [v.path('pod-rw'), v.path('pod-ro')];
    await v.stage('stage block at A', a, blockCap('MULTI_NODE_MULTI_WRITER'));
    await v.publish('read-write block publish via A', a, rwTarget, blockCap('SINGLE_NODE_MULTI_WRITER'));
    await v.stage('stage filesystem at B, raw publish in place', b, mountCap('ext4', 'SINGLE_NODE_MULTI_WRITER'));
    await v.unpublish('unpublish rw', rwTarget);
    await v.publish('read-only block publish via A', a, roTarget, blockCap('MULTI_NODE_READER_ONLY'), true);
    await v.stage('stage filesystem at B, read-only loop in place', b, mountCap('ext4', 'SINGLE_NODE_MULTI_WRITER'));
    const device = await v.device();
    await v.unpublish('unpublish ro', roTarget);
    await v.unstage('unstage B', b);
    await v.unstage('unstage A', a);
    expect(v.answers).toEqual([
      ['stage block at A', 'OK'],
      ['read-write block publish via A', 'OK'],
      ['stage filesystem at B, raw publish in place', 'FAILED_PRECONDITION'],
      ['unpublish rw', 'OK'],
      ['read-only block publish via A', 'OK'],
      ['stage filesystem at B, read-only loop in place', 'FAILED_PRECONDITION'],
      ['unpublish ro', 'OK'],
      ['unstage B', 'OK'],
      ['unstage A', 'OK'],
    ]);
    expect(v.details.get('stage filesystem at B, raw publish in place')).toContain(`published at ${rwTarget}`);
    await v.expectGone(device);
  });

  it('block at A, then block at B: both served (nothing mounted at either); unstage waits for the publish', async () => {
    const v = await mixedVolume();
    const [a, b] = [v.path('staging-a'), v.path('staging-b')];
    const target = v.path('pod');
    const cap = blockCap('SINGLE_NODE_WRITER');
    await v.stage('stage block at A', a, cap);
    await v.stage('stage block at B', b, cap);
    await v.publish('block publish via B', b, target, cap);
    const device = await v.device();
    await v.unstage('unstage A while published', a);
    await v.unpublish('unpublish', target);
    // Nothing marks a block staging: unstaging A detaches what B was staged as too; B's stage, asked again, heals it.
    await v.unstage('unstage A', a);
    await v.publish('block publish via B, detached', b, target, cap);
    await v.stage('stage block at B again', b, cap);
    await v.publish('block publish via B again', b, target, cap);
    await v.unpublish('unpublish again', target);
    await v.unstage('unstage B', b);
    expect(v.answers).toEqual([
      ['stage block at A', 'OK'],
      ['stage block at B', 'OK'],
      ['block publish via B', 'OK'],
      ['unstage A while published', 'FAILED_PRECONDITION'],
      ['unpublish', 'OK'],
      ['unstage A', 'OK'],
      ['block publish via B, detached', 'FAILED_PRECONDITION'],
      ['stage block at B again', 'OK'],
      ['block publish via B again', 'OK'],
      ['unpublish again', 'OK'],
      ['unstage B', 'OK'],
    ]);
    await v.expectGone(device);
  });
});
