// A node process a test starts (the driver or the emulator) whose stderr it keeps, to judge it or to show it
// when the process did not do what the test waited for.
import { spawn, type ChildProcess } from 'node:child_process';

export interface LoggedProcess {
  child: ChildProcess;
  /** everything it wrote to stderr so far */
  log(): string;
  /** resolves with its exit code once it has exited */
  exited: Promise<number | null>;
  /** sends SIGTERM and waits for it to exit */
  stop(): Promise<void>;
}

/** Starts `node argv…` with `env` (nothing on stdin or stdout), keeping its stderr. */
export function spawnLogged(argv: string[], env: NodeJS.ProcessEnv): LoggedProcess {
  const child = spawn(process.execPath, argv, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    log: () => log,
    exited,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}
