import { describe, expect, it } from 'vitest';
import { KeyedMutex } from '../src/util/keyed-mutex.js';

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('KeyedMutex', () => {
  it('runs calls on one key one at a time, in arrival order', async () => {
    const m = new KeyedMutex();
    const log: string[] = [];
    let running = 0;
    let maxRunning = 0;
    const job = (id: string) =>
      m.withLock('vol', async () => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        log.push(`start ${id}`);
        await tick();
        await tick();
        log.push(`end ${id}`);
        running--;
        return id;
      });
    expect(await Promise.all([job('a'), job('b'), job('c')])).toEqual(['a', 'b', 'c']);
    expect(maxRunning).toBe(1);
    expect(log).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
    expect(m.size).toBe(0);
  });

  it('lets different keys run at the same time', async () => {
    const m = new KeyedMutex();
    let bothInside = false;
    let aInside = false;
    await Promise.all([
      m.withLock('a', async () => {
        aInside = true;
        await tick();
        await tick();
        aInside = false;
      }),
      m.withLock('b', async () => {
        await tick();
        bothInside = aInside;
      }),
    ]);
    expect(bothInside).toBe(true);
  });

  it('releases the lock when the function throws', async () => {
    const m = new KeyedMutex();
    await expect(
      m.withLock('k', () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(m.isLocked('k')).toBe(false);
    expect(await m.withLock('k', () => 42)).toBe(42);
  });

  it('tryLock takes a free key and refuses a held one; a double release is harmless', async () => {
    const m = new KeyedMutex<string>();
    const release = m.tryLock('k');
    expect(release).toBeTypeOf('function');
    expect(m.tryLock('k')).toBeUndefined();
    expect(m.tryLock('other')).toBeTypeOf('function');
    release!();
    release!();
    const again = m.tryLock('k');
    expect(again).toBeTypeOf('function');
    // The stale release of the first holder must not free the second holder's lock.
    release!();
    expect(m.isLocked('k')).toBe(true);
    again!();
    expect(m.isLocked('k')).toBe(false);
  });

  it('tryWithLock runs only when the key is free', async () => {
    const m = new KeyedMutex();
    const release = m.tryLock('k')!;
    expect(await m.tryWithLock('k', () => 'ran')).toEqual({ acquired: false });
    release();
    expect(await m.tryWithLock('k', () => 'ran')).toEqual({ acquired: true, value: 'ran' });
    expect(m.size).toBe(0);
  });

  it('an aborted wait leaves the queue; the next waiter still gets the key', async () => {
    const m = new KeyedMutex();
    const release = await m.lock('k');
    const ctl = new AbortController();
    const order: string[] = [];
    const aborted = m.withLock('k', () => order.push('aborted ran'), ctl.signal);
    const next = m.withLock('k', () => order.push('next ran'));
    ctl.abort(new Error('gave up'));
    await expect(aborted).rejects.toThrow('gave up');
    release();
    await next;
    expect(order).toEqual(['next ran']);
    expect(m.size).toBe(0);
    await expect(m.lock('k', ctl.signal)).rejects.toThrow('gave up');
  });
});
