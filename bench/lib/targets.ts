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
  out.push(...issue19Targets(find));
  return out;
}

/** Issue 19's targets: ratios to floors measured in the same run (and two absolute ceilings it names). */
function issue19Targets(find: Report['find']): Array<{ name: string; wanted: string; measured: string; met: boolean }> {
  const out: Array<{ name: string; wanted: string; measured: string; met: boolean }> = [];
  const atMost = (name: string, section: string, figure: string, limit: number, what: 'ratio' | 'value') => {
    const f = find(section, figure);
    const v = what === 'ratio' ? f?.ratio : f?.value;
    if (f && v !== undefined)
      out.push({
        name,
        wanted: what === 'ratio' ? `≤ ${limit}×` : `≤ ${limit} ${f.unit}`,
        measured: what === 'ratio' ? `${fmt(v)}× (floor ${f.floor?.name ?? '?'})` : `${fmt(v)} ${f.unit}`,
        met: v <= limit,
      });
  };
  atMost('#19 node plugin idle RSS', 'rss', 'node-idle', 45, 'value');
  // Whether it is reachable at all: a gRPC server with the CSI proto and nothing else (bench/floors/csi-idle.ts).
  atMost('#19 … reachable? a bare CSI gRPC server in Node, idle', 'floor', 'node-idle-least', 45, 'value');
  atMost('#19 controller RSS peak during create/delete', 'rss', 'controller-under-load', 100, 'value');
  // Each node ratio, and whether it is reachable at all: the by-hand floor plus what any gRPC plugin adds
  // (an empty call on the same plugin) and, for a stage, the blkid it keeps (bench/sections/stage.ts).
  for (const [figure, floorName, limit] of [
    ['stage+publish', 'stage+publish', 1.4],
    ['NodePublishVolume', 'publish', 1.3],
    ['NodeUnpublishVolume', 'unpublish', 1.3],
  ] as const) {
    atMost(`#19 ${figure} ÷ by hand`, 'stage', figure, limit, 'ratio');
    const least = find('floor', `${floorName}-least`);
    const byHand = find('floor', `${floorName}-by-hand`);
    if (least && byHand) {
      const ratio = least.value / byHand.value;
      out.push({
        name: `#19 … reachable? ${floorName}-least ÷ ${floorName}-by-hand`,
        wanted: `≤ ${limit}×`,
        measured: `${fmt(ratio)}×`,
        met: ratio <= limit,
      });
    }
  }
  for (const [c, limit] of [
    [1, 1.3],
    [16, 1.1],
  ] as const) {
    atMost(`#19 create+delete ÷ emulator alone, c=${c}`, 'create-delete', `pairs-c${c}`, limit, 'ratio');
    // Whether it is reachable at all: the floor of any driver that speaks gRPC (bench/sections/floor.ts).
    const stack = find('floor', `stack-pairs-c${c}`);
    if (stack?.ratio !== undefined)
      out.push({
        name: `#19 … reachable? 2 empty RPCs + emulator pair ÷ emulator alone, c=${c}`,
        wanted: `≤ ${limit}×`,
        measured: `${fmt(stack.ratio)}×`,
        met: stack.ratio <= limit,
      });
  }
  const emulator = find('floor', 'emulator-pairs-c16');
  if (emulator)
    out.push({
      name: '#19 emulator alone, pairs/s at c=16',
      wanted: '≥ 2000 pairs/s',
      measured: `${fmt(emulator.value)} pairs/s`,
      met: emulator.value >= 2000,
    });
  atMost('#19 Probe ready (--mode=controller)', 'startup', 'probe-ready-controller', 200, 'value');
  atMost('#19 Probe ready (--mode=node)', 'startup', 'probe-ready-node', 200, 'value');
  // The scale targets are set at 100,000 volumes; a smaller fill (--quick) is not judged by them.
  if ((find('scale', 'volumes')?.value ?? 0) >= 100_000) {
    atMost('#19 emulator restart at 100k volumes: time to ready', 'scale', 'restart-ready', 2000, 'value');
    atMost('#19 emulator restart at 100k volumes: RSS after', 'scale', 'restart-rss', 150, 'value');
    atMost('#19 a full ListVolumes pass at 100k volumes', 'scale', 'list-all', 1000, 'value');
  }
  return out;
}
