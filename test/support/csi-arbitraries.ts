// fast-check arbitraries for the fields of CSI requests, biased towards hostile values: ids with `../`, NUL
// and control characters, 10 kB strings, option-like names, int64 sizes from the negative end to the
// positive end, unknown enum numbers, unknown parameters and known ones with bad values, paths that climb
// out with `..` or end in a symlink.
import fc from 'fast-check';
import type { VolumeCapability } from '../../src/generated/csi/v1/VolumeCapability.js';

export const TEN_KB = 'A'.repeat(10 * 1024);

/** Strings a hostile or broken CO might put in any string field. */
export function hostileString(extra: readonly string[] = []): fc.Arbitrary<string> {
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc.constantFrom(
        '',
        '.',
        '..',
        '../',
        '../..',
        '../../etc/passwd',
        '../canary/keep',
        'a/../../b',
        '/etc/passwd',
        './x',
        'x/',
        'a\u0000b',
        '\u0000',
        'pvc-\u0000',
        '%2e%2e%2f',
        '..%2F..%2F',
        'vol\nname',
        'vol\rname',
        'tab\tname',
        'space name',
        '-rf',
        '--help',
        '-v',
        '-c attach',
        '$(reboot)',
        '`id`',
        ';ls',
        '|cat',
        '*',
        '?',
        '[',
        '\\',
        '"',
        "'",
        '%',
        '=',
        ',',
        'x'.repeat(96),
        'x'.repeat(97),
        'y'.repeat(129),
        TEN_KB,
        'ü',
        '\u202e',
        '\u{1f4a9}',
        'CON',
        'lost+found',
        '.tmp',
        'H_0000000000000000000000000000000000000000',
        'pvc-does-not-exist',
        'snapshot-does-not-exist',
        ...extra,
      ),
    },
    { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
    { weight: 2, arbitrary: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$/) },
    {
      weight: 1,
      arbitrary: fc
        .array(fc.constantFrom('..', '.', 'a', '', 'etc', 'passwd'), { maxLength: 6 })
        .map((p) => p.join('/')),
    },
  );
}

/** An int64 as the wire carries it (a decimal string), from the negative end to the positive end. */
export const int64 = fc.oneof(
  fc.constantFrom(
    '0',
    '-1',
    '1',
    '1048576',
    '1048577',
    '-9223372036854775808',
    '9223372036854775807',
    '70368744177664',
    '70368744177665',
  ),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map(String),
  fc.integer({ min: 0, max: 2 ** 40 }).map(String),
);

export const int32 = fc.oneof(
  fc.constantFrom(0, -1, 1, 1000, 1001, 2 ** 31 - 1, -(2 ** 31)),
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
);

const ACCESS_MODES = [
  'UNKNOWN',
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_READER_ONLY',
  'MULTI_NODE_READER_ONLY',
  'MULTI_NODE_SINGLE_WRITER',
  'MULTI_NODE_MULTI_WRITER',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
] as const;

/** A capability: any mode (unknown enum numbers too), mount with any fs type and flags, block, or neither. */
export const capability: fc.Arbitrary<VolumeCapability> = fc
  .record(
    {
      mode: fc.oneof(fc.constantFrom(...ACCESS_MODES), fc.integer({ min: 0, max: 40 })),
      type: fc.constantFrom('mount', 'block', 'none'),
      fsType: fc.oneof(fc.constantFrom('', 'ext4', 'xfs', 'btrfs', 'nfs', 'ext4 ', '../ext4', TEN_KB), hostileString()),
      flags: fc.array(
        fc.oneof(
          fc.constantFrom(
            'ro',
            'rw',
            'noatime',
            'nouuid',
            'bind',
            'remount',
            'loop',
            'exec',
            'x-mount.mkdir',
            'o=1,2',
            '',
          ),
          hostileString(),
        ),
        { maxLength: 4 },
      ),
      group: fc.oneof(fc.constant(''), hostileString()),
    },
    { requiredKeys: ['mode', 'type'] },
  )
  .map(({ mode, type, fsType, flags, group }): VolumeCapability => {
    // An unknown enum number goes on the wire as is: the server must cope with what it cannot name.
    const cap: VolumeCapability = { access_mode: { mode: mode as never } };
    if (type === 'mount')
      cap.mount = { fs_type: fsType ?? '', mount_flags: flags ?? [], volume_mount_group: group ?? '' };
    if (type === 'block') cap.block = {};
    return cap;
  });

