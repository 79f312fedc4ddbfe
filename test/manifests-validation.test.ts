// Every object the chart renders, for the default values and each documented variant, and every file of
// deploy/kubernetes, validated as the API server would: the OpenAPI schemas (kubernetes-models) and the rules
// schemas don't carry (test/support/k8s-validation.ts). `helm lint` and `helm template` check neither, so a
// port name of 16 characters once passed every other test and failed `helm install` on a real cluster.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runHelm } from '../scripts/helm.mjs';
import { chartDir, manifestsDir } from '../scripts/render-manifests.mjs';
import {
  dns1035LabelProblem,
  dns1123LabelProblem,
  dns1123SubdomainProblem,
  envVarNameProblem,
  labelValueProblem,
  objectRuleProblems,
  portNameProblem,
  qualifiedNameProblem,
  schemaProblems,
  validateObjects,
  type K8sObject,
} from './support/k8s-validation.js';
import { CA, parseObjects } from './support/rendered.js';

const NAMESPACE = 'storage-system';
// Helm's own limit on release names; the chart must fit every name it derives from one this long.
const LONGEST_RELEASE = 'the-longest-release-name-helm-allows-'.padEnd(53, 'x');

async function render(release: string, args: string[]): Promise<K8sObject[]> {
  const { code, stdout, stderr } = await runHelm([
    'template',
    release,
    chartDir,
    '--namespace',
    NAMESPACE,
    '--kube-version',
    '1.34.0',
    ...args,
  ]);
  expect(stderr).toBe('');
  expect(code).toBe(0);
  return parseObjects(stdout);
}

const ALL_APIS = [
  '--api-versions',
  'snapshot.storage.k8s.io/v1',
  '--api-versions',
  'groupsnapshot.storage.k8s.io/v1',
  '--api-versions',
  'monitoring.coreos.com/v1',
  '--api-versions',
  'cbt.storage.k8s.io/v1beta1',
];
const EVERYTHING_ON = [
  ...ALL_APIS,
  '--set',
  'groupSnapshot.enabled=true',
  '--set',
  'monitoring.podMonitor.enabled=true',
  '--set',
  'monitoring.serviceMonitor.enabled=true',
  '--set',
  'snapshotMetadata.enabled=true',
  '--set',
  'snapshotMetadata.tls.secretName=sds-snapshot-metadata-tls',
  '--set',
  `snapshotMetadata.tls.caCert=${CA}`,
  '--set',
  'backend.tokenSecret.create=true',
  '--set',
  'backend.tokenSecret.token=t0ken',
];

const VARIANTS: { name: string; release: string; args: string[]; kinds: string[] }[] = [
  {
    name: 'default values',
    release: 'sds',
    args: [],
    kinds: ['Deployment', 'DaemonSet', 'CSIDriver', 'StorageClass', 'VolumeAttributesClass'],
  },
  {
    name: 'snapshot and group-snapshot APIs present',
    release: 'sds',
    args: [
      '--api-versions',
      'snapshot.storage.k8s.io/v1',
      '--api-versions',
      'groupsnapshot.storage.k8s.io/v1',
      '--set',
      'groupSnapshot.enabled=true',
    ],
    kinds: ['VolumeSnapshotClass', 'VolumeGroupSnapshotClass'],
  },
  {
    name: 'group snapshots on the v1beta2 API',
    release: 'sds',
    args: [
      '--api-versions',
      'groupsnapshot.storage.k8s.io/v1beta2',
      '--set',
      'groupSnapshot.enabled=true',
      '--set',
      'groupSnapshot.apiVersion=groupsnapshot.storage.k8s.io/v1beta2',
    ],
    kinds: ['VolumeGroupSnapshotClass'],
  },
  {
    name: 'monitors on',
    release: 'sds',
    args: [
      '--api-versions',
      'monitoring.coreos.com/v1',
      '--set',
      'monitoring.podMonitor.enabled=true',
      '--set',
      'monitoring.serviceMonitor.enabled=true',
    ],
    kinds: ['PodMonitor', 'ServiceMonitor', 'Service'],
  },
  {
    name: 'snapshot metadata, token Secret, everything on',
    release: 'sds',
    args: EVERYTHING_ON,
    kinds: ['SnapshotMetadataService', 'Service', 'Secret', 'PodMonitor'],
  },
  {
    name: `a ${LONGEST_RELEASE.length}-character release name, everything on`,
    release: LONGEST_RELEASE,
    args: EVERYTHING_ON,
    kinds: ['Service', 'ServiceMonitor', 'SnapshotMetadataService'],
  },
  {
    name: 'a release name containing the chart name',
    release: 'sdshypervisor-csi',
    args: EVERYTHING_ON,
    kinds: ['Service'],
  },
];

