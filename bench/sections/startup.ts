// Time, CPU and RSS from spawn to the first ready Probe, for each mode.
import { join } from 'node:path';
import type { BenchContext } from '../lib/context.js';
import { waitProbeReady } from '../lib/probe.js';
import { cpuMs, rssMiB, spawnDriver } from '../lib/procs.js';
import { fmt, summarize } from '../lib/stats.js';

/** Spawn to the first Probe answering ready=true, polled every 5 ms; each mode in fresh processes. */
export async function startup(b: BenchContext): Promise<void> {
  const { dir, opt, add, find, driverBase } = b;
  const nodeStart = find('floor', 'node-start');
  for (const mode of ['controller', 'node', 'all'] as const) {
    const dataDir = join(dir, 'all-mode-data');
    const runOnce = async (i: number): Promise<{ ms: number; rss: number; cpu: number }> => {
      const d = spawnDriver(
        driverBase(mode, `startup-${mode}-${i}`, mode === 'all' ? { dataDir, env: { SDS_POOLS: 'pool0:2G' } } : {}),
      );
      let run: { ms: number; rss: number; cpu: number };
      try {
        const ms = await waitProbeReady(d);
        run = { ms, rss: rssMiB(d.pid), cpu: cpuMs(d.pid) };
      } catch (err) {
        await d.stop();
        throw err;
      }
      const code = await d.stop();
      if (code !== 0) throw new Error(`startup ${mode}: the driver exited with ${code}; see ${d.logFile}`);
      return run;
    };
    // all mode: the first start makes the emulator's pool (mkfs); the figure is a start with the pool there
    // (--quick skips that warm-up run: its one all-mode start includes making the pool).
    if (mode === 'all' && !opt.quick) await runOnce(-1);
    const runs: Array<{ ms: number; rss: number; cpu: number }> = [];
    for (let i = 0; i < opt.startupRepeats; i++) runs.push(await runOnce(i));
    const s = summarize(runs.map((r) => r.ms));
    // CPU time to ready depends far less on the machine's load than the wall time does.
    const cpu = summarize(runs.map((r) => r.cpu));
    const bareCpu = find('floor', 'node-start-cpu');
    add({
      section: 'startup',
      name: `cpu-to-ready-${mode}`,
      value: cpu.p50,
      unit: 'ms CPU',
      latency: cpu,
      ...(bareCpu
        ? { floor: { name: 'node-start-cpu', value: bareCpu.value, unit: 'ms CPU' }, ratio: cpu.p50 / bareCpu.value }
        : {}),
      note:
        mode === 'all'
          ? 'the driver process only (not the emulator it starts)'
          : 'user + system CPU of the driver process when Probe first answers ready',
    });
    add({
      section: 'startup',
      name: `probe-ready-${mode}`,
      value: s.p50,
      unit: 'ms',
      latency: s,
      ...(nodeStart
        ? { floor: { name: 'node-start', value: nodeStart.value, unit: 'ms' }, ratio: s.p50 / nodeStart.value }
        : {}),
      note: `${mode === 'all' ? 'includes starting the emulator (pool already made); ' : ''}RSS at ready ${fmt(summarize(runs.map((r) => r.rss)).p50)} MiB`,
    });
  }
}
