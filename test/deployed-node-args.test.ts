// The node flags the driver is deployed with are the ones the bench measures it with (src/config/deployed-node-args.ts):
// the image's ENTRYPOINT and `npm start` pass exactly those before dist/src/main.js.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEPLOYED_NODE_ARGS } from '../src/config/deployed-node-args.js';

const read = (file: string) => readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');

/** The words between `node` and the driver's entry in an argv. */
function nodeArgsBefore(argv: readonly string[], entry: RegExp): string[] {
  const node = argv.indexOf('node');
  const main = argv.findIndex((a) => entry.test(a));
  expect(node, `node in ${argv.join(' ')}`).toBeGreaterThanOrEqual(0);
  expect(main, `the entry in ${argv.join(' ')}`).toBeGreaterThan(node);
  return argv.slice(node + 1, main);
}

describe('the driver is measured as it is deployed', () => {
  it('node accepts the flags at start', () => {
    expect(DEPLOYED_NODE_ARGS.length).toBeGreaterThan(0);
    const run = spawnSync(process.execPath, [...DEPLOYED_NODE_ARGS, '-e', 'process.exit(0)'], { encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });

  it("the image's ENTRYPOINT runs node with exactly those flags", () => {
    const line = read('Dockerfile')
      .split('\n')
      .find((l) => l.startsWith('ENTRYPOINT '));
    expect(line).toBeDefined();
    const argv = JSON.parse(line!.slice('ENTRYPOINT '.length)) as string[];
    expect(nodeArgsBefore(argv, /dist\/src\/main\.js$/)).toEqual(DEPLOYED_NODE_ARGS);
  });

  it('npm start runs node with exactly those flags', () => {
    const start = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start!;
    const command = start.split('&&').at(-1)!.trim().split(/\s+/);
    expect(nodeArgsBefore(command, /^dist\/src\/main\.js$/)).toEqual(DEPLOYED_NODE_ARGS);
  });
});
