// Types of scripts/helm.mjs for the TypeScript tests.
export declare const root: string;
export declare function ensureHelm(): Promise<string>;
export declare function runHelm(
  args: string[],
  options?: { cwd?: string; env?: Record<string, string> },
): Promise<{ code: number; stdout: string; stderr: string }>;
