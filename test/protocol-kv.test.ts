// The data-plane key=value codec (src/protocol/kv.ts): what sds_cli prints, parsed tolerantly.
import { describe, expect, it } from 'vitest';
import { encodeKv, parseKv } from '../src/protocol/kv.js';

describe('parseKv', () => {
  it('reads the product format: quoted ret_desc, dev_addr', () => {
    const { fields, garbage } = parseKv('ret_code=0\ndev_addr=/dev/loop3\nret_desc="success"\n');
    expect(fields.get('ret_code')).toBe('0');
    expect(fields.get('dev_addr')).toBe('/dev/loop3');
    expect(fields.get('ret_desc')).toBe('success');
    expect(garbage).toEqual([]);
  });

  it('accepts CRLF, spaces around =, and blank lines', () => {
    const { fields } = parseKv('\r\n  ret_code = 50151401 \r\n\r\nret_desc = "already attached"\r\n');
    expect(fields.get('ret_code')).toBe('50151401');
    expect(fields.get('ret_desc')).toBe('already attached');
  });

  it('keeps the first of repeated keys', () => {
    expect(parseKv('ret_code=0\nret_code=1\n').fields.get('ret_code')).toBe('0');
  });

  it('unquotes only a value quoted on both ends', () => {
    const { fields } = parseKv('a="x\nb="\nc=""\nd="q"r"\n');
    expect(fields.get('a')).toBe('"x');
    expect(fields.get('b')).toBe('"');
    expect(fields.get('c')).toBe('');
    expect(fields.get('d')).toBe('q"r');
  });

  it('collects garbage lines (at most 5, sanitised) and keeps going', () => {
    const { fields, garbage } = parseKv(
      'sds_cli v1.0 banner\n\u001b[31mERROR\u001b[0m\nret_code=50159001\n1=2\n-x\nfoo\nbar\n',
    );
    expect(fields.get('ret_code')).toBe('50159001');
    expect(garbage).toHaveLength(5);
    expect(garbage[1]).toBe('?[31mERROR?[0m');
  });

  it('treats a line with a NUL byte as garbage', () => {
    const { fields, garbage } = parseKv('ret_code=0\u0000\ndev_addr=/dev/loop1\n');
    expect(fields.has('ret_code')).toBe(false);
    expect(fields.get('dev_addr')).toBe('/dev/loop1');
    expect(garbage).toEqual(['ret_code=0?']);
  });

  it('handles empty, truncated and huge output without throwing', () => {
    expect(parseKv('').fields.size).toBe(0);
    expect(parseKv('ret_co').fields.size).toBe(0);
    expect(parseKv('ret_code=5015').fields.get('ret_code')).toBe('5015');
    // Only the first 64 KiB are read: a key after that is not seen.
    const huge = 'x'.repeat(70 * 1024) + '\nret_code=0\n';
    expect(parseKv(huge).fields.has('ret_code')).toBe(false);
  });

  it('reads replacement characters from invalid UTF-8 as ordinary text', () => {
    const text = Buffer.from([0x72, 0x65, 0x74, 0x5f, 0x64, 0x65, 0x73, 0x63, 0x3d, 0xff, 0xfe, 0x0a]).toString('utf8');
    expect(parseKv(text).fields.get('ret_desc')).toBe('\ufffd\ufffd');
  });
});

describe('encodeKv', () => {
  it('encodes a request with its terminating empty line', () => {
    expect(encodeKv({ method: 'attach', volume: 'v1', request_id: undefined }, true).toString()).toBe(
      'method=attach\nvolume=v1\n\n',
    );
    expect(encodeKv({ ret_code: 0 }, false).toString()).toBe('ret_code=0\n');
  });

  it('refuses bad keys and values with control characters', () => {
    expect(() => encodeKv({ 'Bad-Key': 'x' }, true)).toThrow(/bad field/);
    expect(() => encodeKv({ volume: 'v1\nmethod=detach' }, true)).toThrow(/bad field/);
  });
});
