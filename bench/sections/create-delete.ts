// CreateVolume + DeleteVolume pairs at each concurrency level.
import { closedLoop, mountCap, now, type BenchContext } from '../lib/context.js';
import { cpuMs, RssSampler } from '../lib/procs.js';
import { fmt, summarize } from '../lib/stats.js';

const GiB = 1024 ** 3;

/** CreateVolume + DeleteVolume pairs at each concurrency, with the controller's peak RSS and CPU per pair. */
export async function createDelete(b: BenchContext): Promise<void> {
  const { ctl, emulator, controller, opt, add, find } = b;
  const sampler = new RssSampler([controller.pid, emulator.pid]);
  const request = (name: string) => ({
    name,
    capacity_range: { required_bytes: String(GiB) },
    volume_capabilities: [mountCap('ext4')],
    parameters: {},
  });
  for (const c of opt.levels) {
    const pair = async (name: string, timesOut?: { create: number[]; del: number[] }) => {
      const t0 = now();
      const { volume } = await ctl.controller.CreateVolume(request(name));
      const t1 = now();
      await ctl.controller.DeleteVolume({ volume_id: volume!.volume_id });
      if (timesOut) {
        timesOut.create.push(t1 - t0);
        timesOut.del.push(now() - t1);
      }
    };
    await closedLoop(c, Math.min(500, opt.durationMs / 4), (seq) => pair(`warm-${c}-${seq}`)); // JIT warm-up
    const parts = { create: [] as number[], del: [] as number[] };
    const cpu0 = { ctl: cpuMs(controller.pid), emu: cpuMs(emulator.pid), self: process.cpuUsage() };
    const loop = await closedLoop(c, opt.durationMs, (seq) => pair(`cd-${c}-${seq}`, parts));
    const self = process.cpuUsage(cpu0.self);
    const perPair = (ms: number) => fmt(ms / loop.ops, 2);
    const rate = loop.ops / loop.seconds;
    const floor = find('floor', `emulator-pairs-c${c}`);
    const stack = find('floor', `stack-pairs-c${c}`);
    const s = summarize(loop.latencies);
    add({
      section: 'create-delete',
      name: `pairs-c${c}`,
      value: rate,
      unit: 'pairs/s',
      opsPerSec: rate,
      latency: s,
      ...(floor
        ? { floor: { name: `emulator-pairs-c${c}`, value: floor.value, unit: 'pairs/s' }, ratio: floor.value / rate }
        : {}),
      note:
        `${loop.ops} pairs; CPU ms/pair: controller ${perPair(cpuMs(controller.pid) - cpu0.ctl)}, emulator ${perPair(cpuMs(emulator.pid) - cpu0.emu)}, ` +
        `bench client ${perPair((self.user + self.system) / 1000)}; ${stack ? `÷ the stack's floor ${fmt(stack.value / rate)}×; ` : ''}CreateVolume p50 ${fmt(summarize(parts.create).p50)} ms, DeleteVolume p50 ${fmt(summarize(parts.del).p50)} ms; p99/p50 ${fmt(s.p99 / s.p50)}`,
    });
  }
  const peaks = sampler.stop();
  add({
    section: 'rss',
    name: 'controller-under-load',
    value: peaks.get(controller.pid) ?? NaN,
    unit: 'MiB',
    note: 'peak during create/delete',
  });
  add({
    section: 'rss',
    name: 'emulator-under-load',
    value: peaks.get(emulator.pid) ?? NaN,
    unit: 'MiB',
    note: 'peak during create/delete; the back end, not ours',
  });
}
