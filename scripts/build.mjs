#!/usr/bin/env node
// Builds the project: TypeScript to dist/ (incremental), and the emulator's native sds_cli.
// Run by `npm run build`, `npm start`, `npm test` and `npm ci` (prepare), so dist/ is never stale.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });

run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json']);

// csi.proto parsed once, as JSON: loading it takes a quarter of the time of parsing the text at every start.
const { writeCsiProtoJson } = await import(join(root, 'dist/src/server/proto.js'));
writeCsiProtoJson();

// The driver as one bundle (dist/driver/driver.cjs, its lazily loaded rooms as chunks beside it), which
// dist/src/main.js runs: resolving, reading and compiling ~300 modules one by one was a third of its start-up
// CPU. Built from tsc's output, so the code is the type-checked code. Left in node_modules: the Kubernetes
// client (large, loaded only when configured) and protobufjs with proto-loader (proto.ts loads proto-loader's
// own protobufjs at run time; bundled, grpc-js's channelz would add a second, unused copy: 0.3 MB to compile).
// Not minified: stack traces in the logs stay readable, and minifying saved no measurable start-up time.
// CommonJS, not ESM: a CommonJS file can be compiled with a V8 code cache (src/util/code-cache.ts); an ES
// module cannot, on Node 20.
const driverDir = join(root, 'dist/driver');
rmSync(driverDir, { recursive: true, force: true });
const { build } = await import('rolldown');
await build({
  input: join(root, 'dist/src/driver.js'),
  platform: 'node',
  external: [/^@kubernetes\//, /^protobufjs(\/|$)/, /^@grpc\/proto-loader(\/|$)/],
  logLevel: 'warn',
  output: { dir: driverDir, format: 'cjs', entryFileNames: '[name].cjs', chunkFileNames: '[name]-[hash].cjs' },
});
const { DEPLOYED_NODE_ARGS } = await import(join(root, 'dist/src/config/deployed-node-args.js'));
trainCodeCache();

/**
 * The bundle's code cache (dist/driver/code-cache/<node>-<arch>/<flags>/): one start of the driver in all mode,
 * which loads every file a controller or a node plugin loads, under the same flags until it serves
 * (src/util/code-cache.ts); with the deployed node flags (V8 rejects a cache made under others) and nothing of
 * this shell's environment. It needs no VBS (the level is forced) and no privilege; it writes the cache once
 * its CSI socket serves, then stops. A start without the cache only compiles more: a failure here is
 * reported, not fatal.
 */
function trainCodeCache() {
  const scratch = mkdtempSync(join(tmpdir(), 'sdshypervisor-csi-training-'));
  try {
    const result = spawnSync(
      process.execPath,
      [
        ...DEPLOYED_NODE_ARGS,
        join(root, 'dist/src/main.js'),
        '--mode=all',
        '--emulator=false',
        '--vbs-protocol=extended',
        `--vbs-url=unix://${join(scratch, 'no-vbs.sock')}`,
        `--endpoint=unix://${join(scratch, 'csi.sock')}`,
        '--metrics-address=127.0.0.1:0',
        '--node-name=training',
        '--host-id=training',
        '--log-level=warn',
      ],
      {
        cwd: scratch,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: scratch, SDSHYPERVISOR_CSI_CODE_CACHE: 'write' },
        stdio: ['ignore', 'pipe', 'pipe'],
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    // The start exits 0 only after writing the cache (a failed write fails the start).
    if (result.status !== 0) {
      process.stderr.write(
        `build: the driver's code cache was not written (exit ${result.status ?? result.signal ?? result.error}); ` +
          `the driver starts without it.\n${result.stdout}${result.stderr}`,
      );
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

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
