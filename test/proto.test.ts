// src/server/proto.ts builds the gRPC service definitions straight from protobufjs; they must behave exactly
// like @grpc/proto-loader's with the same options, which the generated types (and every peer) rely on —
// whether the proto was parsed or loaded from the JSON the build writes.
import * as protoLoader from '@grpc/proto-loader';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type * as grpc from '@grpc/grpc-js';
import {
  CSI_SERVICES,
  csiProtoJson,
  csiRootFromJson,
  loadCsiProto,
  loadCsiRoot,
  parseCsiProto,
  PROTO_LOADER_OPTIONS,
  serviceDefinition,
} from '../src/server/proto.js';
import { projectRoot } from '../src/util/paths.js';

const require = createRequire(import.meta.url);
const reference = protoLoader.loadSync(join(projectRoot(), 'proto', 'csi.proto'), {
  ...PROTO_LOADER_OPTIONS,
  includeDirs: [join(projectRoot(), 'proto'), dirname(require.resolve('protobufjs/package.json'))],
});
// Both ways the driver gets the proto: parsing csi.proto, and the JSON the build writes.
const roots = { parsed: parseCsiProto(), 'build JSON': csiRootFromJson(JSON.parse(JSON.stringify(csiProtoJson()))) };

const samples: Record<string, object[]> = {
  'csi.v1.CreateVolumeRequest': [
    {},
    {
      name: 'pvc-1',
      capacity_range: { required_bytes: '1073741824', limit_bytes: '9223372036854775807' },
      volume_capabilities: [
        {
          mount: { fs_type: 'xfs', mount_flags: ['noatime'], volume_mount_group: '' },
          access_mode: { mode: 'SINGLE_NODE_MULTI_WRITER' },
        },
        { block: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } },
      ],
      parameters: { pool: 'pool0', thin: 'true' },
      secrets: { token: 's3cret' },
      volume_content_source: { snapshot: { snapshot_id: 'snap-1' } },
      accessibility_requirements: {
        requisite: [{ segments: { 'topology.sdshypervisor.io/host': 'h1' } }],
        preferred: [],
      },
      mutable_parameters: { maxIOPS: '100' },
    },
  ],
  'csi.v1.CreateVolumeResponse': [
    {
      volume: {
        volume_id: 'v',
        capacity_bytes: '42',
        volume_context: { a: 'b' },
        content_source: { volume: { volume_id: 'src' } },
        accessible_topology: [{ segments: { k: 'v' } }],
      },
    },
  ],
  'csi.v1.CreateSnapshotResponse': [
    {
      snapshot: {
        snapshot_id: 's',
        source_volume_id: 'v',
        size_bytes: '1',
        creation_time: { seconds: '1700000000', nanos: 5 },
        ready_to_use: true,
        group_snapshot_id: '',
      },
    },
  ],
  'csi.v1.ProbeResponse': [{}, { ready: { value: true } }, { ready: { value: false } }],
  'csi.v1.NodeGetVolumeStatsResponse': [
    {
      usage: [
        { unit: 'BYTES', total: '10', available: '4', used: '6' },
        { unit: 'INODES', total: '3', available: '1', used: '2' },
      ],
      volume_condition: { abnormal: true, message: 'gone' },
    },
  ],
  'csi.v1.ListVolumesResponse': [
    {
      entries: [
        {
          volume: { volume_id: 'a' },
          status: { published_node_ids: ['n1'], volume_condition: { abnormal: false, message: 'ok' } },
        },
      ],
      next_token: 't',
    },
  ],
  'csi.v1.GetMetadataAllocatedResponse': [
    {
      block_metadata_type: 'FIXED_LENGTH',
      volume_capacity_bytes: '100',
      block_metadata: [{ byte_offset: '0', size_bytes: '4096' }],
    },
  ],
};

function methodsOf(definition: grpc.ServiceDefinition) {
  return Object.fromEntries(
    Object.entries(definition).map(([name, m]) => [
      name,
      { path: m.path, requestStream: m.requestStream, responseStream: m.responseStream, originalName: m.originalName },
    ]),
  );
}

