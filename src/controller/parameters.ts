// StorageClass parameters, VolumeSnapshotClass parameters and mutable parameters (VolumeAttributesClass),
// validated with zod. An unknown key or a bad value is INVALID_ARGUMENT naming the key.
import { z } from 'zod';
import type { CachePolicy, CloneType, IoPriority, Qos } from '../sds/backend.js';
import { isValidName } from '../protocol/vbs.js';
import { invalidArgument } from '../server/errors.js';

/** Keys external-provisioner / external-snapshotter add with --extra-create-metadata; accepted, not passed on. */
export const KUBERNETES_PREFIX = 'csi.storage.k8s.io/';

const MAX_QOS_LIMIT = 2_147_483_647;

const nonNegativeInteger = z
  .string()
  .regex(/^\d{1,10}$/, 'must be a non-negative whole number')
  .transform(Number)
  .pipe(z.number().int().max(MAX_QOS_LIMIT, `must be at most ${MAX_QOS_LIMIT}`));

const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `must be one of ${values.join(', ')}` });

const QOS_PRIORITY = { high: 3, normal: 2, low: 1 } as const satisfies Record<string, IoPriority>;

const mutableShape = {
  maxIOPS: nonNegativeInteger.optional(),
  maxMBps: nonNegativeInteger.optional(),
  qosLevel: oneOf(['high', 'normal', 'low']).optional(),
  cache: oneOf(['none', 'read', 'readwrite']).optional(),
};

const imageSource = z
  .string()
  .max(4096, 'must be at most 4096 characters')
  .refine((v) => !/[\u0000-\u001f\u007f]/.test(v), 'must not contain control characters')
  .refine((v) => (v.startsWith('/') && !v.split('/').includes('..')) || /^https?:\/\/[^/\s]+(\/\S*)?$/.test(v), {
    message: 'must be an absolute path without ".." or an http(s) URL',
  });

const volumeSchema = z.strictObject({
  pool: z
    .string()
    .refine(isValidName, 'must be 1-96 characters of [A-Za-z0-9_.-], starting with a letter or digit')
    .optional(),
  cloneMode: oneOf(['linked', 'full']).optional(),
  thin: oneOf(['true', 'false'])
    .transform((v) => v === 'true')
    .optional(),
  fsType: oneOf(['ext4', 'xfs']).optional(),
  imageSource: imageSource.optional(),
  imageChecksum: z
    .string()
    .regex(/^(sha256:[0-9a-fA-F]{64}|md5:[0-9a-fA-F]{32})$/, 'must be sha256:<64 hex digits> or md5:<32 hex digits>')
    .optional(),
  allowPvcImageSource: oneOf(['true', 'false'])
    .transform((v) => v === 'true')
    .optional(),
  ...mutableShape,
});

const mutableSchema = z.strictObject(mutableShape);

/** Volume settings the CO may change after creation (ControllerModifyVolume). */
export interface MutableSettings {
  qos: Partial<Qos>;
  cachePolicy?: CachePolicy;
}

export interface VolumeParameters extends MutableSettings {
  poolId?: string;
  cloneMode?: CloneType;
  /** thin provisioning; the default is thin */
  thin: boolean;
  fsType?: 'ext4' | 'xfs';
  image?: { url: string; checksum?: string };
  /** whether a claim's image-source annotation is honoured (src/controller/images.ts); default false */
  allowPvcImageSource: boolean;
}

function describeIssues(what: string, error: z.ZodError): string {
  return error.issues
    .map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        return `${what}: unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
      }
      return `${what}.${issue.path.join('.')}: ${issue.message}`;
    })
    .join('; ');
}

function withoutKubernetesKeys(params: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(params)) if (!k.startsWith(KUBERNETES_PREFIX)) out[k] = v;
  return out;
}

function mutableSettings(p: z.output<typeof mutableSchema>): MutableSettings {
  const qos: Partial<Qos> = {};
  if (p.maxIOPS !== undefined) qos.maxIops = p.maxIOPS;
  if (p.maxMBps !== undefined) qos.maxMBps = p.maxMBps;
  if (p.qosLevel !== undefined) qos.priority = QOS_PRIORITY[p.qosLevel];
  return { qos, ...(p.cache !== undefined ? { cachePolicy: p.cache } : {}) };
}

/** Parses `mutable_parameters` (CreateVolume field 8, ControllerModifyVolume). */
export function parseMutableParameters(params: Record<string, string>, field = 'mutable_parameters'): MutableSettings {
  const result = mutableSchema.safeParse(params);
  if (!result.success) throw invalidArgument(describeIssues(field, result.error));
  return mutableSettings(result.data);
}

/**
 * Parses StorageClass `parameters`; `mutable` (already parsed mutable_parameters) takes precedence over them,
 * as the spec requires.
 */
export function parseVolumeParameters(params: Record<string, string>, mutable?: MutableSettings): VolumeParameters {
  const result = volumeSchema.safeParse(withoutKubernetesKeys(params));
  if (!result.success) throw invalidArgument(describeIssues('parameters', result.error));
  const p = result.data;
  if (p.imageChecksum !== undefined && p.imageSource === undefined) {
    throw invalidArgument('parameters.imageChecksum: needs parameters.imageSource');
  }
  const fromParams = mutableSettings(p);
  const cachePolicy = mutable?.cachePolicy ?? fromParams.cachePolicy;
  return {
    qos: { ...fromParams.qos, ...mutable?.qos },
    ...(cachePolicy !== undefined ? { cachePolicy } : {}),
    ...(p.pool !== undefined ? { poolId: p.pool } : {}),
    ...(p.cloneMode !== undefined ? { cloneMode: p.cloneMode } : {}),
    thin: p.thin ?? true,
    ...(p.fsType !== undefined ? { fsType: p.fsType } : {}),
    ...(p.imageSource !== undefined
      ? { image: { url: p.imageSource, ...(p.imageChecksum ? { checksum: p.imageChecksum } : {}) } }
      : {}),
    allowPvcImageSource: p.allowPvcImageSource ?? false,
  };
}

/** VolumeSnapshotClass parameters: none of our own yet; Kubernetes' metadata keys are accepted. */
export function parseSnapshotParameters(params: Record<string, string>): void {
  const unknown = Object.keys(withoutKubernetesKeys(params));
  if (unknown.length > 0) {
    throw invalidArgument(
      `parameters: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}`,
    );
  }
}
