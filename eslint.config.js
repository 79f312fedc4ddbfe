// ESLint, type-aware (typescript-eslint). Prettier owns the layout; this file owns the rules.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'src/generated/**', 'bench/results/**', 'emulator/bin/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    rules: {
      // The wire codecs and the logs' readers match control characters on purpose.
      'no-control-regex': 'off',
      // Prettier owns line breaks, and it breaks chains before a computed member.
      'no-unexpected-multiline': 'off',
      // A variable assigned once, after a closure that reads it was made, cannot be const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
    },
  },
  {
    files: ['**/*.ts'],
    ignores: ['vitest.config.ts'],
    languageOptions: {
      parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      // A `default:` is an explicit choice for the cases not named.
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      // Settings come from one place: the config modules read the environment, everything else gets arguments.
      'no-restricted-properties': [
        'error',
        {
          object: 'process',
          property: 'env',
          message: 'read settings in src/config or emulator/config.ts and pass them as arguments',
        },
      ],
    },
  },
  {
    // The configuration modules, the scripts that start processes for tests and benches, and tests themselves
    // may read the environment.
    files: ['src/config/**', 'emulator/config.ts', 'test/**', 'bench/**', 'scripts/**'],
    rules: { 'no-restricted-properties': 'off' },
  },
  {
    // Tests read manifests parsed from YAML and replies of fakes: untyped data, checked by the assertions.
    files: ['test/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
