// Validation of rendered Kubernetes objects, as close to the API server as a test can get without one:
//  - the OpenAPI schemas, through the classes of the npm package kubernetes-models (types, required fields,
//    enums) for the built-in kinds; hand-written checks of the few fields the API server requires for the
//    kinds that package does not carry (CRDs, and VolumeAttributesClass which is newer than its schemas);
//  - the rules the API server applies in Go that no schema carries (k8s.io/apimachinery/pkg/util/validation):
//    name formats and lengths, label keys and values, env var names, unique container/volume/port names,
//    selectors matching the pod template, probes naming an existing port, and across objects: Service and
//    monitor selectors selecting some pod template and naming ports those pods have.
// Every function returns a list of problems ("<Kind>/<name>: <path>: <what>"); empty means valid.

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: any;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
// IsEnvVarName: the API server's rule for env var names.
const ENV_VAR_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;

/** A name rule of the API server: at most `max` characters, matching `pattern`, else the `rule` it breaks. */
function nameRule(max: number, pattern: RegExp, rule: string): (value: string) => string | undefined {
  return (value) => {
    if (value.length > max) return `must be no more than ${max} characters (has ${value.length})`;
    if (!pattern.test(value)) return rule;
    return undefined;
  };
}

/** IsDNS1123Label: container, volume and Namespace names. */
export const dns1123LabelProblem = nameRule(
  63,
  DNS1123_LABEL,
  'must be a DNS-1123 label: lowercase alphanumerics and "-", starting and ending alphanumeric',
);

/** IsDNS1123Subdomain: most object names. */
export const dns1123SubdomainProblem = nameRule(
  253,
  DNS1123_SUBDOMAIN,
  'must be a DNS-1123 subdomain: lowercase alphanumerics, "-" and ".", starting and ending alphanumeric',
);

/** IsDNS1035Label: Service names. */
export const dns1035LabelProblem = nameRule(
  63,
  DNS1035_LABEL,
  'must be a DNS-1035 label: lowercase alphanumerics and "-", starting with a letter',
);

/** IsValidPortName (IANA_SVC_NAME): container port names and named probe/target ports. */
export function portNameProblem(value: string): string | undefined {
  if (value.length === 0 || value.length > 15) return `must be 1 to 15 characters (has ${value.length})`;
  if (!/^[-a-z0-9]+$/.test(value)) return 'must contain only lowercase alphanumerics and "-"';
  if (!/[a-z]/.test(value)) return 'must contain at least one letter';
  if (value.includes('--')) return 'must not contain consecutive hyphens';
  if (value.startsWith('-') || value.endsWith('-')) return 'must not begin or end with a hyphen';
  return undefined;
}

/** IsQualifiedName: label and annotation keys ([prefix/]name). */
export function qualifiedNameProblem(key: string): string | undefined {
  const parts = key.split('/');
  if (parts.length > 2) return 'must have at most one "/"';
  const name = parts.at(-1)!;
  if (parts.length === 2) {
    const prefix = parts[0]!;
    if (prefix.length === 0) return 'prefix must not be empty';
    const prefixProblem = dns1123SubdomainProblem(prefix);
    if (prefixProblem) return `prefix ${prefixProblem}`;
  }
  if (name.length === 0 || name.length > 63) return `name part must be 1 to 63 characters (has ${name.length})`;
  if (!QUALIFIED_NAME.test(name))
    return 'name part must be alphanumerics, "-", "_" or ".", starting and ending alphanumeric';
  return undefined;
}

/** IsValidLabelValue. */
export function labelValueProblem(value: unknown): string | undefined {
  if (typeof value !== 'string') return `must be a string (is ${typeof value})`;
  if (value.length > 63) return `must be no more than 63 characters (has ${value.length})`;
  if (!LABEL_VALUE.test(value))
    return 'must be empty or alphanumerics, "-", "_" or ".", starting and ending alphanumeric';
  return undefined;
}

export function envVarNameProblem(value: string): string | undefined {
  if (!ENV_VAR_NAME.test(value))
    return 'must consist of alphabetic characters, digits, "_", "-" or ".", and must not start with a digit';
  if (value === '.' || value === '..' || value.startsWith('..')) return 'must not be "." or ".." or start with ".."';
  return undefined;
}

