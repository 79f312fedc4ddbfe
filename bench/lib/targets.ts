// The targets a run is judged against (docs/BENCHMARKS.md), from the figures it measured.
import type { Report } from './context.js';
import { fmt } from './stats.js';

export function judgeTargets(
  find: Report['find'],
): Array<{ name: string; wanted: string; measured: string; met: boolean }> {
  const out: Array<{ name: string; wanted: string; measured: string; met: boolean }> = [];
  const c16 = find('create-delete', 'pairs-c16');
  if (c16) {
    out.push({
      name: 'CreateVolume+DeleteVolume at concurrency 16',
      wanted: '≥ 800 pairs/s',
      measured: `${fmt(c16.value)} pairs/s`,
      met: c16.value >= 800,
    });
    const ratio = c16.latency!.p99 / c16.latency!.p50;
    out.push({ name: '… its p99 ÷ p50', wanted: '≤ 3', measured: fmt(ratio), met: ratio <= 3 });
  }
  const idle = find('rss', 'node-idle');
  if (idle)
    out.push({
      name: 'node plugin idle RSS',
      wanted: '≤ 70 MiB',
      measured: `${fmt(idle.value)} MiB (${idle.note ?? ''})`,
      met: idle.value <= 70,
    });
  for (const mode of ['controller', 'node'] as const) {
    const p = find('startup', `probe-ready-${mode}`);
    if (p)
      out.push({
        name: `Probe ready after start (--mode=${mode})`,
        wanted: '≤ 400 ms',
        measured: `${fmt(p.value)} ms`,
        met: p.value <= 400,
      });
  }
  const sp = find('stage', 'stage+publish');
  if (sp)
    out.push({
      name: 'stage+publish of a formatted volume, p50',
      wanted: '≤ 60 ms',
      measured: `${fmt(sp.value)} ms`,
      met: sp.value <= 60,
    });
  return out;
}
