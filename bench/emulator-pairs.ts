// Measures the emulator alone: CreateVolume + DeleteVolume (+ polling until NOT_EXIST) pairs per second at a
// given concurrency over its unix socket, the emulator's CPU time per pair, and its start-up time.
//   node dist/bench/emulator-pairs.js [pairs=4000] [concurrency=16]
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createThinVolume, deleteVolumeUntilGone } from './lib/clients.js';

const mainJs = join(dirname(fileURLToPath(import.meta.url)), '..', 'emulator', 'main.js');

/** [user, system] CPU of a process in ms (from clock ticks of 1/100 s). */
function cpuMs(pid: number): [number, number] {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return [Number(f[11]) * 10, Number(f[12]) * 10];
}

async function waitFor(path: string, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > end) throw new Error(`no ${path}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function main(): Promise<void> {
  const pairs = Number(process.argv[2] ?? 4000);
  const concurrency = Number(process.argv[3] ?? 16);
  const dir = mkdtempSync(join(tmpdir(), 'emu-bench-'));
  const args = [mainJs, '--data-dir', dir, '--listen-port', '-1', '--log-level', 'warn'];
  let child = spawn(process.execPath, args, { stdio: 'inherit' });
  await waitFor(join(dir, 'emulator.json'), 30_000);
  const sock = join(dir, 'vbs.sock');
  const before = cpuMs(child.pid!);
  const clientBefore = process.cpuUsage();
  let next = 0;
  let queries = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < pairs) {
        const name = `bench-${next++}`;
        await createThinVolume(sock, name, 1024);
        const n = await deleteVolumeUntilGone(sock, name);
        queries += n; // not `queries += await`: that reads queries before the await and loses updates
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const after = cpuMs(child.pid!);
  const client = process.cpuUsage(clientBefore);
  const user = (after[0] - before[0]) / pairs;
  const sys = (after[1] - before[1]) / pairs;
  console.log(
    `${pairs} pairs at concurrency ${concurrency}: ${(pairs / seconds).toFixed(0)} pairs/s; emulator CPU per pair ` +
      `${(user + sys).toFixed(3)} ms (user ${user.toFixed(3)}, system ${sys.toFixed(3)}) for create + delete + ${(queries / pairs).toFixed(2)} queries; ` +
      `this client's CPU per pair ${((client.user + client.system) / 1000 / pairs).toFixed(3)} ms`,
  );
  child.kill('SIGTERM');
  await new Promise((r) => child.on('exit', r));
  // Start-up with the pool image already there (the pool is unmounted by the clean stop).
  for (const keep of [false, true]) {
    const t = performance.now();
    child = spawn(process.execPath, [...args, ...(keep ? ['--keep-mounted'] : [])], { stdio: 'inherit' });
    await waitFor(join(dir, 'emulator.json'), 30_000);
    console.log(
      `start-up to ready (${keep ? 'pool still mounted' : 'pool mounted at start'}): ${(performance.now() - t).toFixed(0)} ms including node start`,
    );
    child.kill('SIGTERM');
    await new Promise((r) => child.on('exit', r));
  }
  // The last run kept the pool mounted: one more clean start and stop unmounts it.
  child = spawn(process.execPath, args, { stdio: 'inherit' });
  await waitFor(join(dir, 'emulator.json'), 30_000);
  child.kill('SIGTERM');
  await new Promise((r) => child.on('exit', r));
  rmSync(dir, { recursive: true, force: true });
}

void main();
