// Changed-block tracking figures, from bench/snapshot-delta.ts.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../../src/util/paths.js';
import type { BenchContext } from '../lib/context.js';
import type { Result as DeltaResult } from '../snapshot-delta.js';
import { cleanEnv } from '../lib/procs.js';
import { fmt } from '../lib/stats.js';

const exec = promisify(execFile);

/**
 * Changed-block tracking: bench/snapshot-delta.ts (its own emulator, every pool type) at a size that fits a
 * run; its figures join the table. `npm run bench:delta` runs it at its full 10 GiB.
 */
export async function snapshotDelta(b: BenchContext): Promise<void> {
  const { opt, add, notes } = b;
  const sizeGiB = Number(opt.deltaGiB ?? (opt.quick ? 0.25 : 1));
  const script = join(projectRoot(), 'dist', 'bench', 'snapshot-delta.js');
  const { stdout } = await exec(process.execPath, [script, '--size-gib', String(sizeGiB), '--json'], {
    env: cleanEnv(),
    maxBuffer: 64 * 1024 * 1024,
  });
  const report = JSON.parse(stdout.trim().split('\n').pop()!) as {
    results: DeltaResult[];
  };
  const MiB = 1024 * 1024;
  for (const r of report.results) {
    add({
      section: 'snapshot-delta',
      name: `${r.pool}-${sizeGiB}GiB`,
      value: r.deltaSeconds * 1000,
      unit: 'ms',
      note:
        `${r.method}: ${r.pages} page(s), ${r.extents} ranges, ${fmt(r.deltaBytes / MiB)} MiB listed of ${fmt(r.writtenBytes / MiB)} MiB rewritten (1 % of 4 KiB blocks), ` +
        `exact: ${r.exact ? 'yes' : 'NO'}; the allocated map of the whole snapshot: ${fmt(r.allocatedSeconds * 1000)} ms`,
    });
    if (!r.exact) notes.push(`snapshot-delta on ${r.pool}: the listed delta is not exactly the rewritten blocks`);
  }
}