// Built-in kinds and the kubernetes-models module that has their class.
const MODEL_MODULES: Record<string, string> = {
  v1: 'kubernetes-models/v1',
  'apps/v1': 'kubernetes-models/apps/v1',
  'policy/v1': 'kubernetes-models/policy/v1',
  'rbac.authorization.k8s.io/v1': 'kubernetes-models/rbac.authorization.k8s.io/v1',
  'storage.k8s.io/v1': 'kubernetes-models/storage.k8s.io/v1',
};

// Kinds kubernetes-models has no schema for: the fields their CRD (or, for VolumeAttributesClass, the API
// server) requires, and the allowed values of enums.
type FieldRule = {
  path: string;
  type: 'string' | 'object' | 'array' | 'boolean' | 'integer';
  required?: boolean;
  oneOf?: string[];
};
// The snapshot classes (VolumeSnapshotClass, VolumeGroupSnapshotClass of each version) share their fields.
const SNAPSHOT_CLASS_FIELDS: FieldRule[] = [
  { path: 'driver', type: 'string', required: true },
  { path: 'deletionPolicy', type: 'string', required: true, oneOf: ['Delete', 'Retain'] },
  { path: 'parameters', type: 'object' },
];
/** A Prometheus operator monitor: a spec with a selector and its list of endpoints under `endpoints`. */
const monitorFields = (endpoints: string): FieldRule[] => [
  { path: 'spec', type: 'object', required: true },
  { path: 'spec.selector', type: 'object', required: true },
  { path: `spec.${endpoints}`, type: 'array', required: true },
];
const HAND_SCHEMAS: Record<string, FieldRule[]> = {
  'storage.k8s.io/v1/VolumeAttributesClass': [
    { path: 'driverName', type: 'string', required: true },
    { path: 'parameters', type: 'object' },
  ],
  'snapshot.storage.k8s.io/v1/VolumeSnapshotClass': SNAPSHOT_CLASS_FIELDS,
  'groupsnapshot.storage.k8s.io/v1/VolumeGroupSnapshotClass': SNAPSHOT_CLASS_FIELDS,
  'groupsnapshot.storage.k8s.io/v1beta2/VolumeGroupSnapshotClass': SNAPSHOT_CLASS_FIELDS,
  'monitoring.coreos.com/v1/PodMonitor': monitorFields('podMetricsEndpoints'),
  'monitoring.coreos.com/v1/ServiceMonitor': monitorFields('endpoints'),
  'cbt.storage.k8s.io/v1beta1/SnapshotMetadataService': [
    { path: 'spec', type: 'object', required: true },
    { path: 'spec.address', type: 'string', required: true },
    { path: 'spec.audience', type: 'string', required: true },
    { path: 'spec.caCert', type: 'string', required: true },
  ],
};

const CLUSTER_SCOPED = new Set([
  'Namespace',
  'CSIDriver',
  'ClusterRole',
  'ClusterRoleBinding',
  'StorageClass',
  'VolumeAttributesClass',
  'VolumeSnapshotClass',
  'VolumeGroupSnapshotClass',
  'SnapshotMetadataService',
]);

function id(object: K8sObject): string {
  return `${object.kind}/${object.metadata?.name}`;
}

function typeOf(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (Number.isInteger(value)) return 'integer';
  return typeof value;
}

function at(object: any, path: string): unknown {
  return path
    .split('.')
    .reduce((value, key) => (value === undefined || value === null ? undefined : value[key]), object);
}