/** A parameters map: unknown keys, known keys with good and bad values, Kubernetes' metadata keys. */
export const parameters = fc.dictionary(
  fc.oneof(
    fc.constantFrom(
      'pool',
      'cloneMode',
      'thin',
      'fsType',
      'imageSource',
      'imageChecksum',
      'maxIOPS',
      'maxMBps',
      'qosLevel',
      'cache',
      'csi.storage.k8s.io/pvc/name',
      'csi.storage.k8s.io/pv/name',
      'unknownKey',
      'Pool',
      'pool ',
    ),
    hostileString(),
  ),
  fc.oneof(
    fc.constantFrom(
      'pool0',
      'nopool',
      'linked',
      'full',
      'true',
      'false',
      'ext4',
      'xfs',
      '/etc/passwd',
      '/../../etc/shadow',
      'http://127.0.0.1:1/image',
      'file:///etc/passwd',
      'sha256:00',
      '100',
      '-1',
      '2147483648',
      '99999999999',
      'high',
      'low',
      'readwrite',
    ),
    hostileString(),
  ),
  { maxKeys: 4 },
);

export const stringMap = fc.dictionary(hostileString(), hostileString(), { maxKeys: 3 });

export const topology = fc.record({
  segments: fc.dictionary(fc.oneof(fc.constant('topology.sdshypervisor.io/host'), hostileString()), hostileString(), {
    maxKeys: 2,
  }),
});

export const capacityRange = fc.option(fc.record({ required_bytes: int64, limit_bytes: int64 }, { requiredKeys: [] }), {
  nil: undefined,
});

/**
 * Paths for node requests: hostile segments joined under `base` (climbing out with `..`, `.`, empty and
 * overlong components, NUL, control characters, `symlinks` as the last component), relative paths, empty
 * and overlong ones.
 */
export function nodePath(base: string, symlinks: readonly string[]): fc.Arbitrary<string> {
  const segment = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.constantFrom(
        '..',
        '.',
        '',
        'a',
        'b',
        'staging',
        'pods',
        'x\u0000y',
        'new\nline',
        'tab\t',
        'back\\slash',
        'sp ace',
        'ü',
        '\u{1f4a9}',
      ),
    },
    { weight: 2, arbitrary: fc.stringMatching(/^[a-z]{1,8}$/) },
    { weight: 1, arbitrary: fc.constantFrom('n'.repeat(255), 'n'.repeat(256), 'n'.repeat(1000)) },
  );
  return fc.oneof(
    {
      weight: 6,
      arbitrary: fc
        .tuple(
          fc.array(segment, { minLength: 1, maxLength: 5 }),
          fc.option(fc.constantFrom(...symlinks), { nil: undefined }),
        )
        .map(([segs, link]) => `${base}/${[...segs, ...(link ? [link] : [])].join('/')}`),
    },
    { weight: 2, arbitrary: fc.constantFrom(...symlinks).map((link) => `${base}/${link}`) },
    { weight: 1, arbitrary: fc.array(segment, { maxLength: 4 }).map((segs) => segs.join('/')) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        '',
        '/',
        '//',
        `${base}//x`,
        `${base}/x/`,
        `${base}/${'d'.repeat(5000)}`,
        `${base}/../canary`,
        `${base}/./x`,
      ),
    },
  );
}
