#!/usr/bin/env node
// Builds the project: TypeScript to dist/ (incremental), and the emulator's native sds_cli.
// Run by `npm run build`, `npm start`, `npm test` and `npm ci` (prepare), so dist/ is never stale.
import { execFileSync } from 'node:child_process';
import { existsSync, statSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit' });

run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json']);

// csi.proto parsed once, as JSON: loading it takes a quarter of the time of parsing the text at every start.
const { writeCsiProtoJson } = await import(join(root, 'dist/src/server/proto.js'));
writeCsiProtoJson();

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
