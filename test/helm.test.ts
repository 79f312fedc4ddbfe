// The Helm chart, rendered by the real Helm v4 (scripts/helm.mjs): lint, default and non-default values,
// the objects, their RBAC and sidecar arguments, capability-gated classes, schema failures, and the plain
// manifests under deploy/kubernetes staying equal to a fresh render.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { runHelm } from '../scripts/helm.mjs';
import { chartDir, diffManifests, NAMESPACE, renderManifests } from '../scripts/render-manifests.mjs';
import type { K8sObject } from './support/k8s-validation.js';
import { CA, parseObjects } from './support/rendered.js';

type Container = {
  name: string;
  image: string;
  args?: string[];
  env?: any[];
  ports?: any[];
  volumeMounts?: any[];
  securityContext?: any;
  livenessProbe?: any;
};
type Rule = { apiGroups: string[]; resources: string[]; verbs: string[] };

const SIG_STORAGE = 'registry.k8s.io/sig-storage';
const RELEASE_NAMESPACE = 'storage-system';

let workDir: string;
beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'helm-test-'));
});
afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

async function valuesFile(values: unknown): Promise<string> {
  const path = join(workDir, `values-${Math.random().toString(36).slice(2)}.yaml`);
  await writeFile(path, stringify(values));
  return path;
}

async function template(extraArgs: string[] = []): Promise<K8sObject[]> {
  const { code, stdout, stderr } = await tryTemplate('--namespace', RELEASE_NAMESPACE, ...extraArgs);
  expect(stderr, 'helm template stderr').toBe('');
  expect(code).toBe(0);
  return parseObjects(stdout);
}

function only(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(
    found.map((o) => `${o.kind}/${o.metadata.name}`),
    `exactly one ${kind} ${name ?? ''}`,
  ).toHaveLength(1);
  return found[0]!;
}

function ofKind(objects: K8sObject[], kind: string): K8sObject[] {
  return objects.filter((o) => o.kind === kind);
}

function containers(workload: K8sObject): Container[] {
  return workload.spec.template.spec.containers as Container[];
}

function container(workload: K8sObject, name: string): Container {
  const found = containers(workload).find((c) => c.name === name);
  expect(found, `container ${name}`).toBeDefined();
  return found!;
}

function envValue(c: Container, name: string): any {
  return c.env?.find((e) => e.name === name);
}

function rules(objects: K8sObject[], kind: 'ClusterRole' | 'Role', name: string): Rule[] {
  return only(objects, kind, name).rules as Rule[];
}

