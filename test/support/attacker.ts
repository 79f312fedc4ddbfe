// An unprivileged local attacker for the race tests (issue #15): a small C program, compiled into the
// test's own temp dir, run as `nobody` through setpriv. It swaps two names atomically (renameat2
// RENAME_EXCHANGE), so `<dir>/sub` always exists and is, in turn, a directory and a symlink. The loop is
// bounded (an iteration count) and ends early when the stop file appears. C rather than Node: the Node
// under test may live in a directory `nobody` cannot enter (CI's Node 24 is under a 0700 temp dir).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const SOURCE = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
int main(int argc, char **argv) {
  if (argc != 5) return 2;
  const char *a = argv[1], *b = argv[2], *stop = argv[3];
  long max = atol(argv[4]);
  for (long i = 0; i < max; i++) {
    if (syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0) { perror("renameat2"); return 1; }
    if ((i & 1023) == 0 && access(stop, F_OK) == 0) break;
  }
  return 0;
}
`;

export const NOBODY = 65534;
export const NOGROUP = 65534;

/** Compiles the swapper into `dir` (which `nobody` must be able to enter) and returns its path. */
export function buildSwapper(dir: string): string {
  return compile(dir, 'swapper', SOURCE);
}

/** Compiles `source` into `dir`/`name`, executable by all, and returns its path. */
function compile(dir: string, name: string, source: string): string {
  const src = join(dir, `${name}.c`);
  const bin = join(dir, name);
  writeFileSync(src, source);
  const cc = spawnSync('cc', ['-O2', '-o', bin, src], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`cc failed: ${cc.stderr}`);
  chmodSync(bin, 0o755);
  return bin;
}

export interface Swapper {
  child: ChildProcess;
  /** creates the stop file and waits for the loop to end */
  stop(): Promise<void>;
}

/** Starts swapping `a` and `b` as nobody:nogroup, at most `max` times. */
export function startSwapper(bin: string, a: string, b: string, stopFile: string, max = 200_000_000): Swapper {
  return runAsNobody([bin, a, b, stopFile, String(max)], stopFile, 'swapper');
}

function runAsNobody(argv: string[], stopFile: string, what: string): Swapper {
  const child = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', ...argv], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return {
    child,
    async stop() {
      if (!existsSync(stopFile)) writeFileSync(stopFile, '');
      const code = await exited;
      if (code !== 0) throw new Error(`the ${what} failed (${code}): ${stderr}`);
    },
  };
}
const FLIPPER_SOURCE = `
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
static char *slurp(const char *path, long *len) {
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) { perror(path); exit(1); }
  char *buf = malloc(st.st_size);
  if (!buf || read(fd, buf, st.st_size) != st.st_size) { perror(path); exit(1); }
  close(fd);
  *len = st.st_size;
  return buf;
}
int main(int argc, char **argv) {
  if (argc != 6) return 2;
  long la, lb;
  char *a = slurp(argv[2], &la), *b = slurp(argv[3], &lb);
  const char *stop = argv[4];
  long max = atol(argv[5]);
  int fd = open(argv[1], O_WRONLY);
  if (fd < 0) { perror(argv[1]); return 1; }
  for (long i = 0; i < max; i++) {
    if (pwrite(fd, (i & 1) ? b : a, (i & 1) ? lb : la, 0) < 0) { perror("pwrite"); return 1; }
    if ((i & 255) == 0 && access(stop, F_OK) == 0) break;
  }
  return 0;
}
`;

/** Compiles the flipper into `dir`: it rewrites a file in place, in turn with the bytes of two others. */
export function buildFlipper(dir: string): string {
  return compile(dir, 'flipper', FLIPPER_SOURCE);
}

/** Starts rewriting `target` in place with `a`'s and `b`'s bytes in turn, as nobody:nogroup, at most `max` times. */
export function startFlipper(
  bin: string,
  target: string,
  a: string,
  b: string,
  stopFile: string,
  max = 50_000_000,
): Swapper {
  return runAsNobody([bin, target, a, b, stopFile, String(max)], stopFile, 'flipper');
}
