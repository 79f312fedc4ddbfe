// One stack (emulator + driver, test/support/stack.ts) for a describe block or test file: started before its
// tests, stopped after them.
import { afterAll, beforeAll } from 'vitest';
import { startStack, type Stack, type StackOptions } from './stack.js';

/** Registers the hooks; `started` receives the stack once it runs (before the block's first test). */
export function stackForSuite(options: StackOptions, started: (stack: Stack) => void): void {
  let stack: Stack | undefined;
  beforeAll(async () => {
    stack = await startStack(options);
    started(stack);
  });
  afterAll(async () => {
    await stack?.stop();
  });
}
