// Logs of the real processes: one line per RPC with its fields, the request id reaching the emulator's log,
// and secrets redacted everywhere. Canary values go into every CSI secrets map, the socket-API token (right
// and wrong) and mount flags; the calls succeed and fail; then every log line of the driver processes and
// the emulator, and every error message returned over gRPC, is searched for the canaries.
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VolumeCapability } from '../src/generated/csi/v1/VolumeCapability.js';
import { projectRoot } from '../src/util/paths.js';
import { connectCsi, CsiCallError, type CsiClients } from './support/csi-client.js';
import { eventually, logLines, type LogLine } from './support/ops.js';
import { cleanEnv, startStack, type Stack } from './support/stack.js';

const MiB = 1024 * 1024;
const TOKEN = 'tok-CANARY-7f3a9c1d';
const WRONG_TOKEN = 'wrongtok-CANARY-2b8e44';
const SECRET = 'sec-CANARY-51b2e8';
const FLAG = 'flag-CANARY-c04d7e';
const CANARIES = [TOKEN, WRONG_TOKEN, SECRET, FLAG];
const secrets = { password: SECRET, token: SECRET, [`key-${SECRET}`]: SECRET };

const blockCap: VolumeCapability = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
const mountCap = (flags: string[]): VolumeCapability => ({
  mount: { fs_type: 'ext4', mount_flags: flags },
  access_mode: { mode: 'SINGLE_NODE_WRITER' },
});

let stack: Stack;
let nodeId: string;
/** the messages of every failed call in this file */
const errorMessages: string[] = [];

/** Runs a call that must fail with `code`, keeping its message for the canary search. */
async function mustFail(call: Promise<unknown>, code: string): Promise<void> {
  try {
    await call;
  } catch (err) {
    if (!(err instanceof CsiCallError)) throw err;
    errorMessages.push(err.details);
    expect(err.codeName, err.details).toBe(code);
    return;
  }
  throw new Error(`expected ${code}, the call succeeded`);
}

function rpcLines(log: string, method: string): LogLine[] {
  return logLines(log).filter((l) => l.msg === 'rpc' && l.method === method);
}

beforeAll(async () => {
  stack = await startStack({
    mode: 'all',
    token: TOKEN,
    pools: ['pool0:4G'],
    emulatorArgs: ['--log-level', 'debug'],
    driverArgs: ['--log-level=trace'],
  });
  nodeId = (await stack.csi.node.NodeGetInfo({})).node_id;
});
afterAll(async () => {
  await stack?.stop();
});

describe('one log line per RPC, and the request id on the back end', () => {
  it('logs method, volume id, duration, code and request id; the emulator logs the same request id', async () => {
    await stack.csi.controller.CreateVolume({
      name: 'pvc-logs-rid',
      volume_capabilities: [blockCap],
      capacity_range: { required_bytes: String(64 * MiB) },
    });
    // The driver writes its log asynchronously: the line may trail the answer a little.
    await eventually('the CreateVolume line', () => rpcLines(stack.driverLog(), 'CreateVolume').length > 0);
    const line = rpcLines(stack.driverLog(), 'CreateVolume').find((l) => l.volumeId === 'pvc-logs-rid');
    expect(line).toMatchObject({
      level: 30,
      method: 'CreateVolume',
      volumeId: 'pvc-logs-rid',
      code: 'OK',
      requestId: expect.stringMatching(/^[0-9a-f]{8}$/),
    });
    expect(line!.durationMs).toEqual(expect.any(Number));
    const requestId = line!.requestId as string;

    // The emulator wrote its line(s) for that request under the driver's id.
    await eventually('the emulator to log the request', () =>
      logLines(stack.emulatorLog()).some((l) => l.request_id === requestId && l.req === 'CREATE_VOLUME_REQ'),
    );
    const emulatorLines = logLines(stack.emulatorLog()).filter((l) => l.request_id === requestId);
    // The create itself, and the pool list unless the driver's short cache of it was warm.
    const requests = emulatorLines.map((l) => l.req);
    expect(requests).toContain('CREATE_VOLUME_REQ');
    expect(requests.filter((r) => r !== 'CREATE_VOLUME_REQ' && r !== 'QUERY_POOLS_CAPABILITY_REQ')).toEqual([]);
    // The driver's own back-end lines (debug) carry it too.
    expect(
      logLines(stack.driverLog()).some(
        (l) => l.room === 'sds' && l.requestId === requestId && l.request === 'CREATE_VOLUME_REQ',
      ),
    ).toBe(true);

    // A failure is a warning with the code and the message.
    await mustFail(stack.csi.controller.DeleteVolume({ volume_id: '' }), 'INVALID_ARGUMENT');
    await eventually('the DeleteVolume line', () => rpcLines(stack.driverLog(), 'DeleteVolume').length > 0);
    expect(rpcLines(stack.driverLog(), 'DeleteVolume').at(-1)).toMatchObject({
      level: 40,
      code: 'INVALID_ARGUMENT',
      error: expect.stringContaining('volume_id'),
    });
  });

  it('the node service puts the request id on the connector lines (sds_cli itself takes none)', async () => {
    await stack.csi.node.NodeUnstageVolume({
      volume_id: 'pvc-logs-rid',
      staging_target_path: join(stack.dir, 'unstaged'),
    });
    await eventually('the NodeUnstageVolume line', () => rpcLines(stack.driverLog(), 'NodeUnstageVolume').length > 0);
    const requestId = rpcLines(stack.driverLog(), 'NodeUnstageVolume').at(-1)!.requestId;
    const cli = logLines(stack.driverLog()).filter(
      (l) => l.room === 'connector' && l.msg === 'sds_cli replied' && l.requestId === requestId,
    );
    expect(cli.map((l) => l.method)).toEqual(['querydev', 'detach']);
  });
});

