// Loads proto/csi.proto once and builds the gRPC service definitions from it. Messages behave as with
// @grpc/proto-loader and these options (keepCase, int64 as string, enums as strings, defaults and oneof
// names filled in), which the generated types in src/generated describe. The parsing is protobufjs's, the
// one under proto-loader; what we skip is proto-loader's reflection descriptor of every message type (for
// gRPC server reflection, which we do not serve): it was half of the driver's start-up CPU. The build also
// writes the parsed proto as JSON (dist/csi-proto.json), which loads in a quarter of the time of parsing
// the text; without it (or when it is older than the .proto) the .proto is parsed. docs/BENCHMARKS.md.
import * as grpc from '@grpc/grpc-js';
import type * as ProtoLoader from '@grpc/proto-loader';
import { accessSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join } from 'node:path';
import type * as Protobuf from 'protobufjs';
import type { ProtoGrpcType } from '../generated/csi.js';
import { projectRoot } from '../util/paths.js';

const protoDir = () => join(projectRoot(), 'proto');
/** Written by scripts/build.mjs (writeCsiProtoJson). */
export const csiProtoJsonPath = () => join(projectRoot(), 'dist', 'csi-proto.json');

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
function protobufjs(): { protobuf: typeof Protobuf; root: string; require: NodeJS.Require } {
  const fromLoader = createRequire(createRequire(import.meta.url).resolve('@grpc/proto-loader'));
  const path = fromLoader.resolve('protobufjs');
  return {
    protobuf: fromLoader(path) as typeof Protobuf,
    root: dirname(fromLoader.resolve('protobufjs/package.json')),
    require: fromLoader,
  };
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

/**
 * The parsed proto as protobufjs JSON, without what only csi.proto's custom options need: the extensions
 * of google.protobuf.*Options (csi_secret, alpha_*) and descriptor.proto's ~30 types. Messages do not use
 * them; the option values stay on the fields as names.
 */
export function csiProtoJson(): Protobuf.INamespace {
  const json = parseCsiProto().toJSON() as {
    nested: Record<string, Protobuf.INamespace & { nested: Record<string, unknown> }>;
  };
  const v1 = (json.nested.csi!.nested as Record<string, { nested: Record<string, { extend?: string }> }>).v1!.nested;
  for (const [name, member] of Object.entries(v1)) if (member.extend) delete v1[name];
  const google = (json.nested.google!.nested as Record<string, { nested: Record<string, unknown> }>).protobuf!.nested;
  const descriptorTypes = (
    protobufjs().require('protobufjs/google/protobuf/descriptor.json') as {
      nested: { google: { nested: { protobuf: { nested: object } } } };
    }
  ).nested.google.nested.protobuf.nested;
  for (const name of Object.keys(descriptorTypes)) delete google[name];
  return json;
}

export function writeCsiProtoJson(path: string = csiProtoJsonPath()): void {
  writeFileSync(path, JSON.stringify(csiProtoJson()));
}

/** The proto from the build's JSON when it is there and not older than csi.proto, else parsed. */
export function loadCsiRoot(): Protobuf.Root {
  const jsonPath = csiProtoJsonPath();
  let json: string | undefined;
  try {
    if (statSync(jsonPath).mtimeMs >= statSync(join(protoDir(), 'csi.proto')).mtimeMs)
      json = readFileSync(jsonPath, 'utf8');
  } catch {
    // not built: parse
  }
  return json === undefined ? parseCsiProto() : csiRootFromJson(JSON.parse(json) as Protobuf.INamespace);
}

export function csiRootFromJson(json: Protobuf.INamespace): Protobuf.Root {
  const root = protobufjs().protobuf.Root.fromJSON(json);
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
    if (Array.isArray(value))
      throw new Error(`Failed to serialize message: expected object with ${type.name} structure, got array instead`);
    return type.encode(type.fromObject(value)).finish() as Buffer; // a Buffer under Node (protobufjs's BufferWriter)
  };
}

function deserializer(type: Protobuf.Type): grpc.deserialize<object> {
  return (bytes) => type.toObject(type.decode(bytes), PROTO_LOADER_OPTIONS as Protobuf.IConversionOptions);
}

export function loadCsiProto(): ProtoGrpcType {
  if (cached) return cached;
  const root = loadCsiRoot();
  const packageDefinition: Record<string, grpc.ServiceDefinition> = {};
  for (const name of CSI_SERVICES) packageDefinition[`csi.v1.${name}`] = serviceDefinition(root, `csi.v1.${name}`);
  cached = grpc.loadPackageDefinition(
    packageDefinition as unknown as ProtoLoader.PackageDefinition,
  ) as unknown as ProtoGrpcType;
  return cached;
}
