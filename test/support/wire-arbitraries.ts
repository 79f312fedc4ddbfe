// fast-check arbitraries for the VBS and KV wire formats: text biased towards the protocols' own pieces, so
// that parsers and servers get past their first check before the input goes wrong.
import fc from 'fast-check';

/** Pieces of requests, replies and records of both protocols, and characters they must survive. */
const WIRE_TOKENS = [
  '[',
  ']',
  '=',
  ',',
  '%',
  '\n',
  '\r\n',
  '\n\n',
  '\u0000',
  '\u00e9',
  '\u00ff',
  '\t',
  '%2C',
  '%F',
  'retcode=',
  'retcode=0\n',
  'volume0=[',
  'vol_name=',
  '[QUERY_VOLUME_REQ]',
] as const;

/** Up to `maxParts` wire tokens and random strings of up to `maxPartLength`, joined, as UTF-8 bytes. */
export function wireText(maxParts: number, maxPartLength: number): fc.Arbitrary<Buffer> {
  return fc
    .array(fc.oneof(fc.constantFrom(...WIRE_TOKENS), fc.string({ maxLength: maxPartLength })), {
      maxLength: maxParts,
    })
    .map((parts) => Buffer.from(parts.join(''), 'utf8'));
}
