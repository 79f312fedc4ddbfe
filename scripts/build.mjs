#!/usr/bin/env node
// Builds the project: TypeScript to dist/ (incremental), and the emulator's native sds_cli.
// Run by `npm run build`, `npm start`, `npm test` and `npm ci` (prepare), so dist/ is never stale.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });

run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json']);

// csi.proto parsed once, as JSON: loading it takes a quarter of the time of parsing the text at every start.
const { writeCsiProtoJson } = await import(join(root, 'dist/src/server/proto.js'));
writeCsiProtoJson();

// The driver as one bundle (dist/driver/driver.js, its lazily loaded rooms as chunks beside it), which
// dist/src/main.js runs: resolving, reading and compiling ~300 modules one by one was a third of its start-up
// CPU. Built from tsc's output, so the code is the type-checked code. Left in node_modules: the Kubernetes
// client (large, loaded only when configured) and protobufjs with proto-loader (proto.ts loads proto-loader's
// own protobufjs at run time; bundled, grpc-js's channelz would add a second, unused copy: 0.3 MB to compile).
// Not minified: stack traces in the logs stay readable, and minifying saved no measurable start-up time.
const driverDir = join(root, 'dist/driver');
rmSync(driverDir, { recursive: true, force: true });
const { build } = await import('rolldown');
await build({
  input: join(root, 'dist/src/driver.js'),
  platform: 'node',
  external: [/^@kubernetes\//, /^protobufjs(\/|$)/, /^@grpc\/proto-loader(\/|$)/],
  logLevel: 'warn',
  output: { dir: driverDir, format: 'esm', chunkFileNames: '[name]-[hash].js' },
});

// sds_cli is C, like the product's own CLI: a Node script would add ~80 ms of start-up to every attach.
const cliSource = join(root, 'emulator/cli/sds_cli.c');
const cliBinary = join(root, 'emulator/bin/sds_cli');
if (existsSync(cliSource)) {
  const stale = !existsSync(cliBinary) || statSync(cliBinary).mtimeMs < statSync(cliSource).mtimeMs;
  if (stale) {
    mkdirSync(dirname(cliBinary), { recursive: true });
    run(process.env.CC ?? 'cc', ['-O2', '-Wall', '-Wextra', '-Werror', '-std=c11', '-o', cliBinary, cliSource]);
  }
}