/** The OpenAPI schema of the object's kind (kubernetes-models), or the hand-written rules for other kinds. */
export async function schemaProblems(object: K8sObject): Promise<string[]> {
  const handRules = HAND_SCHEMAS[`${object.apiVersion}/${object.kind}`];
  if (handRules) {
    const problems: string[] = [];
    for (const rule of handRules) {
      const value = at(object, rule.path);
      if (value === undefined || value === null) {
        if (rule.required) problems.push(`${id(object)}: ${rule.path}: required`);
        continue;
      }
      const actual = typeOf(value);
      if (actual !== rule.type && !(rule.type === 'object' && actual === 'object'))
        problems.push(`${id(object)}: ${rule.path}: must be ${rule.type} (is ${actual})`);
      else if (rule.oneOf && !rule.oneOf.includes(value as string))
        problems.push(`${id(object)}: ${rule.path}: must be one of ${rule.oneOf.join(', ')}`);
    }
    if (object.kind === 'VolumeAttributesClass' || object.kind.endsWith('SnapshotClass')) {
      for (const [key, value] of Object.entries((object.parameters ?? {}) as Record<string, unknown>)) {
        if (typeof value !== 'string') problems.push(`${id(object)}: parameters.${key}: must be a string`);
      }
    }
    return problems;
  }
  const modulePath = MODEL_MODULES[object.apiVersion];
  if (!modulePath) return [`${id(object)}: no schema known for ${object.apiVersion} ${object.kind}`];
  const models = (await import(modulePath)) as Record<string, new (data: unknown) => { validate(): void }>;
  const Model = models[object.kind];
  if (!Model) return [`${id(object)}: ${modulePath} has no kind ${object.kind}`];
  try {
    new Model(object).validate();
    return [];
  } catch (error) {
    const errors = (error as { errors?: { instancePath: string; message?: string }[] }).errors;
    if (!errors) return [`${id(object)}: ${(error as Error).message}`];
    return errors.map((e) => `${id(object)}: ${e.instancePath || '/'}: ${e.message ?? 'invalid'}`);
  }
}

function metadataProblems(object: K8sObject, problems: string[]): void {
  const name = object.metadata?.name;
  if (typeof name !== 'string' || name === '') {
    problems.push(`${id(object)}: metadata.name: required`);
    return;
  }
  // Services and Namespaces have the stricter label rule; every other kind here is a DNS-1123 subdomain.
  const nameProblem =
    object.kind === 'Service'
      ? dns1035LabelProblem(name)
      : object.kind === 'Namespace'
        ? dns1123LabelProblem(name)
        : dns1123SubdomainProblem(name);
  if (nameProblem) problems.push(`${id(object)}: metadata.name: ${nameProblem}`);
  if (CLUSTER_SCOPED.has(object.kind)) {
    if (object.metadata.namespace !== undefined)
      problems.push(`${id(object)}: metadata.namespace: set on a cluster-scoped kind`);
  } else if (object.metadata.namespace !== undefined) {
    const nsProblem = dns1123LabelProblem(object.metadata.namespace);
    if (nsProblem) problems.push(`${id(object)}: metadata.namespace: ${nsProblem}`);
  }
  labelMapProblems(`${id(object)}: metadata.labels`, object.metadata.labels, problems);
  for (const key of Object.keys(object.metadata.annotations ?? {})) {
    const keyProblem = qualifiedNameProblem(key);
    if (keyProblem) problems.push(`${id(object)}: metadata.annotations[${key}]: key ${keyProblem}`);
  }
}

function labelMapProblems(where: string, labels: Record<string, unknown> | undefined, problems: string[]): void {
  for (const [key, value] of Object.entries(labels ?? {})) {
    const keyProblem = qualifiedNameProblem(key);
    if (keyProblem) problems.push(`${where}[${key}]: key ${keyProblem}`);
    const valueProblem = labelValueProblem(value);
    if (valueProblem) problems.push(`${where}[${key}]: value ${valueProblem}`);
  }
}

function duplicates(values: string[]): string[] {
  return [...new Set(values.filter((value, index) => values.indexOf(value) !== index))];
}

type PodTemplate = { metadata?: { labels?: Record<string, string> }; spec: any };

function podTemplateOf(object: K8sObject): PodTemplate | undefined {
  if (['Deployment', 'DaemonSet', 'StatefulSet', 'ReplicaSet', 'Job'].includes(object.kind))
    return object.spec?.template;
  return undefined;
}

function probePortProblems(where: string, probe: any, portNames: Set<string>, problems: string[]): void {
  if (!probe) return;
  for (const handler of ['httpGet', 'tcpSocket', 'grpc'] as const) {
    const port = probe[handler]?.port;
    if (typeof port !== 'string') continue;
    const nameProblem = portNameProblem(port);
    if (nameProblem) problems.push(`${where}.${handler}.port: ${nameProblem}`);
    else if (!portNames.has(port))
      problems.push(`${where}.${handler}.port: names no port of the container ("${port}")`);
  }
}