describe.each(Object.entries(roots))('CSI service definitions from the %s', (_from, root) => {
  for (const service of CSI_SERVICES) {
    it(`${service}: the same methods, paths, streaming and names as proto-loader`, () => {
      const ours = serviceDefinition(root, `csi.v1.${service}`);
      const theirs = reference[`csi.v1.${service}`] as grpc.ServiceDefinition;
      expect(methodsOf(ours)).toEqual(methodsOf(theirs));
      expect(Object.keys(ours).length).toBeGreaterThan(0);
    });
  }

  it('every request and response decodes an empty message to the same defaults', () => {
    for (const service of CSI_SERVICES) {
      const ours = serviceDefinition(root, `csi.v1.${service}`);
      const theirs = reference[`csi.v1.${service}`] as grpc.ServiceDefinition;
      for (const [name, method] of Object.entries(ours)) {
        const other = theirs[name]!;
        expect(method.requestDeserialize(Buffer.alloc(0)), `${service}.${name} request`).toEqual(
          other.requestDeserialize(Buffer.alloc(0)),
        );
        expect(method.responseDeserialize(Buffer.alloc(0)), `${service}.${name} response`).toEqual(
          other.responseDeserialize(Buffer.alloc(0)),
        );
      }
    }
  });

  it('messages encode to the same bytes and decode to the same objects (int64 as strings, enums as names, oneofs, maps, wrappers)', () => {
    let checked = 0;
    for (const [typeName, messages] of Object.entries(samples)) {
      const oursType = root.lookupType(typeName);
      const theirs = reference[typeName] as protoLoader.MessageTypeDefinition<object, object>;
      for (const message of messages) {
        const bytes = Buffer.from(oursType.encode(oursType.fromObject(message)).finish());
        expect(bytes.equals(Buffer.from(theirs.serialize(message))), typeName).toBe(true);
        const ourObject = oursType.toObject(oursType.decode(bytes), PROTO_LOADER_OPTIONS as object);
        expect(ourObject, typeName).toEqual(theirs.deserialize(bytes));
        checked++;
      }
    }
    expect(checked).toBe(Object.values(samples).flat().length);
  });

  it('the method serializers are the message codecs, and loadCsiProto gives clients for every service', () => {
    const controller = serviceDefinition(root, 'csi.v1.Controller');
    const theirs = reference['csi.v1.Controller'] as grpc.ServiceDefinition;
    const request = samples['csi.v1.CreateVolumeRequest']![1]!;
    const ours = controller.CreateVolume!.requestSerialize(request);
    expect(Buffer.isBuffer(ours)).toBe(true);
    expect(ours.equals(theirs.CreateVolume!.requestSerialize(request))).toBe(true);
    expect(controller.CreateVolume!.requestDeserialize(ours)).toEqual(theirs.CreateVolume!.requestDeserialize(ours));
    const response = samples['csi.v1.CreateVolumeResponse']![0]!;
    expect(
      controller.CreateVolume!.responseSerialize(response).equals(theirs.CreateVolume!.responseSerialize(response)),
    ).toBe(true);
    expect(() => controller.CreateVolume!.requestSerialize([] as unknown as object)).toThrow(/expected object/);

    expect(loadCsiRoot().lookupService('csi.v1.Node').methodsArray.length).toBe(
      Object.keys(reference['csi.v1.Node'] as object).length,
    );
    const csi = loadCsiProto().csi.v1;
    for (const service of CSI_SERVICES) {
      expect(Object.keys(csi[service].service)).toEqual(Object.keys(reference[`csi.v1.${service}`] as object));
    }
    expect(loadCsiProto()).toBe(loadCsiProto());
  });
});

describe('the proto JSON the build writes', () => {
  it('keeps every message, enum and service of csi.v1, drops the custom-option extensions and descriptor.proto', () => {
    const json = csiProtoJson() as {
      nested: { google: { nested: { protobuf: { nested: Record<string, unknown> } } } };
    };
    const google = Object.keys(json.nested.google.nested.protobuf.nested);
    expect(google).not.toContain('FieldOptions');
    expect(google).toEqual(expect.arrayContaining(['Timestamp', 'BoolValue', 'Int64Value']));
    const members = (r: typeof roots.parsed) =>
      Object.keys((r.lookup('csi.v1')!.toJSON() as { nested: object }).nested).sort();
    const extensions = [
      'alpha_enum',
      'alpha_enum_value',
      'alpha_field',
      'alpha_message',
      'alpha_method',
      'alpha_service',
      'csi_secret',
    ];
    expect(members(roots['build JSON'])).toEqual(members(roots.parsed).filter((m) => !extensions.includes(m)));
    expect(members(roots['build JSON']).length).toBeGreaterThan(80);
  });
});
