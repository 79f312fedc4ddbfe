import { defineConfig } from 'vitest/config';

// Tests share the machine's loop devices and mounts; files run in parallel, tests inside a file in order.
// A file named *.alone.test.ts frees machine-wide resources other files would be handed (a loop number a
// stale device node still names): it runs after the others, one file at a time.
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
    projects: [
      {
        extends: true,
        test: {
          name: 'parallel',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.alone.test.ts'],
          fileParallelism: true,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        extends: true,
        test: {
          name: 'alone',
          include: ['test/**/*.alone.test.ts'],
          fileParallelism: false,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