function podSpecProblems(where: string, spec: any, problems: string[]): void {
  const allContainers = [...(spec.initContainers ?? []), ...(spec.containers ?? [])] as any[];
  const volumeNames = ((spec.volumes ?? []) as any[]).map((v) => v.name as string);
  for (const name of duplicates(allContainers.map((c) => c.name)))
    problems.push(`${where}.containers: duplicate name "${name}"`);
  for (const name of duplicates(volumeNames)) problems.push(`${where}.volumes: duplicate name "${name}"`);
  for (const [index, volume] of ((spec.volumes ?? []) as any[]).entries()) {
    const problem = dns1123LabelProblem(volume.name);
    if (problem) problems.push(`${where}.volumes[${index}].name "${volume.name}": ${problem}`);
  }
  const podPortNames: string[] = [];
  for (const c of allContainers) {
    const at = `${where}.containers[${c.name}]`;
    const nameProblem = dns1123LabelProblem(c.name);
    if (nameProblem) problems.push(`${at}.name: ${nameProblem}`);
    const portNames = new Set<string>();
    for (const [index, port] of ((c.ports ?? []) as any[]).entries()) {
      if (port.name === undefined) continue;
      const problem = portNameProblem(port.name);
      if (problem) problems.push(`${at}.ports[${index}].name "${port.name}": ${problem}`);
      if (portNames.has(port.name)) problems.push(`${at}.ports[${index}].name: duplicate "${port.name}"`);
      portNames.add(port.name);
      podPortNames.push(port.name);
      if (spec.hostNetwork && port.hostPort !== undefined && port.hostPort !== port.containerPort)
        problems.push(`${at}.ports[${index}].hostPort: must equal containerPort with hostNetwork`);
    }
    for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe'])
      probePortProblems(`${at}.${probe}`, c[probe], portNames, problems);
    for (const [index, env] of ((c.env ?? []) as any[]).entries()) {
      const problem = envVarNameProblem(env.name);
      if (problem) problems.push(`${at}.env[${index}].name "${env.name}": ${problem}`);
    }
    for (const name of duplicates(((c.env ?? []) as any[]).map((e) => e.name)))
      problems.push(`${at}.env: duplicate name "${name}"`);
    for (const [index, mount] of ((c.volumeMounts ?? []) as any[]).entries()) {
      if (!volumeNames.includes(mount.name))
        problems.push(`${at}.volumeMounts[${index}].name: names no volume of the pod ("${mount.name}")`);
    }
    for (const name of duplicates(((c.volumeMounts ?? []) as any[]).map((m) => m.mountPath)))
      problems.push(`${at}.volumeMounts: duplicate mountPath "${name}"`);
  }
  // The API server warns on duplicate port names across containers; Services and monitors could not tell them apart.
  for (const name of duplicates(podPortNames)) problems.push(`${where}: port name "${name}" used by two containers`);
}