describe('the rules the API server applies and schemas do not carry', () => {
  it('port names: IANA_SVC_NAME', () => {
    for (const good of ['metrics', 'healthz', 'http-provision', 'http-snapshot', 'a1', 'x'.repeat(15)])
      expect(portNameProblem(good), good).toBeUndefined();
    expect(portNameProblem('http-provisioner')).toMatch(/1 to 15 characters/);
    expect(portNameProblem('http-snapshotter')).toMatch(/1 to 15 characters/);
    expect(portNameProblem('')).toMatch(/1 to 15/);
    expect(portNameProblem('Metrics')).toMatch(/lowercase/);
    expect(portNameProblem('8080')).toMatch(/at least one letter/);
    expect(portNameProblem('http--x')).toMatch(/consecutive/);
    expect(portNameProblem('-http')).toMatch(/begin or end/);
    expect(portNameProblem('http-')).toMatch(/begin or end/);
  });

  it('names: DNS-1123 label and subdomain, DNS-1035 label', () => {
    expect(dns1123LabelProblem('liveness-probe')).toBeUndefined();
    expect(dns1123LabelProblem('a'.repeat(64))).toMatch(/63/);
    expect(dns1123LabelProblem('Socket_dir')).toMatch(/DNS-1123 label/);
    expect(dns1123LabelProblem('a.b')).toMatch(/DNS-1123 label/);
    expect(dns1123SubdomainProblem('csi.sdshypervisor.io')).toBeUndefined();
    expect(dns1123SubdomainProblem('a'.repeat(254))).toMatch(/253/);
    expect(dns1123SubdomainProblem('-x')).toMatch(/subdomain/);
    expect(dns1035LabelProblem('sds-controller-metrics')).toBeUndefined();
    expect(dns1035LabelProblem('1sds')).toMatch(/starting with a letter/);
    expect(dns1035LabelProblem('s'.repeat(64))).toMatch(/63/);
  });

  it('label keys and values, env var names', () => {
    expect(qualifiedNameProblem('app.kubernetes.io/name')).toBeUndefined();
    expect(qualifiedNameProblem('a/b/c')).toMatch(/at most one/);
    expect(qualifiedNameProblem(`x/${'n'.repeat(64)}`)).toMatch(/1 to 63/);
    expect(qualifiedNameProblem('Bad_Prefix/x')).toMatch(/prefix/);
    expect(labelValueProblem('')).toBeUndefined();
    expect(labelValueProblem('0.1.0')).toBeUndefined();
    expect(labelValueProblem('v'.repeat(64))).toMatch(/63/);
    expect(labelValueProblem('a b')).toMatch(/alphanumerics/);
    expect(labelValueProblem('-a')).toMatch(/alphanumerics/);
    expect(labelValueProblem(1)).toMatch(/string/);
    expect(envVarNameProblem('HUAWEISDSHYPERVISORCLI_PATH')).toBeUndefined();
    expect(envVarNameProblem('1ABC')).toMatch(/must not start with a digit/);
    expect(envVarNameProblem('A B')).toMatch(/alphabetic/);
  });

  it('pod templates: selector, probe ports, unique names, mounts naming volumes', () => {
    const deployment: K8sObject = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'd', namespace: 'ns' },
      spec: {
        selector: { matchLabels: { app: 'x' } },
        template: {
          metadata: { labels: { app: 'y' } },
          spec: {
            volumes: [{ name: 'data', emptyDir: {} }],
            containers: [
              {
                name: 'a',
                image: 'i',
                ports: [{ name: 'http-provisioner', containerPort: 1 }],
                livenessProbe: { httpGet: { port: 'healthz', path: '/' } },
                volumeMounts: [{ name: 'other', mountPath: '/x' }],
                env: [{ name: '9LIVES', value: '' }],
              },
              { name: 'a', image: 'i' },
            ],
          },
        },
      },
    };
    const problems = objectRuleProblems(deployment).join('\n');
    expect(problems).toContain('ports[0].name "http-provisioner": must be 1 to 15 characters');
    expect(problems).toContain('livenessProbe.httpGet.port: names no port of the container ("healthz")');
    expect(problems).toContain("spec.selector: does not match the pod template's labels");
    expect(problems).toContain('containers: duplicate name "a"');
    expect(problems).toContain('volumeMounts[0].name: names no volume of the pod ("other")');
    expect(problems).toContain('env[0].name "9LIVES"');
  });

  it('schemas: kubernetes-models for built-in kinds, required fields for the others', async () => {
    const bad = await schemaProblems({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'd' },
      spec: { selector: {}, template: { spec: { containers: [{ name: 'a', ports: [{ containerPort: 'http' }] }] } } },
    });
    expect(bad.join('\n')).toContain('containerPort: must be integer');
    expect(
      await schemaProblems({
        apiVersion: 'snapshot.storage.k8s.io/v1',
        kind: 'VolumeSnapshotClass',
        metadata: { name: 'c' },
        driver: 'd',
        deletionPolicy: 'Keep',
      }),
    ).toEqual(['VolumeSnapshotClass/c: deletionPolicy: must be one of Delete, Retain']);
    expect(
      await schemaProblems({
        apiVersion: 'storage.k8s.io/v1',
        kind: 'VolumeAttributesClass',
        metadata: { name: 'c' },
        parameters: { maxIOPS: 5 },
      }),
    ).toEqual([
      'VolumeAttributesClass/c: driverName: required',
      'VolumeAttributesClass/c: parameters.maxIOPS: must be a string',
    ]);
    expect(await schemaProblems({ apiVersion: 'example.com/v1', kind: 'Thing', metadata: { name: 't' } })).toEqual([
      'Thing/t: no schema known for example.com/v1 Thing',
    ]);
  });
});

