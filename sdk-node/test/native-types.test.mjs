// The committed native.d.ts is what the Rust declares: scripts/check-types.mjs renders the
// declarations napi-derive wrote while scripts/build-native.mjs compiled the addon (no second
// compile) with @napi-rs/cli's renderer and compares them with the file.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { firstDifferences, nativeTypings } from '../scripts/check-types.mjs';

test('native.d.ts matches the declarations generated from the Rust (npm run build:types regenerates it)', async () => {
  const { generated, committed, typeDefFile } = await nativeTypings();
  assert.ok(generated.includes('export declare class NativeClient'), `nothing rendered from ${typeDefFile}`);
  assert.ok(generated === committed, `native.d.ts is stale; run npm run build:types\n${firstDifferences(generated, committed)}`);
});
