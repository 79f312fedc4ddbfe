// The per-file fixture of the SdsClient unit tests: fake VBS daemons on unix sockets in a temp dir and the
// clients talking to them, all stopped after each test, and the check that a call fails with an SdsError.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { SdsClient, type SdsClientOptions } from '../../src/sds/client.js';
import { SdsError, type SdsErrorKind } from '../../src/sds/errors.js';
import { FakeVbs, type FakeHandler } from './fake-vbs.js';

export interface SdsFixture {
  /** The temp dir the fakes' sockets live in (set once the file's beforeAll ran). */
  readonly dir: string;
  /** A fake on a unix socket in `dir` (on 127.0.0.1 with `tcp`), stopped after the test. */
  fake(handler: FakeHandler, tcp?: boolean): Promise<FakeVbs>;
  /** Stops `f` after the test (for a fake started by hand); `forget` undoes it for one stopped already. */
  track(f: FakeVbs): FakeVbs;
  forget(f: FakeVbs): void;
  /** A client closed after the test. */
  client(options: SdsClientOptions): SdsClient;
}

/** Registers the hooks of one test file; the temp dir is named after `prefix`. */
export function sdsFixture(prefix: string): SdsFixture {
  let dir = '';
  let counter = 0;
  const fakes: FakeVbs[] = [];
  const clients: SdsClient[] = [];
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), `${prefix}-`));
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    await Promise.all(fakes.splice(0).map((f) => f.stop()));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const fixture: SdsFixture = {
    get dir() {
      return dir;
    },
    async fake(handler, tcp = false) {
      return fixture.track(await FakeVbs.start(handler, tcp ? undefined : { dir, name: `vbs-${counter++}.sock` }));
    },
    track(f) {
      fakes.push(f);
      return f;
    },
    forget(f) {
      fakes.splice(fakes.indexOf(f), 1);
    },
    client(options) {
      const c = new SdsClient(options);
      clients.push(c);
      return c;
    },
  };
  return fixture;
}

/** Awaits `p`, expects it to fail with an SdsError of `kind` (and `message`), and returns the error. */
export async function expectSdsError(p: Promise<unknown>, kind: SdsErrorKind, message?: RegExp): Promise<SdsError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SdsError);
  expect((err as SdsError).kind, (err as Error).message).toBe(kind);
  if (message) expect((err as SdsError).message).toMatch(message);
  return err as SdsError;
}
