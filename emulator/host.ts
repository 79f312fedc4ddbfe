#!/usr/bin/env node
// sdshypervisor-emulator-host: the front end of one data host of a multi-host emulator (emulator/hosts.ts).
// It relays the host's own addresses — its socket API on TCP (e.g. inside the host's network namespace)
// and on a unix socket, and its KV data plane — to the host's sockets in the daemon, and holds the
// daemon's presence socket open: killing this process (kill -9) is the host dying; starting it again is the
// host coming back. It keeps no state: every request is served by the daemon, as that host.
//   node dist/emulator/host.js --data-dir D --host-id H [--listen-host A] [--listen-port P]
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { hostDir, hostSockets } from './hosts.js';

function relay(target: string): net.Server {
  // Half-open both ways: sds_cli and the socket API end a request by shutting down their side, and a reply
  // ends when the daemon closes; end() (never destroy) lets what is buffered reach the other side first.
  return net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ path: target, allowHalfOpen: true });
    const fail = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', fail).on('close', () => upstream.end());
    upstream.on('error', fail).on('close', () => client.end());
    client.pipe(upstream);
    upstream.pipe(client);
  });
}

function listen(server: net.Server, ...args: [string] | [number, string]): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if (args.length === 1) server.listen(args[0], done);
    else server.listen(args[0], args[1], done);
  });
}

function frontInfoFile(dataDir: string, hostId: string): string {
  return join(dataDir, `emulator-${hostId}.json`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'data-dir': { type: 'string' },
      'host-id': { type: 'string' },
      'listen-host': { type: 'string', default: '127.0.0.1' },
      'listen-port': { type: 'string', default: '-1' },
    },
  });
  const dataDir = values['data-dir'];
  const hostId = values['host-id'];
  const port = Number(values['listen-port']);
  if (!dataDir || !hostId || !Number.isInteger(port) || port < -1 || port > 65535) {
    process.stderr.write('usage: host.js --data-dir DIR --host-id ID [--listen-host ADDR] [--listen-port -1..65535]\n');
    process.exit(2);
  }
  const inner = hostSockets(dataDir, hostId);
  const dir = hostDir(dataDir, hostId);
  const controlSocket = join(dir, 'front-vbs.sock');
  const kvSocket = join(dir, 'front-kv.sock');
  // Presence first: without the daemon there is no host to be.
  const presence = net.connect(inner.presenceSocket);
  await new Promise<void>((resolve, reject) => presence.once('connect', resolve).once('error', reject));
  const infoPath = frontInfoFile(dataDir, hostId);
  presence.on('close', () => {
    rmSync(infoPath, { force: true });
    process.exit(1);
  });
  presence.on('error', () => undefined);
  const previous = process.umask(0o177);
  for (const p of [controlSocket, kvSocket]) rmSync(p, { force: true });
  await listen(relay(inner.controlSocket), controlSocket);
  await listen(relay(inner.kvSocket), kvSocket);
  process.umask(previous);
  let tcpPort = -1;
  if (port >= 0) {
    const tcp = relay(inner.controlSocket);
    await listen(tcp, port, values['listen-host']);
    tcpPort = (tcp.address() as net.AddressInfo).port;
  }
  const info = { pid: process.pid, hostId, tcpPort, listenHost: values['listen-host'], controlSocket, kvSocket };
  writeFileSync(`${infoPath}.tmp`, JSON.stringify(info) + '\n', { mode: 0o600 });
  renameSync(`${infoPath}.tmp`, infoPath);
  const stop = (): void => {
    rmSync(infoPath, { force: true });
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main().catch((err: unknown) => {
  process.stderr.write(`sdshypervisor-emulator-host: ${(err as Error).message}\n`);
  process.exit(1);
});
