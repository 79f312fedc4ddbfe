// Unit tests of the operations pieces that the process tests cannot steer precisely: the bound and the
// cache of the back-end figures, the metric observers, the listen-address parser, the probe's transitions,
// and mount errors that must not quote mount options.
import { describe, expect, it } from 'vitest';
import { backendProbe } from '../src/identity/probe.js';
import { createLogger } from '../src/log/logger.js';
import { BackendStatsCache, DriverMetrics, parseListenAddress } from '../src/metrics/index.js';
import { mountFilesystem } from '../src/mount/mounts.js';
import type { Page, PoolInfo, VolumeInfo } from '../src/sds/backend.js';
import { SdsError } from '../src/sds/errors.js';
import { parseExposition, Scrape } from './support/ops.js';

const log = createLogger({ level: 'silent' });

function pool(id: string): PoolInfo {
  return {
    id,
    totalBytes: 100,
    freeBytes: 60,
    provisionedBytes: 30,
    allocatedBytes: 20,
    maxOversubscription: 1,
    thinCapacityBytes: 70,
    thickCapacityBytes: 60,
    linkedClone: true,
    type: 'xfs-reflink',
    hosts: [],
    healthy: true,
  };
}

function volume(name: string, poolId: string): VolumeInfo {
  return { name, poolId } as VolumeInfo;
}

/** A back end whose answers the test releases. */
class ScriptedSource {
  calls = 0;
  pages: Array<Page<VolumeInfo>> = [];
  hang = false;
  fail = false;
  async queryPools(): Promise<PoolInfo[]> {
    this.calls++;
    if (this.hang) await new Promise(() => undefined);
    if (this.fail) throw new SdsError('Unavailable', 'QUERY_POOLS_CAPABILITY_REQ: no VBS could be reached');
    return [pool('p1'), pool('p2')];
  }
  async listVolumes(query: { marker?: string }): Promise<Page<VolumeInfo>> {
    const index = query.marker ? Number(query.marker) : 0;
    return this.pages[index] ?? { items: [], nextMarker: '' };
  }
}

describe('BackendStatsCache', () => {
  it('pages through every volume, counts them per pool and serves the figures from cache until they age', async () => {
    const source = new ScriptedSource();
    source.pages = [
      { items: [volume('a', 'p1'), volume('b', 'p2')], nextMarker: '1' },
      { items: [volume('c', 'p1')], nextMarker: '' },
    ];
    const cache = new BackendStatsCache(source, { maxAgeMs: 60_000, waitMs: 1_000, collectTimeoutMs: 5_000, log });
    const stats = await cache.get();
    expect(Object.fromEntries(stats!.volumesByPool)).toEqual({ p1: 2, p2: 1 });
    expect(stats!.pools.map((p) => p.id)).toEqual(['p1', 'p2']);
    await cache.get();
    expect(source.calls).toBe(1);
    expect(cache.up).toBe(true);
  });

  it('answers within waitMs while the back end hangs, and shares one collection among waiting scrapes', async () => {
    const source = new ScriptedSource();
    source.hang = true;
    const cache = new BackendStatsCache(source, { maxAgeMs: 0, waitMs: 50, collectTimeoutMs: 60_000, log });
    expect(await Promise.all([cache.get(), cache.get(), cache.get()])).toEqual([undefined, undefined, undefined]);
    expect(source.calls).toBe(1);
    expect(cache.up).toBe(false);
  });

  it('drops its figures when a collection fails, and collects again at the next scrape', async () => {
    const source = new ScriptedSource();
    const cache = new BackendStatsCache(source, { maxAgeMs: 0, waitMs: 1_000, collectTimeoutMs: 5_000, log });
    expect(await cache.get()).toBeDefined();
    source.fail = true;
    expect(await cache.get()).toBeUndefined();
    expect(cache.up).toBe(false);
    source.fail = false;
    expect(await cache.get()).toBeDefined();
    expect(cache.up).toBe(true);
  });
});