function selects(
  selector: { matchLabels?: Record<string, string>; matchExpressions?: any[] } | undefined,
  labels: Record<string, string>,
): boolean {
  if (!selector) return false;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) if (labels[key] !== value) return false;
  for (const expression of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, expression.key);
    const value = labels[expression.key];
    if (expression.operator === 'In' && !(has && expression.values.includes(value))) return false;
    if (expression.operator === 'NotIn' && has && expression.values.includes(value)) return false;
    if (expression.operator === 'Exists' && !has) return false;
    if (expression.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

function selectorProblems(where: string, selector: any, problems: string[]): void {
  if (!selector) return;
  labelMapProblems(`${where}.matchLabels`, selector.matchLabels, problems);
  if (Object.keys(selector.matchLabels ?? {}).length === 0 && (selector.matchExpressions ?? []).length === 0)
    problems.push(`${where}: empty selector selects everything`);
}

/** The API server's rules for one object, independent of the others. */
export function objectRuleProblems(object: K8sObject): string[] {
  const problems: string[] = [];
  metadataProblems(object, problems);
  const template = podTemplateOf(object);
  if (template) {
    const where = `${id(object)}: spec.template.spec`;
    labelMapProblems(`${id(object)}: spec.template.metadata.labels`, template.metadata?.labels, problems);
    podSpecProblems(where, template.spec, problems);
    selectorProblems(`${id(object)}: spec.selector`, object.spec.selector, problems);
    if (!selects(object.spec.selector, template.metadata?.labels ?? {}))
      problems.push(`${id(object)}: spec.selector: does not match the pod template's labels`);
  }
  if (object.kind === 'Service') {
    for (const [index, port] of ((object.spec?.ports ?? []) as any[]).entries()) {
      if (port.name !== undefined) {
        const problem = dns1123LabelProblem(port.name);
        if (problem) problems.push(`${id(object)}: spec.ports[${index}].name: ${problem}`);
      }
      if (typeof port.targetPort === 'string') {
        const problem = portNameProblem(port.targetPort);
        if (problem) problems.push(`${id(object)}: spec.ports[${index}].targetPort: ${problem}`);
      }
    }
    labelMapProblems(`${id(object)}: spec.selector`, object.spec?.selector, problems);
  }
  if (object.kind === 'PodDisruptionBudget')
    selectorProblems(`${id(object)}: spec.selector`, object.spec?.selector, problems);
  if (object.kind === 'CSIDriver') {
    const problem = dns1123SubdomainProblem(object.metadata.name);
    if (!problem && object.metadata.name.length > 63)
      problems.push(`${id(object)}: metadata.name: a CSI driver name must be no more than 63 characters`);
  }
  return problems;
}

/** Rules across the objects of one release: selectors that select some pod template, ports those pods have. */
export function crossObjectProblems(objects: K8sObject[]): string[] {
  const problems: string[] = [];
  const pods = objects.flatMap((o) => {
    const template = podTemplateOf(o);
    return template ? [{ owner: o, labels: template.metadata?.labels ?? {}, spec: template.spec }] : [];
  });
  const portNamesOf = (pod: (typeof pods)[number]): Set<string> =>
    new Set(
      [...(pod.spec.initContainers ?? []), ...(pod.spec.containers ?? [])].flatMap((c: any) =>
        (c.ports ?? []).map((p: any) => p.name),
      ),
    );
  const selectedPods = (selector: any) => pods.filter((pod) => selects(selector, pod.labels));
  for (const object of objects) {
    if (object.kind === 'PodDisruptionBudget' && selectedPods(object.spec?.selector).length === 0) {
      problems.push(`${id(object)}: spec.selector: selects no pod template of the release`);
    }
    if (object.kind === 'Service' && object.spec?.selector) {
      const selected = selectedPods({ matchLabels: object.spec.selector });
      if (selected.length === 0) problems.push(`${id(object)}: spec.selector: selects no pod template of the release`);
      for (const port of (object.spec.ports ?? []) as any[]) {
        if (typeof port.targetPort === 'string' && selected.some((pod) => !portNamesOf(pod).has(port.targetPort))) {
          problems.push(`${id(object)}: targetPort "${port.targetPort}" is not a port of every selected pod`);
        }
      }
    }
    if (object.kind === 'PodMonitor') {
      const selected = selectedPods(object.spec?.selector);
      if (selected.length === 0) problems.push(`${id(object)}: spec.selector: selects no pod template of the release`);
      for (const endpoint of (object.spec?.podMetricsEndpoints ?? []) as any[]) {
        if (!selected.some((pod) => portNamesOf(pod).has(endpoint.port)))
          problems.push(`${id(object)}: endpoint port "${endpoint.port}" is a port of no selected pod`);
      }
    }
    if (object.kind === 'ServiceMonitor') {
      const services = objects.filter(
        (o) => o.kind === 'Service' && selects(object.spec?.selector, o.metadata.labels ?? {}),
      );
      if (services.length === 0) problems.push(`${id(object)}: spec.selector: selects no Service of the release`);
      for (const endpoint of (object.spec?.endpoints ?? []) as any[]) {
        if (!services.some((s) => (s.spec?.ports ?? []).some((p: any) => p.name === endpoint.port)))
          problems.push(`${id(object)}: endpoint port "${endpoint.port}" is a port of no selected Service`);
      }
    }
  }
  for (const key of duplicates(
    objects.map(
      (o) =>
        `${o.apiVersion.split('/').slice(0, -1).join('/')}/${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`,
    ),
  )) {
    problems.push(`${key}: defined twice`);
  }
  return problems;
}

/** Every problem of a set of objects: schemas, per-object rules and cross-object rules. */
export async function validateObjects(objects: K8sObject[]): Promise<string[]> {
  const problems: string[] = [];
  for (const object of objects) {
    problems.push(...(await schemaProblems(object)), ...objectRuleProblems(object));
  }
  problems.push(...crossObjectProblems(objects));
  return problems;
}
