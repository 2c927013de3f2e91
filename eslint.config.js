// `npm run lint`: ESLint's recommended rules and typescript-eslint's type-aware ones
// (recommendedTypeChecked) over every TypeScript file tsconfig.json covers, and the checkout page's
// script. No formatting rules: Prettier formats (npm run format).
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', '.tap/', '.build/', 'data/', 'test-artifacts/', 'sdk/schema.ts'] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // Fastify plugins and routes, and the gateway and store interfaces, are async by contract,
      // whether or not a given implementation awaits anything.
      '@typescript-eslint/require-await': 'off',
      // A parameter a signature must have but a body does not use is named `_…`.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      // tap waits for every subtest it is given: a test file calls t.test() without await.
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafeCalls: [{ from: 'package', package: '@tapjs/test', name: ['test'] }] },
      ],
    },
  },
  {
    // Plain JavaScript: this file (Node) and the checkout page's module (a browser), outside tsconfig.json.
    files: ['**/*.js'],
    extends: [tseslint.configs.disableTypeChecked],
  },
  { files: ['eslint.config.js'], languageOptions: { globals: globals.node } },
  { files: ['public/**/*.js'], languageOptions: { globals: globals.browser } },
);