describe('DriverMetrics', () => {
  it('turns observer calls into the documented series, in its own registry', async () => {
    const metrics = new DriverMetrics({ version: '1.2.3', mode: 'controller', driverName: 'x.example.com' });
    metrics.rpc.started('CreateVolume');
    metrics.rpc.started('CreateVolume');
    metrics.rpc.finished('CreateVolume', 'OK', 0.02);
    metrics.backend('CREATE_VOLUME_REQ', 'ok', 0.004);
    metrics.backend('QUERY_VOLUME_REQ', 'NotFound', 0.001);
    metrics.connector('attach', 'Timeout', 61);
    const source = new ScriptedSource();
    metrics.watchBackend(source, { maxAgeMs: 0, waitMs: 1_000, collectTimeoutMs: 5_000, log });
    const scrape = new Scrape(parseExposition(await metrics.registry.metrics()));
    const P = 'sdshypervisor_csi_';
    expect(scrape.value(`${P}rpc_in_flight`, { method: 'CreateVolume' })).toBe(1);
    expect(scrape.value(`${P}rpc_requests_total`, { method: 'CreateVolume', code: 'OK' })).toBe(1);
    expect(scrape.value(`${P}rpc_duration_seconds_bucket`, { method: 'CreateVolume', code: 'OK', le: '0.01' })).toBe(0);
    expect(scrape.value(`${P}rpc_duration_seconds_bucket`, { method: 'CreateVolume', code: 'OK', le: '0.025' })).toBe(
      1,
    );
    expect(
      scrape.value(`${P}backend_request_duration_seconds_count`, {
        request_type: 'QUERY_VOLUME_REQ',
        result: 'NotFound',
      }),
    ).toBe(1);
    expect(
      scrape.value(`${P}connector_call_duration_seconds_bucket`, { method: 'attach', result: 'Timeout', le: '60' }),
    ).toBe(0);
    expect(
      scrape.value(`${P}connector_call_duration_seconds_bucket`, { method: 'attach', result: 'Timeout', le: '+Inf' }),
    ).toBe(1);
    expect(scrape.value(`${P}volumes`, { pool: 'p2' })).toBe(0);
    expect(scrape.all(`${P}pool_capacity_bytes`, { pool: 'p1' }).map((s) => [s.labels.kind, s.value])).toEqual([
      ['total', 100],
      ['free', 60],
      ['provisioned', 30],
      ['allocated', 20],
      ['thin_available', 70],
    ]);
    expect(scrape.value(`${P}backend_up`)).toBe(1);
    expect(scrape.value(`${P}build_info`, { version: '1.2.3', mode: 'controller', driver_name: 'x.example.com' })).toBe(
      1,
    );
    expect(scrape.has('process_cpu_seconds_total')).toBe(true);
    // Another instance starts from zero: nothing is shared through prom-client's global registry.
    const other = new DriverMetrics({ version: '1.2.3', mode: 'node', driverName: 'x.example.com' });
    expect(new Scrape(parseExposition(await other.registry.metrics())).all(`${P}rpc_requests_total`)).toEqual([]);
  });
});

describe('parseListenAddress', () => {
  it.each([
    ['127.0.0.1:9810', { host: '127.0.0.1', port: 9810 }],
    [':9810', { host: undefined, port: 9810 }],
    ['0.0.0.0:0', { host: '0.0.0.0', port: 0 }],
    ['[::1]:9810', { host: '::1', port: 9810 }],
    ['localhost:80', { host: 'localhost', port: 80 }],
  ])('%s', (text, parsed) => {
    expect(parseListenAddress(text)).toEqual(parsed);
  });
  it.each(['9810', '127.0.0.1', '127.0.0.1:70000', '::1:9810', 'http://x:1'])('refuses %s', (text) => {
    expect(() => parseListenAddress(text)).toThrow(/metrics address/);
  });
});

describe('backendProbe', () => {
  it('reports the reason, never throws, and logs a change of readiness once', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const sink = { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) };
    let down = false;
    const backend = {
      systemInfo: async () => {
        if (down) throw new SdsError('Unavailable', 'QUERY_CAPABILITY_REQ: no VBS could be reached (x: ECONNREFUSED)');
        return { product: 'SDSHypervisor', version: '1', apiVersion: '1', hostId: 'h', capabilities: [] };
      },
    };
    const probe = backendProbe(backend, { timeoutMs: 1_000, log: createLogger({ level: 'info' }, sink) });
    expect(await probe()).toEqual({ ready: true });
    down = true;
    expect(await probe()).toEqual({
      ready: false,
      reason: 'QUERY_CAPABILITY_REQ: no VBS could be reached (x: ECONNREFUSED)',
    });
    expect(await probe()).toMatchObject({ ready: false });
    down = false;
    expect(await probe()).toEqual({ ready: true });
    expect(lines.map((l) => l.msg)).toEqual([
      'back end ready',
      'back end not ready: Probe and /healthz report not ready until it answers',
      'back end ready again',
    ]);
  });
});

describe('mount errors', () => {
  it('a cancelled mount does not quote its options (they may carry credentials)', async () => {
    const cancelled = AbortSignal.abort(new Error('call cancelled by the client'));
    const err = await mountFilesystem(
      '/dev/loop-none',
      '/nonexistent/target',
      'ext4',
      ['comment=s3cr3t-value', 'noatime'],
      { signal: cancelled },
    ).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(
      /^mount -t ext4 -o <2 options> \/dev\/loop-none \/nonexistent\/target: cancelled/,
    );
    expect((err as Error).message).not.toMatch(/s3cr3t|noatime/);
  });
});
