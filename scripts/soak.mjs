#!/usr/bin/env node
// npm run test:soak — the reliability tests with heavy counts (docs/RELIABILITY.md). Every count comes from
// the environment, so one variant can be raised or replayed with its seed: a variable already set wins over
// the soak default below. Prints the figures of the run at the end.
import { execFileSync, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const SOAK_DEFAULTS = {
  LOAD_CALLS: '10000', // concurrent CreateVolume, then DeleteVolume
  LOAD_NAMES: '2000',
  FAULT_ROUNDS: '200', // kill -9 of the emulator during controller calls
  NODE_KILL_ROUNDS: '45', // kill -9 of the node plugin around stage/publish
  BADINPUT_RUNS: '400', // fast-check runs per CSI request type
  WIRE_RUNS: '1000', // fast-check runs per wire-format property
  EMULATOR_SOAK_ROUNDS: '20', // emulator-recovery: kill -9 rounds per seed under direct load
};
const env = { ...process.env };
for (const [k, v] of Object.entries(SOAK_DEFAULTS)) if (!env[k]) env[k] = v;

execFileSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { cwd: root, stdio: 'inherit' });

const files = [
  'test/reliability-load.test.ts',
  'test/reliability-faults.test.ts',
  'test/reliability-node-kill.test.ts',
  'test/reliability-bad-input.test.ts',
  'test/reliability-wire-fuzz.test.ts',
  'test/emulator-recovery.test.ts',
];
const started = Date.now();
const child = spawn(
  process.execPath,
  [join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', ...files, ...process.argv.slice(2)],
  {
    cwd: root,
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  },
);
const figures = new Set();
let pending = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  pending += chunk.toString();
  const lines = pending.split('\n');
  pending = lines.pop() ?? '';
  for (const line of lines)
    if (line.includes('[reliability]') || line.includes('"msg":"reconciled"'))
      figures.add(line.replace(/\u001b\[[0-9;]*m/g, '').trim());
});
child.on('exit', (code) => {
  const settings = Object.keys(SOAK_DEFAULTS)
    .map((k) => `${k}=${env[k]}`)
    .join(' ');
  process.stdout.write(
    `\n== soak figures (${settings}; ${Math.round((Date.now() - started) / 1000)} s) ==\n${[...figures].join('\n')}\n`,
  );
  process.exit(code ?? 1);
});
