// Loads proto/csi.proto once and builds the gRPC service definitions from it. Messages behave as with
// @grpc/proto-loader and these options (keepCase, int64 as string, enums as strings, defaults and oneof
// names filled in), which the generated types in src/generated describe. The parsing is protobufjs's, the
// one under proto-loader; what we skip is proto-loader's reflection descriptor of every message type (for
// gRPC server reflection, which we do not serve): it was half of the driver's start-up CPU (docs/BENCHMARKS.md).
import * as grpc from '@grpc/grpc-js';
import type * as ProtoLoader from '@grpc/proto-loader';
import { accessSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join } from 'node:path';
import type * as Protobuf from 'protobufjs';
import type { ProtoGrpcType } from '../generated/csi.js';
import { projectRoot } from '../util/paths.js';

const protoDir = () => join(projectRoot(), 'proto');

export const PROTO_LOADER_OPTIONS: ProtoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** The services of csi.proto's package csi.v1. */
export const CSI_SERVICES = ['Identity', 'Controller', 'Node', 'GroupController', 'SnapshotMetadata'] as const;

let cached: ProtoGrpcType | undefined;

/** protobufjs as @grpc/proto-loader (our dependency) resolves it. */
function protobufjs(): { protobuf: typeof Protobuf; root: string } {
  const fromLoader = createRequire(createRequire(import.meta.url).resolve('@grpc/proto-loader'));
  const path = fromLoader.resolve('protobufjs');
  return { protobuf: fromLoader(path) as typeof Protobuf, root: dirname(fromLoader.resolve('protobufjs/package.json')) };
}

/** Parses csi.proto (imports from proto/ and protobufjs's bundled google/protobuf files), resolved. */
export function parseCsiProto(): Protobuf.Root {
  const { protobuf, root: protobufRoot } = protobufjs();
  const includeDirs = [protoDir(), protobufRoot];
  const root = new protobuf.Root();
  const fallback = root.resolvePath.bind(root);
  root.resolvePath = (origin, target) => {
    if (isAbsolute(target)) return target;
    for (const dir of includeDirs) {
      try {
        accessSync(join(dir, target));
        return join(dir, target);
      } catch {
        // not in this directory
      }
    }
    return fallback(origin, target);
  };
  root.loadSync('csi.proto', { keepCase: true });
  root.resolveAll();
  return root;
}

/** The method definitions of one service, serializing as proto-loader's would. */
export function serviceDefinition(root: Protobuf.Root, fullName: string): grpc.ServiceDefinition {
  const service = root.lookupService(fullName);
  const definition: Record<string, grpc.MethodDefinition<object, object>> = {};
  for (const method of service.methodsArray) {
    const request = method.resolvedRequestType!;
    const response = method.resolvedResponseType!;
    definition[method.name] = {
      path: `/${fullName}/${method.name}`,
      requestStream: !!method.requestStream,
      responseStream: !!method.responseStream,
      requestSerialize: serializer(request),
      requestDeserialize: deserializer(request),
      responseSerialize: serializer(response),
      responseDeserialize: deserializer(response),
      // CSI method names are PascalCase words: camel case is the first letter lowered.
      originalName: method.name[0]!.toLowerCase() + method.name.slice(1),
    };
  }
  return definition;
}

function serializer(type: Protobuf.Type): grpc.serialize<object> {
  return (value) => {
    if (Array.isArray(value)) throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
    return type.encode(type.fromObject(value)).finish() as Buffer; // a Buffer under Node (protobufjs's BufferWriter)
  };
}

function deserializer(type: Protobuf.Type): grpc.deserialize<object> {
  return (bytes) => type.toObject(type.decode(bytes), PROTO_LOADER_OPTIONS as Protobuf.IConversionOptions);
}

export function loadCsiProto(): ProtoGrpcType {
  if (cached) return cached;
  const root = parseCsiProto();
  const packageDefinition: Record<string, grpc.ServiceDefinition> = {};
  for (const name of CSI_SERVICES) packageDefinition[`csi.v1.${name}`] = serviceDefinition(root, `csi.v1.${name}`);
  cached = grpc.loadPackageDefinition(packageDefinition as unknown as ProtoLoader.PackageDefinition) as unknown as ProtoGrpcType;
  return cached;
}
