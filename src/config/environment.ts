// The driver's inherited environment, read here only (the lint rule no-restricted-properties enforces it):
// the environments of child processes and the few facts of the host's environment other rooms need are built
// here and handed to them as arguments.

/** The environment a child process inherits: ours, with `set` applied (an undefined value removes the name). */
export function childEnv(set: Readonly<Record<string, string | undefined>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const [name, value] of Object.entries(set)) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return env;
}

const SYSTEM_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/**
 * The environment of the mount room's tools: they live in sbin directories that a non-login PATH may lack
 * (the caller's order is kept, what is missing is added), and the C locale makes their messages parse the same.
 */
export function toolEnv(): NodeJS.ProcessEnv {
  const path = (process.env.PATH ?? '').split(':').filter(Boolean);
  for (const dir of SYSTEM_PATH) if (!path.includes(dir)) path.push(dir);
  return childEnv({ PATH: path.join(':'), LC_ALL: 'C', LANG: 'C' });
}

/** Whether the kubelet gave this process a Kubernetes service address (half of the in-cluster configuration). */
export function kubernetesServiceInEnv(): boolean {
  return Boolean(process.env.KUBERNETES_SERVICE_HOST && process.env.KUBERNETES_SERVICE_PORT);
}

/** The HOSTNAME variable (a pod's name), for naming this instance when the caller names none. */
export function hostnameFromEnv(): string | undefined {
  return process.env.HOSTNAME;
}

/** Whether this start is the build's training start (scripts/build.mjs), which writes the bundle's code cache. */
export function codeCacheTraining(): boolean {
  return process.env.SDSHYPERVISOR_CSI_CODE_CACHE === 'write';
}

/** NODE_OPTIONS as this process got it: node flags, like its own arguments (the code cache is kept by both). */
export function nodeOptionsFromEnv(): string {
  return process.env.NODE_OPTIONS ?? '';
}