/** Flattens rules into "group/resource:verb" strings for exact comparisons. */
function grants(ruleList: Rule[]): string[] {
  return ruleList
    .flatMap((r) =>
      r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g || 'core'}/${res}:${v}`))),
    )
    .sort();
}

/** `--set` arguments, one for each assignment. */
const sets = (...assignments: string[]): string[] => assignments.flatMap((a) => ['--set', a]);

/** `--api-versions` arguments: the APIs `helm template` takes the cluster to serve. */
const apiVersions = (...versions: string[]): string[] => versions.flatMap((v) => ['--api-versions', v]);

/** A helm template run whose result the test judges itself (a failure, or just the exit code). */
const tryTemplate = (...args: string[]) => runHelm(['template', 'sds', chartDir, ...args]);

/** helm template with `--set setting` fails, saying each fragment. */
async function expectRefused(setting: string, ...fragments: string[]): Promise<void> {
  expectFailure(await tryTemplate('--set', setting), ...fragments);
}

function expectFailure(result: { code: number; stderr: string }, ...fragments: string[]): void {
  expect(result.code).not.toBe(0);
  for (const fragment of fragments) expect(result.stderr).toContain(fragment);
}

/**
 * The driver container's arguments with the chart's default values: the same but for the mode, the VBS
 * address, the metrics port and the mode's own flags (`own`, before the metrics address).
 */
function defaultDriverArgs(mode: 'controller' | 'node', vbsUrl: string, metricsPort: number, own: string[] = []) {
  return [
    `--mode=${mode}`,
    '--endpoint=unix:///csi/csi.sock',
    '--driver-name=csi.sdshypervisor.io',
    `--vbs-url=${vbsUrl}`,
    '--vbs-port=10599',
    '--vbs-timeout-ms=30000',
    '--vbs-protocol=auto',
    ...own,
    `--metrics-address=0.0.0.0:${metricsPort}`,
    '--log-level=info',
    '--shutdown-grace-ms=30000',
  ];
}

/** `list` holds every one of `wanted` (and maybe more). */
function expectAll(list: unknown[] | undefined, wanted: unknown[]): void {
  expect(list).toEqual(expect.arrayContaining(wanted));
}

describe('helm lint', () => {
  it('passes in strict mode with default values', async () => {
    const result = await runHelm(['lint', '--strict', chartDir]);
    expect(result.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
    expect(result.code).toBe(0);
  });

  it('passes in strict mode with non-default values', async () => {
    const values = await valuesFile({
      controller: { replicas: 1 },
      monitoring: { podMonitor: { enabled: true }, serviceMonitor: { enabled: true } },
      backend: { tokenSecret: { create: true, token: 't0ken' } },
    });
    const result = await runHelm(['lint', '--strict', chartDir, '-f', values]);
    expect(result.code).toBe(0);
  });
});

describe('default values', () => {
  let objects: K8sObject[];
  beforeAll(async () => {
    objects = await template();
  });

  it('renders the expected objects and nothing optional', () => {
    const counts = Object.fromEntries(
      [
        'CSIDriver',
        'Deployment',
        'DaemonSet',
        'ServiceAccount',
        'ClusterRole',
        'ClusterRoleBinding',
        'Role',
        'RoleBinding',
        'StorageClass',
        'VolumeAttributesClass',
        'PodDisruptionBudget',
      ].map((k) => [k, ofKind(objects, k).length]),
    );
    expect(counts).toEqual({
      CSIDriver: 1,
      Deployment: 1,
      DaemonSet: 1,
      ServiceAccount: 2,
      ClusterRole: 6,
      ClusterRoleBinding: 6,
      Role: 4,
      RoleBinding: 4,
      StorageClass: 1,
      VolumeAttributesClass: 3,
      PodDisruptionBudget: 1,
    });
    // Optional objects: no snapshot API known to `helm template`, monitoring off, no token.
    for (const kind of ['VolumeSnapshotClass', 'PodMonitor', 'ServiceMonitor', 'Secret', 'Service'])
      expect(ofKind(objects, kind)).toEqual([]);
    for (const o of objects) {
      expect(o.metadata.labels?.['app.kubernetes.io/instance']).toBe('sds');
      if (
        !['CSIDriver', 'ClusterRole', 'ClusterRoleBinding', 'StorageClass', 'VolumeAttributesClass'].includes(o.kind)
      ) {
        expect(o.metadata.namespace, `${o.kind}/${o.metadata.name} namespace`).toBe(RELEASE_NAMESPACE);
      }
    }
  });

  it('declares the CSIDriver', () => {
    const driver = only(objects, 'CSIDriver');
    expect(driver.metadata.name).toBe('csi.sdshypervisor.io');
    expect(driver.spec).toEqual({
      attachRequired: true,
      podInfoOnMount: true,
      fsGroupPolicy: 'File',
      volumeLifecycleModes: ['Persistent'],
      storageCapacity: true,
      requiresRepublish: false,
      seLinuxMount: false,
    });
  });

  it('runs the driver controller with the documented flags, as non-root', () => {
    const deployment = only(objects, 'Deployment', 'sds-sdshypervisor-csi-controller');
    expect(deployment.spec.replicas).toBe(2);
    const pod = deployment.spec.template.spec;
    expect(pod.serviceAccountName).toBe('sds-sdshypervisor-csi-controller');
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 65532,
      runAsGroup: 65532,
      fsGroup: 65532,
    });
    expect(containers(deployment).map((c) => c.name)).toEqual([
      'sdshypervisor-csi',
      'csi-provisioner',
      'csi-attacher',
      'csi-snapshotter',
      'csi-resizer',
      'liveness-probe',
    ]);
    for (const c of containers(deployment)) {
      expect(c.securityContext, c.name).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      expect(c.volumeMounts).toContainEqual({ name: 'socket-dir', mountPath: '/csi' });
    }
    const driver = container(deployment, 'sdshypervisor-csi');
    expect(driver.image).toBe('ghcr.io/sdshypervisor/sdshypervisor-csi:0.1.0');
    expect(driver.args).toEqual(defaultDriverArgs('controller', '$(HOST_IP)', 9810));
    expect(envValue(driver, 'HOST_IP')).toEqual({
      name: 'HOST_IP',
      valueFrom: { fieldRef: { fieldPath: 'status.hostIP' } },
    });
    // Its liveness comes from the livenessprobe sidecar on the controller's health port.
    expect(driver.ports).toContainEqual({ name: 'healthz', containerPort: 9808, protocol: 'TCP' });
    expect(driver.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'healthz' });
    expect(container(deployment, 'liveness-probe').args).toContain('--http-endpoint=:9808');
    expect(pod.volumes).toContainEqual({ name: 'socket-dir', emptyDir: {} });
  });

  it('runs every controller sidecar with leader election, a timeout and a health endpoint', () => {
    const deployment = only(objects, 'Deployment');
    const expected = {
      'csi-provisioner': { image: `${SIG_STORAGE}/csi-provisioner:v6.3.0`, timeout: '120s', port: 8090 },
      'csi-attacher': { image: `${SIG_STORAGE}/csi-attacher:v4.12.0`, timeout: '60s', port: 8091 },
      'csi-snapshotter': { image: `${SIG_STORAGE}/csi-snapshotter:v8.6.0`, timeout: '300s', port: 8092 },
      'csi-resizer': { image: `${SIG_STORAGE}/csi-resizer:v2.2.1`, timeout: '120s', port: 8093 },
    };
    for (const [name, want] of Object.entries(expected)) {
      const c = container(deployment, name);
      expect(c.image).toBe(want.image);
      expectAll(c.args, [
        '--csi-address=$(ADDRESS)',
        '--leader-election',
        '--leader-election-namespace=$(NAMESPACE)',
        '--leader-election-lease-duration=15s',
        '--leader-election-renew-deadline=10s',
        '--leader-election-retry-period=5s',
        `--timeout=${want.timeout}`,
        `--http-endpoint=:${want.port}`,
      ]);
      expect(envValue(c, 'ADDRESS').value).toBe('/csi/csi.sock');
      expect(envValue(c, 'NAMESPACE').valueFrom.fieldRef.fieldPath).toBe('metadata.namespace');
      expect(c.livenessProbe.httpGet.path).toBe('/healthz/leader-election');
      expect(c.ports?.[0]?.containerPort).toBe(want.port);
    }
    expect(container(deployment, 'liveness-probe').image).toBe(`${SIG_STORAGE}/livenessprobe:v2.19.0`);
  });

  it('gives the provisioner extra-create-metadata, topology and capacity tracking', () => {
    const provisioner = container(only(objects, 'Deployment'), 'csi-provisioner');
    expectAll(provisioner.args, [
      '--extra-create-metadata',
      '--feature-gates=Topology=true',
      '--enable-capacity',
      '--capacity-ownerref-level=2',
      '--default-fstype=ext4',
    ]);
    expect(envValue(provisioner, 'POD_NAME').valueFrom.fieldRef.fieldPath).toBe('metadata.name');
    expect(container(only(objects, 'Deployment'), 'csi-snapshotter').args).toContain('--extra-create-metadata');
    expect(container(only(objects, 'Deployment'), 'csi-resizer').args).toContain('--handle-volume-inuse-error=false');
  });

  it('runs the node plugin privileged as root with the host mounts it needs', () => {
    const daemonSet = only(objects, 'DaemonSet', 'sds-sdshypervisor-csi-node');
    const pod = daemonSet.spec.template.spec;
    expect(pod.serviceAccountName).toBe('sds-sdshypervisor-csi-node');
    expect(pod.hostNetwork).toBe(true);
    expect(pod.tolerations).toEqual([{ operator: 'Exists' }]);
    expect(containers(daemonSet).map((c) => c.name)).toEqual([
      'sdshypervisor-csi',
      'node-driver-registrar',
      'liveness-probe',
    ]);

    const driver = container(daemonSet, 'sdshypervisor-csi');
    expect(driver.securityContext).toMatchObject({ privileged: true, runAsUser: 0 });
    expect(driver.args).toEqual(defaultDriverArgs('node', '127.0.0.1', 9811, ['--max-volumes-per-node=128']));
    expect(envValue(driver, 'NODE_NAME')).toEqual({
      name: 'NODE_NAME',
      valueFrom: { fieldRef: { fieldPath: 'spec.nodeName' } },
    });
    expect(envValue(driver, 'HUAWEISDSHYPERVISORCLI_PATH').value).toBe('/usr/local/bin/sds/sds_cli');
    expect(envValue(driver, 'SDS_KV_SOCKET').value).toBe('/run/sdshypervisor/kv.sock');

    expectAll(driver.volumeMounts, [
      { name: 'kubelet-dir', mountPath: '/var/lib/kubelet', mountPropagation: 'Bidirectional' },
      { name: 'dev-dir', mountPath: '/dev', mountPropagation: 'HostToContainer' },
      { name: 'sds-cli-dir', mountPath: '/usr/local/bin/sds', readOnly: true },
      { name: 'sds-socket-dir', mountPath: '/run/sdshypervisor', mountPropagation: 'HostToContainer' },
      { name: 'socket-dir', mountPath: '/csi' },
    ]);
    const hostPaths = Object.fromEntries(pod.volumes.map((v: any) => [v.name, v.hostPath]));
    expect(hostPaths).toMatchObject({
      'socket-dir': { path: '/var/lib/kubelet/plugins/csi.sdshypervisor.io', type: 'DirectoryOrCreate' },
      'registration-dir': { path: '/var/lib/kubelet/plugins_registry', type: 'Directory' },
      'kubelet-dir': { path: '/var/lib/kubelet', type: 'Directory' },
      'dev-dir': { path: '/dev', type: 'Directory' },
      'sds-cli-dir': { path: '/usr/local/bin/sds', type: 'Directory' },
      'sds-socket-dir': { path: '/run/sdshypervisor', type: 'DirectoryOrCreate' },
    });

    const registrar = container(daemonSet, 'node-driver-registrar');
    expect(registrar.image).toBe(`${SIG_STORAGE}/csi-node-driver-registrar:v2.17.0`);
    expectAll(registrar.args, [
      '--csi-address=$(ADDRESS)',
      '--kubelet-registration-path=$(DRIVER_REG_SOCK_PATH)',
      '--http-endpoint=:9812',
    ]);
    expect(envValue(registrar, 'DRIVER_REG_SOCK_PATH').value).toBe(
      '/var/lib/kubelet/plugins/csi.sdshypervisor.io/csi.sock',
    );
    expect(registrar.volumeMounts).toContainEqual({ name: 'registration-dir', mountPath: '/registration' });
    // The sidecars are root only to open the root-owned socket: no capabilities, no escalation.
    for (const sidecar of [registrar, container(daemonSet, 'liveness-probe')]) {
      expect(sidecar.securityContext).toEqual({
        runAsUser: 0,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
    }

    // The node's livenessprobe port differs from the controller's: both may share one host network.
    expect(driver.ports).toContainEqual({ name: 'healthz', containerPort: 9809, protocol: 'TCP' });
    expect(container(daemonSet, 'liveness-probe').args).toContain('--http-endpoint=:9809');
  });

  it('grants each sidecar what the upstream RBAC grants, and no Secrets to anyone', () => {
    expectAll(grants(rules(objects, 'ClusterRole', 'sds-sdshypervisor-csi-external-provisioner')), [
      'core/persistentvolumes:create',
      'core/persistentvolumes:delete',
      'core/persistentvolumeclaims:update',
      'core/events:create',
      'storage.k8s.io/storageclasses:watch',
      'storage.k8s.io/csinodes:list',
      'core/nodes:watch',
      'snapshot.storage.k8s.io/volumesnapshots:get',
      'snapshot.storage.k8s.io/volumesnapshotcontents:get',
      'storage.k8s.io/volumeattributesclasses:get',
    ]);
    expectAll(grants(rules(objects, 'Role', 'sds-sdshypervisor-csi-external-provisioner')), [
      'coordination.k8s.io/leases:update',
      'storage.k8s.io/csistoragecapacities:create',
      'storage.k8s.io/csistoragecapacities:delete',
      'core/pods:get',
      'apps/replicasets:get',
    ]);
    expectAll(grants(rules(objects, 'ClusterRole', 'sds-sdshypervisor-csi-external-attacher')), [
      'core/persistentvolumes:patch',
      'storage.k8s.io/volumeattachments:patch',
      'storage.k8s.io/volumeattachments/status:patch',
      'storage.k8s.io/csinodes:get',
    ]);
    expectAll(grants(rules(objects, 'ClusterRole', 'sds-sdshypervisor-csi-external-snapshotter')), [
      'snapshot.storage.k8s.io/volumesnapshotclasses:watch',
      'snapshot.storage.k8s.io/volumesnapshotcontents:update',
      'snapshot.storage.k8s.io/volumesnapshotcontents/status:patch',
    ]);
    expectAll(grants(rules(objects, 'ClusterRole', 'sds-sdshypervisor-csi-external-resizer')), [
      'core/persistentvolumes:patch',
      'core/persistentvolumeclaims/status:patch',
      'storage.k8s.io/volumeattributesclasses:watch',
    ]);
    for (const sidecar of ['provisioner', 'attacher', 'snapshotter', 'resizer']) {
      expectAll(grants(rules(objects, 'Role', `sds-sdshypervisor-csi-external-${sidecar}`)), [
        'coordination.k8s.io/leases:create',
        'coordination.k8s.io/leases:get',
        'coordination.k8s.io/leases:update',
      ]);
    }
    // The driver's own client-node use: exactly what src/kube calls.
    expect(grants(rules(objects, 'ClusterRole', 'sds-sdshypervisor-csi-controller-driver'))).toEqual([
      'core/events:create',
      'core/events:patch',
      'core/nodes:list',
      'core/persistentvolumeclaims:get',
    ]);
    expect(grants(rules(objects, 'ClusterRole', 'sds-sdshypervisor-csi-node-driver'))).toEqual(['core/nodes:get']);

    for (const role of [...ofKind(objects, 'ClusterRole'), ...ofKind(objects, 'Role')]) {
      for (const rule of role.rules as Rule[]) {
        expect(rule.resources, role.metadata.name).not.toContain('secrets');
        expect(rule.resources, role.metadata.name).not.toContain('*');
        expect(rule.verbs, role.metadata.name).not.toContain('*');
      }
    }
  });

  it('binds every role to the right ServiceAccount in the release namespace', () => {
    for (const binding of [...ofKind(objects, 'ClusterRoleBinding'), ...ofKind(objects, 'RoleBinding')]) {
      const account = binding.metadata.name.endsWith('-node-driver')
        ? 'sds-sdshypervisor-csi-node'
        : 'sds-sdshypervisor-csi-controller';
      expect(binding.subjects, binding.metadata.name).toEqual([
        { kind: 'ServiceAccount', name: account, namespace: RELEASE_NAMESPACE },
      ]);
      const roleKind = binding.kind === 'ClusterRoleBinding' ? 'ClusterRole' : 'Role';
      expect(binding.roleRef).toEqual({
        apiGroup: 'rbac.authorization.k8s.io',
        kind: roleKind,
        name: binding.metadata.name,
      });
      only(objects, roleKind, binding.roleRef.name);
    }
  });

  it('renders the StorageClass with driver parameters and a matching csi fstype', () => {
    const storageClass = only(objects, 'StorageClass', 'sdshypervisor');
    expect(storageClass).toMatchObject({
      provisioner: 'csi.sdshypervisor.io',
      reclaimPolicy: 'Delete',
      volumeBindingMode: 'WaitForFirstConsumer',
      allowVolumeExpansion: true,
      parameters: {
        pool: 'pool0',
        fsType: 'ext4',
        'csi.storage.k8s.io/fstype': 'ext4',
        thin: 'true',
        cloneMode: 'linked',
        cache: 'none',
        qosLevel: 'normal',
      },
    });
    expect(storageClass.metadata.annotations).toBeUndefined();
  });

  it('renders the QoS tiers as VolumeAttributesClasses with only mutable parameters', () => {
    const classes = ofKind(objects, 'VolumeAttributesClass');
    expect(classes.map((c) => c.metadata.name)).toEqual([
      'sdshypervisor-gold',
      'sdshypervisor-silver',
      'sdshypervisor-bronze',
    ]);
    for (const c of classes) {
      expect(c.apiVersion).toBe('storage.k8s.io/v1');
      expect(c.driverName).toBe('csi.sdshypervisor.io');
      for (const key of Object.keys(c.parameters)) expect(['maxIOPS', 'maxMBps', 'qosLevel', 'cache']).toContain(key);
    }
    expect(classes[0]!.parameters).toEqual({ qosLevel: 'high', maxIOPS: '20000', maxMBps: '800', cache: 'readwrite' });
  });
});

describe('non-default values', () => {
  let objects: K8sObject[];
  const DIGEST = `sha256:${'c0'.repeat(32)}`;
  beforeAll(async () => {
    const values = await valuesFile({
      driverName: 'block.example.com',
      image: { repository: 'registry.example.com/storage/sds-csi', digest: DIGEST },
      imagePullSecrets: [{ name: 'regcred' }],
      backend: { tokenSecret: { name: 'vbs-credentials', key: 'api-token' }, vbsPort: 10600 },
      controller: { replicas: 3, vbsUrl: 'vbs-1.example.com,vbs-2.example.com:10601', metricsAddress: '' },
      node: {
        kubeletDir: '/var/lib/k0s/kubelet',
        topologyLabels: ['topology.kubernetes.io/zone', 'example.com/rack'],
        hostNetwork: false,
        sdsCliDir: '/opt/huawei/sds/bin',
      },
      sidecars: {
        provisioner: {
          image: { repository: 'mirror.example.com/csi-provisioner', tag: 'v6.3.1' },
          timeout: '10m',
          extraArgs: ['--worker-threads=20'],
        },
        livenessProbe: { image: { repository: `${SIG_STORAGE}/livenessprobe`, tag: 'v2.19.1' } },
        snapshotter: { enabled: false },
      },
      csiDriver: { attachRequired: false, fsGroupPolicy: 'ReadWriteOnceWithFSType' },
      storageClasses: [
        {
          name: 'fast',
          default: true,
          reclaimPolicy: 'Retain',
          parameters: {
            pool: 'ssd',
            fsType: 'xfs',
            thin: 'false',
            cloneMode: 'full',
            maxIOPS: '50000',
            imageSource: 'https://images.example.com/ubuntu.qcow2',
            imageChecksum: `sha256:${'ab'.repeat(32)}`,
          },
        },
        {
          name: 'raw',
          volumeBindingMode: 'Immediate',
          allowVolumeExpansion: false,
          parameters: { pool: 'hdd', 'csi.storage.k8s.io/fstype': 'ext4' },
        },
      ],
      monitoring: {
        podMonitor: { enabled: true, labels: { release: 'prometheus' } },
        serviceMonitor: { enabled: true },
      },
    });
    objects = await template(['-f', values, ...apiVersions('snapshot.storage.k8s.io/v1', 'monitoring.coreos.com/v1')]);
  });

  it('applies replicas, image overrides and pull secrets', () => {
    const deployment = only(objects, 'Deployment');
    expect(deployment.spec.replicas).toBe(3);
    expect(deployment.spec.template.spec.imagePullSecrets).toEqual([{ name: 'regcred' }]);
    expect(container(deployment, 'sdshypervisor-csi').image).toBe(`registry.example.com/storage/sds-csi@${DIGEST}`);
    expect(container(only(objects, 'DaemonSet'), 'sdshypervisor-csi').image).toBe(
      `registry.example.com/storage/sds-csi@${DIGEST}`,
    );
    const provisioner = container(deployment, 'csi-provisioner');
    expect(provisioner.image).toBe('mirror.example.com/csi-provisioner:v6.3.1');
    expectAll(provisioner.args, ['--timeout=10m', '--worker-threads=20']);
    expect(container(deployment, 'liveness-probe').image).toBe(`${SIG_STORAGE}/livenessprobe:v2.19.1`);
  });

  it('drops the attacher and snapshotter with their RBAC when turned off', () => {
    const names = containers(only(objects, 'Deployment')).map((c) => c.name);
    expect(names).toEqual(['sdshypervisor-csi', 'csi-provisioner', 'csi-resizer', 'liveness-probe']);
    expect(
      ofKind(objects, 'ClusterRole')
        .map((r) => r.metadata.name)
        .sort(),
    ).toEqual(
      [
        'sds-sdshypervisor-csi-controller-driver',
        'sds-sdshypervisor-csi-external-provisioner',
        'sds-sdshypervisor-csi-external-resizer',
        'sds-sdshypervisor-csi-node-driver',
      ].sort(),
    );
    expect(only(objects, 'CSIDriver').spec).toMatchObject({
      attachRequired: false,
      fsGroupPolicy: 'ReadWriteOnceWithFSType',
    });
  });

  it('passes the driver name, VBS addresses, token file and topology labels', () => {
    const controller = container(only(objects, 'Deployment'), 'sdshypervisor-csi');
    const node = container(only(objects, 'DaemonSet'), 'sdshypervisor-csi');
    for (const plugin of [controller, node]) {
      expectAll(plugin.args, [
        '--driver-name=block.example.com',
        '--vbs-token-file=/etc/sdshypervisor-csi/vbs-token/api-token',
      ]);
    }
    expectAll(controller.args, [
      '--vbs-url=vbs-1.example.com,vbs-2.example.com:10601',
      '--vbs-port=10600',
      '--metrics-address=',
    ]);
    expect(controller.ports?.map((p) => p.name)).toEqual(['healthz']);
    expectAll(node.args, ['--vbs-url=$(HOST_IP)', '--topology-labels=topology.kubernetes.io/zone,example.com/rack']);
    expect(envValue(node, 'HUAWEISDSHYPERVISORCLI_PATH').value).toBe('/opt/huawei/sds/bin/sds_cli');
    // The Secret is referenced, not created, and mounted read-only in both pods.
    expect(ofKind(objects, 'Secret')).toEqual([]);
    for (const workload of [only(objects, 'Deployment'), only(objects, 'DaemonSet')]) {
      const volume = workload.spec.template.spec.volumes.find((v: any) => v.name === 'vbs-token');
      expect(volume.secret).toMatchObject({
        secretName: 'vbs-credentials',
        items: [{ key: 'api-token', path: 'api-token' }],
      });
      expect(container(workload, 'sdshypervisor-csi').volumeMounts).toContainEqual({
        name: 'vbs-token',
        mountPath: '/etc/sdshypervisor-csi/vbs-token',
        readOnly: true,
      });
    }
  });

  it('moves the kubelet paths and leaves the host network', () => {
    const daemonSet = only(objects, 'DaemonSet');
    expect(daemonSet.spec.template.spec.hostNetwork).toBe(false);
    expect(daemonSet.spec.template.spec.dnsPolicy).toBeUndefined();
    expect(container(daemonSet, 'sdshypervisor-csi').volumeMounts).toContainEqual({
      name: 'kubelet-dir',
      mountPath: '/var/lib/k0s/kubelet',
      mountPropagation: 'Bidirectional',
    });
    expect(envValue(container(daemonSet, 'node-driver-registrar'), 'DRIVER_REG_SOCK_PATH').value).toBe(
      '/var/lib/k0s/kubelet/plugins/block.example.com/csi.sock',
    );
  });

  it('renders several StorageClasses, a default one, and keeps an explicit csi fstype', () => {
    const fast = only(objects, 'StorageClass', 'fast');
    expect(fast.metadata.annotations).toEqual({ 'storageclass.kubernetes.io/is-default-class': 'true' });
    expect(fast).toMatchObject({ provisioner: 'block.example.com', reclaimPolicy: 'Retain' });
    expect(fast.parameters).toMatchObject({
      fsType: 'xfs',
      'csi.storage.k8s.io/fstype': 'xfs',
      imageSource: 'https://images.example.com/ubuntu.qcow2',
      maxIOPS: '50000',
    });
    const raw = only(objects, 'StorageClass', 'raw');
    expect(raw).toMatchObject({
      volumeBindingMode: 'Immediate',
      allowVolumeExpansion: false,
      parameters: { pool: 'hdd', 'csi.storage.k8s.io/fstype': 'ext4' },
    });
  });

  it('renders the snapshot class when the API exists, and the monitors', () => {
    const snapshotClass = only(objects, 'VolumeSnapshotClass', 'sdshypervisor-snapshot');
    expect(snapshotClass).toMatchObject({
      apiVersion: 'snapshot.storage.k8s.io/v1',
      driver: 'block.example.com',
      deletionPolicy: 'Delete',
    });
    expect(snapshotClass.metadata.annotations).toEqual({ 'snapshot.storage.kubernetes.io/is-default-class': 'true' });

    const podMonitor = only(objects, 'PodMonitor');
    expect(podMonitor.metadata.labels?.release).toBe('prometheus');
    expect(podMonitor.spec.podMetricsEndpoints.map((e: any) => e.port)).toEqual([
      'metrics',
      'http-provision',
      'http-attacher',
      'http-snapshot',
      'http-resizer',
    ]);
    const serviceMonitor = only(objects, 'ServiceMonitor');
    expect(serviceMonitor.spec.endpoints).toEqual([{ port: 'metrics', path: '/metrics', interval: '30s' }]);
    // The controller's metrics are off here, so only the node plugin gets a metrics Service.
    const service = only(objects, 'Service');
    expect(service.metadata.name).toBe('sds-sdshypervisor-csi-node-metrics');
    expect(service.spec).toMatchObject({
      clusterIP: 'None',
      ports: [{ name: 'metrics', port: 9811, targetPort: 'metrics' }],
    });
  });
});

describe('capability-gated classes', () => {
  const kinds = async (args: string[]) => (await template(args)).map((o) => o.kind);

  it('renders VolumeAttributesClasses from Kubernetes 1.34 when the API list knows no kinds', async () => {
    expect((await kinds(['--kube-version', '1.34.0'])).filter((k) => k === 'VolumeAttributesClass')).toHaveLength(3);
  });

  it('follows API discovery: rendered when the cluster serves VolumeAttributesClass, not when it is switched off', async () => {
    const served = await kinds(
      apiVersions('storage.k8s.io/v1/StorageClass', 'storage.k8s.io/v1/VolumeAttributesClass'),
    );
    expect(served.filter((k) => k === 'VolumeAttributesClass')).toHaveLength(3);
    const switchedOff = await kinds(['--api-versions', 'storage.k8s.io/v1/StorageClass']);
    expect(switchedOff).not.toContain('VolumeAttributesClass');
    expect(switchedOff).toContain('StorageClass');
  });

  it('renders none when turned off', async () => {
    expect(await kinds(['--set', 'volumeAttributesClasses.create=false'])).not.toContain('VolumeAttributesClass');
  });

  it('refuses Kubernetes older than 1.34', async () => {
    expectFailure(await tryTemplate('--kube-version', '1.33.5'), 'chart requires kubeVersion: >=1.34.0-0');
  });

  it('renders VolumeSnapshotClasses by API (auto), always or never', async () => {
    expect(await kinds([])).not.toContain('VolumeSnapshotClass');
    expect(await kinds(['--api-versions', 'snapshot.storage.k8s.io/v1/VolumeSnapshotClass'])).toContain(
      'VolumeSnapshotClass',
    );
    expect(await kinds(['--set', 'volumeSnapshotClasses.create=always'])).toContain('VolumeSnapshotClass');
    expect(
      await kinds(['--set', 'volumeSnapshotClasses.create=never', '--api-versions', 'snapshot.storage.k8s.io/v1']),
    ).not.toContain('VolumeSnapshotClass');
  });

  it('creates the token Secret only when asked, from the given token', async () => {
    const objects = await template(sets('backend.tokenSecret.create=true', 'backend.tokenSecret.token=s3cret'));
    const secret = only(objects, 'Secret', 'sds-sdshypervisor-csi-vbs-token');
    expect(Buffer.from(secret.data.token, 'base64').toString()).toBe('s3cret');
    expect(container(only(objects, 'Deployment'), 'sdshypervisor-csi').args).toContain(
      '--vbs-token-file=/etc/sdshypervisor-csi/vbs-token/token',
    );
    // The token never appears in args or env.
    for (const workload of [only(objects, 'Deployment'), only(objects, 'DaemonSet')])
      expect(JSON.stringify(workload)).not.toContain('s3cret');
  });
});

describe("the back end's protocol level (backend.protocol, backend.pools)", () => {
  const driverArgs = (objects: K8sObject[]) =>
    [only(objects, 'Deployment'), only(objects, 'DaemonSet')].map(
      (w) => container(w, 'sdshypervisor-csi').args as string[],
    );

  it('auto by default: both plugins negotiate, no pools named', async () => {
    for (const args of driverArgs(await template())) {
      expect(args).toContain('--vbs-protocol=auto');
      expect(args.some((a) => a.startsWith('--vbs-pools'))).toBe(false);
    }
  });

  it('original with pools: the flags, and none of the extended-only objects', async () => {
    const objects = await template([
      '--kube-version',
      '1.34.0',
      ...sets('backend.protocol=original', 'backend.pools={P1,P2}'),
    ]);
    for (const args of driverArgs(objects)) {
      expect(args).toContain('--vbs-protocol=original');
      expect(args).toContain('--vbs-pools=P1,P2');
    }
    const kinds = objects.map((o) => o.kind);
    expect(kinds).not.toContain('VolumeAttributesClass');
    expect(kinds).not.toContain('VolumeGroupSnapshotClass');
    expect(kinds).not.toContain('SnapshotMetadataService');
    expect(containers(only(objects, 'Deployment')).map((c) => c.name)).not.toContain('csi-snapshot-metadata');
    // The extended level keeps them.
    const extended = (await template(['--kube-version', '1.34.0', '--set', 'backend.protocol=extended'])).map(
      (o) => o.kind,
    );
    expect(extended.filter((k) => k === 'VolumeAttributesClass')).toHaveLength(3);
  });

  it('original refuses group snapshots and snapshot metadata, naming the setting', async () => {
    expectFailure(
      await tryTemplate(...sets('backend.protocol=original', 'groupSnapshot.enabled=true')),
      'groupSnapshot.enabled needs backend.protocol',
    );
    expectFailure(
      await tryTemplate(
        ...sets(
          'backend.protocol=original',
          'snapshotMetadata.enabled=true',
          'snapshotMetadata.tls.secretName=tls',
          `snapshotMetadata.tls.caCert=${CA}`,
        ),
      ),
      'snapshotMetadata.enabled needs backend.protocol',
    );
  });

  it('the schema refuses an unknown level and a bad pool id', async () => {
    await expectRefused('backend.protocol=newest', '/backend/protocol');
    await expectRefused('backend.pools={-bad}', '/backend/pools/0');
  });
});

describe('group snapshots and snapshot metadata (off by default)', () => {
  const onArgs = sets(
    'groupSnapshot.enabled=true',
    'snapshotMetadata.enabled=true',
    'snapshotMetadata.tls.secretName=sds-snapshot-metadata-tls',
    `snapshotMetadata.tls.caCert=${CA}`,
  );

  it('off: no group class, no feature gate, no group RBAC, no metadata sidecar, Service or SnapshotMetadataService', async () => {
    const objects = await template();
    expect(ofKind(objects, 'VolumeGroupSnapshotClass')).toEqual([]);
    expect(ofKind(objects, 'SnapshotMetadataService')).toEqual([]);
    expect(ofKind(objects, 'Service')).toEqual([]);
    const deployment = only(objects, 'Deployment');
    expect(containers(deployment).map((c) => c.name)).not.toContain('csi-snapshot-metadata');
    expect(container(deployment, 'csi-snapshotter').args!.join(' ')).not.toContain('CSIVolumeGroupSnapshot');
    expect(grants(rules(objects, 'ClusterRole', 'sds-sdshypervisor-csi-external-snapshotter')).join(' ')).not.toContain(
      'groupsnapshot',
    );
    expect(objects.map((o) => o.metadata.name)).not.toContain('sds-sdshypervisor-csi-snapshot-metadata-client');
  });

  it('on: the group class, the snapshotter feature gate and its group RBAC', async () => {
    const objects = await template(onArgs);
    const groupClass = only(objects, 'VolumeGroupSnapshotClass', 'sdshypervisor-group-snapshot');
    expect(groupClass).toMatchObject({
      apiVersion: 'groupsnapshot.storage.k8s.io/v1',
      driver: 'csi.sdshypervisor.io',
      deletionPolicy: 'Delete',
      parameters: { quiesce: 'freeze' },
    });
    expect(groupClass.metadata.annotations).toEqual({ 'groupsnapshot.storage.kubernetes.io/is-default-class': 'true' });
    expect(container(only(objects, 'Deployment'), 'csi-snapshotter').args).toContain(
      '--feature-gates=CSIVolumeGroupSnapshot=true',
    );
    expectAll(grants(rules(objects, 'ClusterRole', 'sds-sdshypervisor-csi-external-snapshotter')), [
      'snapshot.storage.k8s.io/volumesnapshotcontents:create',
      'groupsnapshot.storage.k8s.io/volumegroupsnapshotclasses:watch',
      'groupsnapshot.storage.k8s.io/volumegroupsnapshotcontents:update',
      'groupsnapshot.storage.k8s.io/volumegroupsnapshotcontents/status:patch',
    ]);
    // An older CRD version, and a class with a freeze timeout.
    const values = await valuesFile({
      groupSnapshot: {
        enabled: true,
        apiVersion: 'groupsnapshot.storage.k8s.io/v1beta2',
        classes: [{ name: 'slow-apps', parameters: { quiesce: 'freeze', freezeTimeoutSeconds: '30' } }],
      },
    });
    const older = await template(['-f', values]);
    expect(only(older, 'VolumeGroupSnapshotClass', 'slow-apps')).toMatchObject({
      apiVersion: 'groupsnapshot.storage.k8s.io/v1beta2',
      parameters: { quiesce: 'freeze', freezeTimeoutSeconds: '30' },
    });
    expect(only(older, 'VolumeGroupSnapshotClass').metadata.annotations).toBeUndefined();
  });

  it('on: the metadata sidecar with its TLS Secret, the Service, the SnapshotMetadataService and least-privilege RBAC', async () => {
    const objects = await template(onArgs);
    const deployment = only(objects, 'Deployment');
    const sidecar = container(deployment, 'csi-snapshot-metadata');
    expect(sidecar.image).toBe(`${SIG_STORAGE}/csi-snapshot-metadata:v1.1.0`);
    expectAll(sidecar.args, [
      '--csi-address=$(ADDRESS)',
      '--port=50051',
      '--tls-cert=/etc/snapshot-metadata/tls/tls.crt',
      '--tls-key=/etc/snapshot-metadata/tls/tls.key',
    ]);
    expect(sidecar.ports).toEqual([{ name: 'snapshot-meta', containerPort: 50051, protocol: 'TCP' }]);
    expect(sidecar.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
    const tlsVolume = deployment.spec.template.spec.volumes.find((v: any) => v.name === 'snapshot-metadata-tls');
    expect(tlsVolume.secret.secretName).toBe('sds-snapshot-metadata-tls');
    const service = only(objects, 'Service', 'sds-sdshypervisor-csi-snapshot-metadata');
    expect(service.spec).toMatchObject({
      type: 'ClusterIP',
      ports: [{ name: 'snapshot-meta', port: 6443, targetPort: 'snapshot-meta', protocol: 'TCP' }],
    });
    expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
    const sms = only(objects, 'SnapshotMetadataService', 'csi.sdshypervisor.io');
    expect(sms).toMatchObject({
      apiVersion: 'cbt.storage.k8s.io/v1beta1',
      spec: {
        address: `sds-sdshypervisor-csi-snapshot-metadata.${RELEASE_NAMESPACE}:6443`,
        caCert: CA,
        audience: 'csi.sdshypervisor.io',
      },
    });
    expect(grants(rules(objects, 'ClusterRole', 'sds-sdshypervisor-csi-snapshot-metadata'))).toEqual([
      'authentication.k8s.io/tokenreviews:create',
      'authorization.k8s.io/subjectaccessreviews:create',
      'cbt.storage.k8s.io/snapshotmetadataservices:get',
      'cbt.storage.k8s.io/snapshotmetadataservices:list',
      'cbt.storage.k8s.io/snapshotmetadataservices:watch',
      'snapshot.storage.k8s.io/volumesnapshotcontents:get',
      'snapshot.storage.k8s.io/volumesnapshotcontents:list',
      'snapshot.storage.k8s.io/volumesnapshots:get',
      'snapshot.storage.k8s.io/volumesnapshots:list',
    ]);
    const binding = only(objects, 'ClusterRoleBinding', 'sds-sdshypervisor-csi-snapshot-metadata');
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: 'sds-sdshypervisor-csi-controller', namespace: RELEASE_NAMESPACE },
    ]);
    expect(grants(rules(objects, 'ClusterRole', 'sds-sdshypervisor-csi-snapshot-metadata-client'))).toContain(
      'core/serviceaccounts/token:create',
    );
    const lint = await runHelm(['lint', '--strict', chartDir, ...onArgs]);
    expect(lint.stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
  });

  it('refuses the metadata sidecar without TLS, and group snapshots without the snapshotter', async () => {
    await expectRefused(
      'snapshotMetadata.enabled=true',
      '/snapshotMetadata/tls/secretName',
      '/snapshotMetadata/tls/caCert',
    );
    expectFailure(
      await tryTemplate(...sets('groupSnapshot.enabled=true', 'sidecars.snapshotter.enabled=false')),
      'groupSnapshot.enabled needs sidecars.snapshotter.enabled',
    );
    const bad = await valuesFile({ groupSnapshot: { classes: [{ name: 'g', parameters: { quiesce: 'nap' } }] } });
    expectFailure(await tryTemplate('-f', bad), '/groupSnapshot/classes/0/parameters/quiesce');
  });
});

describe('values.schema.json', () => {
  it('rejects an unknown top-level key (a typo) naming it', async () => {
    await expectRefused('controler.replicas=3', "additional properties 'controler' not allowed");
  });

  it('rejects a nested typo', async () => {
    await expectRefused('sidecars.provisioner.timout=30s', '/sidecars/provisioner', "'timout' not allowed");
  });

  it('rejects a wrong type', async () => {
    await expectRefused('controller.replicas=two', '/controller/replicas', 'want integer');
    expectFailure(await tryTemplate('--set-string', 'node.hostNetwork=yes'), '/node/hostNetwork', 'want boolean');
  });

  it('rejects bad StorageClass and VolumeAttributesClass parameters', async () => {
    const badParam = await valuesFile({
      storageClasses: [{ name: 'x', parameters: { pool: 'p', qosLevel: 'ultra' } }],
    });
    expectFailure(await tryTemplate('-f', badParam), '/storageClasses/0/parameters/qosLevel');
    const unknownParam = await valuesFile({
      storageClasses: [{ name: 'x', parameters: { pool: 'p', maxIops: '100' } }],
    });
    expectFailure(await tryTemplate('-f', unknownParam), "'maxIops' not allowed");
    const numberParam = await valuesFile({ storageClasses: [{ name: 'x', parameters: { pool: 'p', maxIOPS: 100 } }] });
    expectFailure(await tryTemplate('-f', numberParam), '/storageClasses/0/parameters/maxIOPS', 'want string');
    const immutable = await valuesFile({
      volumeAttributesClasses: { items: [{ name: 'x', parameters: { pool: 'other' } }] },
    });
    expectFailure(await tryTemplate('-f', immutable), "'pool' not allowed");
  });

  it("rejects a shutdown grace that does not end before the pods' termination grace period", async () => {
    await expectRefused(
      'driver.shutdownGraceMs=45000',
      'driver.shutdownGraceMs (45000 ms) must be less than controller.terminationGracePeriodSeconds (45 s = 45000 ms)',
    );
    await expectRefused(
      'node.terminationGracePeriodSeconds=20',
      'driver.shutdownGraceMs (30000 ms) must be less than node.terminationGracePeriodSeconds (20 s = 20000 ms)',
    );
    expectFailure(
      await tryTemplate(
        ...sets(
          'driver.shutdownGraceMs=600001',
          'controller.terminationGracePeriodSeconds=700',
          'node.terminationGracePeriodSeconds=700',
        ),
      ),
      '/driver/shutdownGraceMs',
      'maximum',
    );
    expect((await tryTemplate('--set', 'driver.shutdownGraceMs=44999')).code).toBe(0);
  });

  it('rejects a StorageClass with an empty or malformed pool, and an empty list of StorageClasses', async () => {
    // Helm turns this into `storageClasses: []`: refused rather than installing no StorageClass.
    await expectRefused('storageClasses[0].parameters.pool=', "at '/storageClasses': minItems: got 0, want 1");
    const empty = await valuesFile({ storageClasses: [{ name: 'x', parameters: { pool: '' } }] });
    expectFailure(await tryTemplate('-f', empty), '/storageClasses/0/parameters/pool');
    const spaced = await valuesFile({ storageClasses: [{ name: 'x', parameters: { pool: 'my pool' } }] });
    expectFailure(await tryTemplate('-f', spaced), '/storageClasses/0/parameters/pool');
    const noPool = await valuesFile({ storageClasses: [{ name: 'x', parameters: { fsType: 'xfs' } }] });
    expect((await tryTemplate('-f', noPool)).code, 'no pool: the driver places the volume').toBe(0);
  });

  it('rejects the Ephemeral volume lifecycle mode: the driver serves persistent volumes only', async () => {
    await expectRefused(
      'csiDriver.volumeLifecycleModes[0]=Ephemeral',
      "at '/csiDriver/volumeLifecycleModes/0': value must be 'Persistent'",
    );
    await expectRefused('csiDriver.volumeLifecycleModes={Persistent,Ephemeral}', '/csiDriver/volumeLifecycleModes/1');
  });

  it('rejects bad durations, driver names, ports and a token Secret to create without a token', async () => {
    await expectRefused('sidecars.attacher.timeout=soon', '/sidecars/attacher/timeout');
    await expectRefused('driverName=Not_A_DNS_Name', '/driverName');
    await expectRefused('node.healthPort=70000', '/node/healthPort');
    await expectRefused('backend.tokenSecret.create=true', '/backend/tokenSecret/token');
  });
});

describe('plain manifests (deploy/kubernetes)', () => {
  it('equal a fresh render of the chart (run npm run render-manifests after changing the chart)', async () => {
    expect(await diffManifests()).toEqual([]);
  });

  it('are valid YAML in the sdshypervisor-csi namespace, with the Namespace itself', async () => {
    const files = await renderManifests();
    const objects = [...files.entries()]
      .filter(([name]) => name !== 'kustomization.yaml')
      .flatMap(([, content]) => parseObjects(content));
    expect(only(objects, 'Namespace', NAMESPACE).metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe(
      'privileged',
    );
    for (const o of objects) {
      if (['Deployment', 'DaemonSet', 'ServiceAccount', 'Role', 'RoleBinding', 'PodDisruptionBudget'].includes(o.kind))
        expect(o.metadata.namespace).toBe(NAMESPACE);
    }
    expect(ofKind(objects, 'VolumeSnapshotClass')).toHaveLength(1);
    expect(ofKind(objects, 'VolumeAttributesClass')).toHaveLength(3);
    const kustomization = parseObjects(files.get('kustomization.yaml')!)[0]!;
    expect(kustomization.resources).toEqual([...files.keys()].filter((name) => name !== 'kustomization.yaml'));
  });
});
