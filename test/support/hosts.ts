// Several hosts of one emulator back end for tests: the daemon with `--data-host` for each, and one front end
// (dist/emulator/host.js) per host, optionally run inside a network namespace (`ip netns exec`). Killing a
// front end with SIGKILL is the host dying; startFront() again is the host coming back.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { forceCleanup, leftovers, sleep, startDaemon, type Daemon, type DaemonOptions } from './emulator.js';
import type { Leaks } from './leaks.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const HOST_FRONT_MAIN = join(root, 'dist', 'emulator', 'host.js');

export interface FrontInfo {
  pid: number;
  hostId: string;
  tcpPort: number;
  listenHost: string;
  controlSocket: string;
  kvSocket: string;
}

export interface Front {
  info: FrontInfo;
  proc: ChildProcess;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

export interface FrontOptions {
  /** run inside this network namespace */
  netns?: string;
  listenHost?: string;
  /** -1 (no TCP) unless given */
  listenPort?: number;
}

export async function startFront(dataDir: string, hostId: string, options: FrontOptions = {}): Promise<Front> {
  const infoPath = join(dataDir, `emulator-${hostId}.json`);
  rmSync(infoPath, { force: true });
  const argv = [
    HOST_FRONT_MAIN,
    '--data-dir',
    dataDir,
    '--host-id',
    hostId,
    `--listen-host=${options.listenHost ?? '127.0.0.1'}`,
    `--listen-port=${options.listenPort ?? -1}`,
  ];
  const proc = options.netns
    ? spawn('ip', ['netns', 'exec', options.netns, process.execPath, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d));
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((r) =>
    proc.once('exit', (code) => {
      exitCode = code;
      r();
    }),
  );
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (existsSync(infoPath)) {
      const info = JSON.parse(readFileSync(infoPath, 'utf8')) as FrontInfo;
      return {
        info,
        proc,
        kill9: async () => {
          if (exitCode !== undefined) return;
          // ip netns exec execs the command: the pid is the front end itself.
          process.kill(info.pid, 'SIGKILL');
          await exited;
        },
        stop: async () => {
          if (exitCode !== undefined) return;
          proc.kill('SIGTERM');
          await exited;
        },
      };
    }
    if (exitCode !== undefined) throw new Error(`host front end ${hostId} exited (${exitCode}):\n${log}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`host front end ${hostId} not ready in 30 s:\n${log}`);
    }
    await sleep(10);
  }
}

export interface Hosts {
  daemon: Daemon;
  fronts: Map<string, Front>;
  stop(): Promise<void>;
}

/** The daemon with a data plane for each of `hostIds`, and a front end for each (in `netns[hostId]` if given). */
export async function startHosts(
  hostIds: readonly string[],
  options: DaemonOptions & { fronts?: Record<string, FrontOptions> } = {},
): Promise<Hosts> {
  const daemon = await startDaemon({
    ...options,
    args: [...(options.args ?? []), ...hostIds.flatMap((h) => ['--data-host', h])],
  });
  const fronts = new Map<string, Front>();
  try {
    for (const h of hostIds) fronts.set(h, await startFront(daemon.dataDir, h, options.fronts?.[h]));
  } catch (err) {
    for (const f of fronts.values()) await f.kill9();
    await daemon.stop();
    throw err;
  }
  return {
    daemon,
    fronts,
    stop: async () => {
      for (const f of fronts.values()) await f.stop();
      await daemon.stop();
    },
  };
}

/** Stops the hosts and their daemon, removes its dir, and returns what was left under it (to assert empty). */
export async function stopAndCheckHosts(hosts: Hosts): Promise<Leaks> {
  await hosts.stop();
  const left = leftovers(hosts.daemon.dir);
  forceCleanup(hosts.daemon.dir);
  return left;
}