describe('the chart renders only objects the API server accepts', () => {
  for (const variant of VARIANTS) {
    it(variant.name, async () => {
      const objects = await render(variant.release, variant.args);
      const kinds = new Set(objects.map((o) => o.kind));
      for (const kind of variant.kinds) expect(kinds, `renders a ${kind}`).toContain(kind);
      expect(await validateObjects(objects)).toEqual([]);
    });
  }

  it('the release-name limit used above is the one Helm enforces', () => {
    expect(LONGEST_RELEASE).toHaveLength(53);
  });
});

describe('deploy/kubernetes holds only objects the API server accepts', () => {
  const files = readdirSync(manifestsDir).filter((name) => name.endsWith('.yaml'));

  it('every file, one by one and together', async () => {
    const all: K8sObject[] = [];
    for (const file of files) {
      if (file === 'kustomization.yaml') continue;
      const objects = parseObjects(readFileSync(join(manifestsDir, file), 'utf8'));
      expect(objects.length, `${file} holds objects`).toBeGreaterThan(0);
      all.push(...objects);
    }
    expect(all.map((o) => o.kind)).toEqual(
      expect.arrayContaining(['Namespace', 'Deployment', 'DaemonSet', 'CSIDriver']),
    );
    expect(await validateObjects(all)).toEqual([]);
  });

  it('the kustomization lists exactly the other files', () => {
    const kustomization = parseObjects(
      readFileSync(join(manifestsDir, 'kustomization.yaml'), 'utf8'),
    )[0] as unknown as { resources: string[] };
    expect([...kustomization.resources].sort()).toEqual(files.filter((f) => f !== 'kustomization.yaml').sort());
  });
});
