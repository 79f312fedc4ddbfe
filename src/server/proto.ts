// Loads proto/csi.proto once. Options match the generated types in src/generated (keepCase, int64 as
// string, enums as strings, defaults and oneof names filled in).
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ProtoGrpcType } from '../generated/csi.js';
import { projectRoot } from '../util/paths.js';

const protoDir = () => join(projectRoot(), 'proto');

export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

let cached: ProtoGrpcType | undefined;

export function loadCsiProto(): ProtoGrpcType {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const protobufRoot = dirname(require.resolve('protobufjs/package.json'));
  const definition = protoLoader.loadSync(join(protoDir(), 'csi.proto'), {
    ...PROTO_LOADER_OPTIONS,
    includeDirs: [protoDir(), protobufRoot],
  });
  cached = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
  return cached;
}
