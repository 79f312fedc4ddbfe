// The run as a Markdown section for docs/BENCHMARKS.md (`--markdown PATH`).
import { fmt, type Figure } from './stats.js';

export interface RunMeta {
  date: string;
  host: string;
  cpu: string;
  cores: number;
  ramGiB: number;
  kernel: string;
  node: string;
  loadAtStart: number;
  loadAtEnd: number;
  seconds: number;
  options: Record<string, unknown>;
}

export interface Target {
  name: string;
  wanted: string;
  measured: string;
  met: boolean;
}

const cell = (s: string) => s.replace(/\|/g, '\\|');

export function markdown(
  meta: RunMeta,
  figures: readonly Figure[],
  targets: readonly Target[],
  notes: readonly string[],
): string {
  const lines: string[] = [];
  lines.push(`### Run of ${meta.date.slice(0, 16).replace('T', ' ')} UTC`, '');
  lines.push(
    `${meta.cpu}, ${meta.cores} cores, ${meta.ramGiB} GiB RAM, kernel ${meta.kernel}, Node ${meta.node}; load average ${meta.loadAtStart} at the start, ${meta.loadAtEnd} at the end; ${meta.seconds} s.`,
  );
  lines.push(`Options: \`${JSON.stringify(meta.options)}\`.`, '');
  lines.push(
    '| figure | value | p50 ms | p95 ms | p99 ms | floor | ratio | load | note |',
    '|---|---:|---:|---:|---:|---|---:|---:|---|',
  );
  for (const f of figures) {
    lines.push(
      `| ${f.section}/${f.name} | ${fmt(f.value)} ${f.unit} | ${f.latency ? fmt(f.latency.p50) : ''} | ${f.latency ? fmt(f.latency.p95) : ''} | ${f.latency ? fmt(f.latency.p99) : ''} | ` +
        `${f.floor ? `${fmt(f.floor.value)} ${f.floor.unit} (${f.floor.name})` : ''} | ${f.ratio !== undefined ? `${fmt(f.ratio)}×` : ''} | ${fmt(f.load, 1)} | ${cell(f.note ?? '')} |`,
    );
  }
  if (targets.length) {
    lines.push('', '| target | wanted | measured | met |', '|---|---|---|---|');
    for (const t of targets) lines.push(`| ${t.name} | ${t.wanted} | ${t.measured} | ${t.met ? 'yes' : '**no**'} |`);
  }
  if (notes.length) lines.push('', ...notes.map((n) => `- ${cell(n)}`));
  return `${lines.join('\n')}\n`;
}
