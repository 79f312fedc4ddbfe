// Checks of CO-supplied mount flags (VolumeCapability.MountVolume.mount_flags) before they reach mount(8).
// Flags may carry secrets: problems name the flag's position and option name, never its value.

/** Options that change what mount(8) does rather than how the filesystem behaves: never from a CO. */
const FORBIDDEN = new Set([
  'remount',
  'bind',
  'rbind',
  'move',
  'loop',
  'offset',
  'sizelimit',
  'encryption',
  'helper',
  'user',
  'users',
  'nouser',
  'owner',
  'group',
  'shared',
  'rshared',
  'private',
  'rprivate',
  'slave',
  'rslave',
  'unbindable',
  'runbindable',
]);

/** SELinux context options, whose quoted values may hold commas (`context="system_u:object_r:t:s0:c1,c2"`). */
const CONTEXT_OPTIONS = new Set(['context', 'fscontext', 'defcontext', 'rootcontext']);

const MAX_TOTAL_BYTES = 4096;

export function optionName(flag: string): string {
  const at = flag.indexOf('=');
  return at < 0 ? flag : flag.slice(0, at);
}

/** The first problem with `flags`, or undefined when all may be passed to mount(8). */
export function mountFlagsProblem(flags: readonly string[]): string | undefined {
  const total = flags.reduce((n, f) => n + Buffer.byteLength(f, 'utf8'), 0);
  if (total > MAX_TOTAL_BYTES) return `mount_flags hold ${total} bytes; at most ${MAX_TOTAL_BYTES} are allowed`;
  for (const [i, flag] of flags.entries()) {
    const where = `mount_flags[${i}]`;
    if (flag === '') return `${where} is empty`;
    if (/[\u0000-\u0020\u007f]/.test(flag)) return `${where} contains whitespace or a control character`;
    if (flag.startsWith('-')) return `${where} starts with '-'`;
    const name = optionName(flag);
    const lower = name.toLowerCase();
    const value = flag.slice(name.length + 1);
    if (flag.includes(',')) {
      // One flag must stay one option: a comma would smuggle more in, except inside a quoted SELinux context.
      const quotedContext = CONTEXT_OPTIONS.has(lower) && /^"[^"]*"$/.test(value);
      if (!quotedContext) return `${where} contains ','; give one option per flag`;
    }
    if (!/^[A-Za-z0-9_.:+-]+$/.test(name)) return `${where} has no valid option name`;
    if (FORBIDDEN.has(lower) || lower.startsWith('make-') || lower.startsWith('x-')) {
      return `${where} (${name}) changes how mount(8) works and may not be given`;
    }
    if (value.includes('"') && !(CONTEXT_OPTIONS.has(lower) && /^"[^"]*"$/.test(value)))
      return `${where} (${name}) contains a stray '"'`;
  }
  return undefined;
}
