// How the driver's node process is started where it is deployed: the image's ENTRYPOINT (Dockerfile) and
// `npm start` pass these flags before dist/src/main.js, the bench starts its drivers the same way, and the
// build's training start that writes the code cache runs under them too: V8 rejects a cache made under other
// flags (src/util/code-cache.ts). test/deployed-node-args.test.ts keeps them in step.
//
// --max-semi-space-size=4: V8 lets the young generation grow to 16 MiB a half under a burst of calls; capped at
// 4 MiB, the controller's RSS peak under create/delete at c=1/16/64 fell from ~153 to ~89 MiB (with the
// driver's own --heap-growing-percent=30, src/driver.ts) at the same pairs/s (docs/BENCHMARKS.md). It must be
// given at start: V8 sizes the young generation when the heap is made.
export const DEPLOYED_NODE_ARGS: readonly string[] = ['--max-semi-space-size=4'];
