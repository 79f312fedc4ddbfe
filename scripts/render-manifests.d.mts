// Types of scripts/render-manifests.mjs for the TypeScript tests.
export declare const chartDir: string;
export declare const manifestsDir: string;
export declare const RELEASE: string;
export declare const NAMESPACE: string;
export declare const KUBE_VERSION: string;
export declare function renderManifests(): Promise<Map<string, string>>;
export declare function diffManifests(): Promise<string[]>;
export declare function writeManifests(): Promise<string[]>;