describe('secrets never reach a log line or an error message', () => {
  it('CSI secrets, mount flags and the socket-API token, on success and failure paths', async () => {
    const ctl = stack.csi.controller;
    const node = stack.csi.node;
    const create = (name: string, cap: VolumeCapability) =>
      ctl.CreateVolume({
        name,
        volume_capabilities: [cap],
        capacity_range: { required_bytes: String(320 * MiB) },
        secrets,
      });

    // Controller: each call with secrets, succeeding and failing.
    const a = (await create('pvc-secret-a', mountCap([]))).volume!.volume_id;
    const b = (await create('pvc-secret-b', mountCap([]))).volume!.volume_id;
    await mustFail(
      ctl.CreateVolume({
        name: 'pvc-secret-bad',
        volume_capabilities: [blockCap],
        parameters: { thin: 'sideways' },
        secrets,
      }),
      'INVALID_ARGUMENT',
    );
    await mustFail(
      ctl.CreateVolume({
        name: 'pvc-secret-a',
        volume_capabilities: [blockCap],
        capacity_range: { required_bytes: String(640 * MiB) },
        secrets,
      }),
      'ALREADY_EXISTS',
    );
    await ctl.CreateSnapshot({ name: 'snap-secret', source_volume_id: a, secrets });
    await mustFail(
      ctl.CreateSnapshot({ name: 'snap-secret-missing', source_volume_id: 'pvc-no-such-volume', secrets }),
      'NOT_FOUND',
    );
    const publish = (id: string) =>
      ctl.ControllerPublishVolume({ volume_id: id, node_id: nodeId, volume_capability: mountCap([]), secrets });
    const { publish_context: pcA } = await publish(a);
    const { publish_context: pcB } = await publish(b);
    await mustFail(
      ctl.ControllerPublishVolume({ volume_id: a, node_id: 'host-nowhere', volume_capability: mountCap([]), secrets }),
      'NOT_FOUND',
    );
    await ctl.ControllerExpandVolume({
      volume_id: a,
      capacity_range: { required_bytes: String(384 * MiB) },
      volume_capability: mountCap([]),
      secrets,
    });
    await mustFail(
      ctl.ControllerExpandVolume({
        volume_id: a,
        capacity_range: { required_bytes: String(64 * MiB), limit_bytes: String(64 * MiB) },
        secrets,
      }),
      'OUT_OF_RANGE',
    );

    // Node: a valid flag carrying a canary (comment= is for mount(8) only), one the filesystem refuses,
    // one the driver refuses before mount(8).
    const staging = (id: string) => join(stack.dir, 'kubelet', id, 'globalmount');
    const target = join(stack.dir, 'kubelet', a, 'pod');
    await mkdir(join(stack.dir, 'kubelet', a), { recursive: true });
    await mkdir(join(stack.dir, 'kubelet', b), { recursive: true });
    const goodFlags = [`comment=${FLAG}`];
    await node.NodeStageVolume({
      volume_id: a,
      staging_target_path: staging(a),
      volume_capability: mountCap(goodFlags),
      publish_context: pcA,
      secrets,
    });
    await node.NodePublishVolume({
      volume_id: a,
      staging_target_path: staging(a),
      target_path: target,
      volume_capability: mountCap(goodFlags),
      publish_context: pcA,
      secrets,
    });
    await mustFail(
      node.NodePublishVolume({
        volume_id: b,
        staging_target_path: staging(b),
        target_path: join(stack.dir, 'kubelet', b, 'pod'),
        volume_capability: mountCap(goodFlags),
        publish_context: pcB,
        secrets,
      }),
      'FAILED_PRECONDITION',
    );
    await mustFail(
      node.NodeStageVolume({
        volume_id: b,
        staging_target_path: staging(b),
        volume_capability: mountCap([`usrjquota=${FLAG}`]),
        publish_context: pcB,
        secrets,
      }),
      'INVALID_ARGUMENT',
    );
    await mustFail(
      node.NodeStageVolume({
        volume_id: b,
        staging_target_path: staging(b),
        volume_capability: mountCap([`noatime,${FLAG}`]),
        publish_context: pcB,
        secrets,
      }),
      'INVALID_ARGUMENT',
    );

    await mustFail(ctl.DeleteVolume({ volume_id: a, secrets }), 'FAILED_PRECONDITION'); // still attached here

    // Tear down, with secrets where CSI has them.
    await node.NodeUnpublishVolume({ volume_id: a, target_path: target });
    for (const id of [a, b]) {
      await node.NodeUnstageVolume({ volume_id: id, staging_target_path: staging(id) });
      await ctl.ControllerUnpublishVolume({ volume_id: id, node_id: nodeId, secrets });
    }
    await ctl.DeleteSnapshot({ snapshot_id: 'snap-secret', secrets });
    for (const id of [a, b]) await ctl.DeleteVolume({ volume_id: id, secrets });

    // A second driver with a wrong token: refused by the back end, and neither its log nor its errors show it.
    const wrong = await startWrongTokenDriver();
    try {
      await mustFail(wrong.csi.controller.ListVolumes({}), 'UNAUTHENTICATED');
      await mustFail(
        wrong.csi.controller.CreateVolume({ name: 'pvc-wrong-token', volume_capabilities: [blockCap], secrets }),
        'UNAUTHENTICATED',
      );
      expect((await wrong.csi.identity.Probe({})).ready?.value).toBe(false);
    } finally {
      await wrong.stop();
    }

    // The search is over real material: the calls above were logged, with their errors.
    await eventually(
      'the last DeleteVolume line',
      () => rpcLines(stack.driverLog(), 'DeleteVolume').filter((l) => l.code === 'OK').length >= 2,
    );
    const driverLog = stack.driverLog();
    for (const method of [
      'CreateVolume',
      'CreateSnapshot',
      'ControllerPublishVolume',
      'ControllerExpandVolume',
      'NodeStageVolume',
      'NodePublishVolume',
      'DeleteVolume',
    ]) {
      expect(
        rpcLines(driverLog, method).some((l) => l.code !== 'OK' && typeof l.error === 'string'),
        method,
      ).toBe(true);
    }
    expect(logLines(stack.emulatorLog()).some((l) => l.msg === 'request' && l.ret_desc !== undefined)).toBe(true);
    expect(wrong.log()).toMatch(/UNAUTHENTICATED/);
    expect(stack.emulatorLog()).toMatch(/AUTH_FAILED|-900004/);
    expect(errorMessages.length).toBeGreaterThanOrEqual(10);

    const places: Array<[string, string]> = [
      ['driver log', driverLog],
      ['wrong-token driver log', wrong.log()],
      ['emulator log', stack.emulatorLog()],
      ['gRPC error messages', errorMessages.join('\n')],
    ];
    for (const [where, text] of places) {
      for (const canary of CANARIES) expect(text.includes(canary), `${canary} in the ${where}`).toBe(false);
      // Nor a part of one (a truncated or re-encoded value).
      expect(/CANARY/.test(text), `a canary fragment in the ${where}`).toBe(false);
    }
  });
});

/** A controller-mode driver process with a wrong token, against the same emulator. */
async function startWrongTokenDriver(): Promise<{ csi: CsiClients; log: () => string; stop: () => Promise<void> }> {
  const socket = join(stack.dir, 'wrong-token.sock');
  const child = spawn(
    process.execPath,
    [
      join(projectRoot(), 'dist', 'src', 'main.js'),
      '--mode=controller',
      '--emulator=false',
      `--endpoint=unix://${socket}`,
      '--metrics-address=',
      `--vbs-url=unix://${stack.vbsSocket}`,
      '--log-level=trace',
    ],
    { env: cleanEnv({ SDS_VBS_TOKEN: WRONG_TOKEN }), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const csi = connectCsi(socket);
  await eventually('the wrong-token driver to listen', async () => {
    if (child.exitCode !== null) throw new Error(`it exited (${child.exitCode}):\n${output}`);
    return csi.identity.GetPluginInfo({}, { timeoutMs: 2_000 }).then(
      () => true,
      () => false,
    );
  });
  return {
    csi,
    log: () => output,
    stop: async () => {
      csi.close();
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    },
  };
}
