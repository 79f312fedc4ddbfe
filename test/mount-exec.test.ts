// runTool, the one way the mount room runs a program: what it resolves and rejects with, its time bound, its
// cancellation, its output bound, and the stdio it hands the program (stdin /dev/null; stdout not piped when
// discarded). Plain programs from coreutils stand in for the mount tools.
import { describe, expect, it } from 'vitest';
import { MountError } from '../src/mount/errors.js';
import { runTool, ToolFailure } from '../src/mount/exec.js';

const run = (tool: string, args: string[], extra: Partial<Parameters<typeof runTool>[2]> = {}) =>
  runTool(tool, args, { timeoutMs: 10_000, ...extra });

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );

describe('runTool', () => {
  it('resolves with the output of a program that exits 0, in the C locale', async () => {
    const r = await run('sh', ['-c', 'printf "%s" "$LC_ALL"; printf err >&2']);
    expect(r).toEqual({ stdout: 'C', stderr: 'err', exitCode: 0 });
  });

  it('gives the program /dev/null as stdin: a tool that reads it sees end-of-file at once', async () => {
    const r = await run('sh', ['-c', 'cat; readlink /proc/self/fd/0']);
    expect(r.stdout.trim()).toBe('/dev/null');
  });

  it('with discardStdout the program has no stdout pipe, and stderr still reaches the error', async () => {
    const r = await run('sh', ['-c', 'echo out; readlink /proc/self/fd/1'], { discardStdout: true });
    expect(r.stdout).toBe('');
    const err = await failure(run('sh', ['-c', 'echo no such thing >&2; exit 32'], { discardStdout: true }));
    expect(err).toBeInstanceOf(ToolFailure);
    expect(err).toMatchObject({ exitCode: 32, stderr: 'no such thing\n' });
    expect((err as Error).message).toMatch(/no such thing/);
  });

  it('an exit code the caller expects is an answer; any other is a ToolFailure saying what the tool said', async () => {
    expect(await run('sh', ['-c', 'echo nothing; exit 2'], { okExitCodes: [2, 8] })).toEqual({
      stdout: 'nothing\n',
      stderr: '',
      exitCode: 2,
    });
    const err = await failure(run('sh', ['-c', 'echo "tool 1.0 (1-Jan-2020)" >&2; echo bad device >&2; exit 3']));
    expect(err).toBeInstanceOf(ToolFailure);
    expect((err as ToolFailure).exitCode).toBe(3);
    expect((err as Error).message).toBe(
      'sh -c echo "tool 1.0 (1-Jan-2020)" >&2; echo bad device >&2; exit 3 failed: bad device',
    );
  });

  it('a program that is not installed is NotFound', async () => {
    const err = await failure(run('no-such-tool-here', []));
    expect(err).toBeInstanceOf(MountError);
    expect(err).toMatchObject({ kind: 'NotFound', message: 'no-such-tool-here is not installed (or not on PATH)' });
  });

  it('a program past its time is killed and the call is a Timeout', async () => {
    const started = Date.now();
    const err = await failure(run('sleep', ['30'], { timeoutMs: 200 }));
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(err).toMatchObject({ kind: 'Timeout', message: 'sleep 30: no result within 200 ms; killed' });
  });

  it('a cancelled call kills the program; one cancelled before it ran never starts it', async () => {
    const controller = new AbortController();
    const call = failure(run('sleep', ['30'], { signal: controller.signal, shownAs: 'sleep <hidden>' }));
    setTimeout(() => controller.abort(new Error('call cancelled by the client')), 100);
    expect(await call).toMatchObject({ kind: 'Timeout', message: 'sleep <hidden>: cancelled' });
    const before = await failure(run('sleep', ['30'], { signal: AbortSignal.abort() }));
    expect(before).toMatchObject({ kind: 'Timeout', message: 'sleep 30: cancelled before it ran' });
  });

  it('output beyond 4 MiB kills the program and fails saying so', async () => {
    const err = await failure(run('sh', ['-c', 'head -c 6000000 /dev/zero; sleep 30']));
    expect(err).toBeInstanceOf(ToolFailure);
    expect((err as Error).message).toMatch(/output too large; killed$/);
    expect((err as ToolFailure).stdout.length).toBeLessThanOrEqual(4 * 1024 * 1024);
  });
});
