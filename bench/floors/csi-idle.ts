// The least a CSI node plugin written in Node holds when idle: a grpc-js server on a unix socket with the CSI
// proto loaded the standard way (proto-loader from the same parsed JSON the driver uses) and an Identity
// service answering Probe, nothing else: no logger, no back-end client, no node room. The bench runs it with
// the node plugin's flags and reads its RSS when it reads the plugin's (floor/node-idle-least).
// Usage: node csi-idle.js <socket path>
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../../src/util/paths.js';

const require = createRequire(import.meta.url);
const grpc = require('@grpc/grpc-js') as typeof import('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader') as typeof import('@grpc/proto-loader');

const socket = process.argv[2];
if (!socket) throw new Error('usage: csi-idle <socket path>');
const json = JSON.parse(readFileSync(join(projectRoot(), 'dist', 'csi-proto.json'), 'utf8')) as object;
const definition = protoLoader.fromJSON(json, { keepCase: true, longs: String, enums: String, defaults: true });
const identity = definition['csi.v1.Identity'] as import('@grpc/grpc-js').ServiceDefinition;
const server = new grpc.Server();
server.addService(identity, {
  GetPluginInfo: (_call: unknown, done: (err: null, reply: object) => void) =>
    done(null, { name: 'csi-idle.floor', vendor_version: '0' }),
  GetPluginCapabilities: (_call: unknown, done: (err: null, reply: object) => void) => done(null, { capabilities: [] }),
  Probe: (_call: unknown, done: (err: null, reply: object) => void) => done(null, { ready: { value: true } }),
});
server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  process.stdout.write('ready\n');
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
