// native.d.ts from the Rust: renders the declarations napi-derive wrote during the last build of
// the addon (scripts/build-native.mjs points NAPI_TYPE_DEF_TMP_FOLDER at
// <target>/napi-rs/mehr-node-type-defs) with @napi-rs/cli's own renderer, the one `napi build
// --dts` uses, and compares them with the committed native.d.ts.
//
//   node scripts/check-types.mjs           exit 1 and show the first differing lines if stale
//   node scripts/check-types.mjs --write   rewrite native.d.ts
//
// Not `napi build --dts` itself: the CLI always passes `--target <triple>`, which puts the build
// in <target>/<triple>/ and compiles mehr-sdk and every dependency a second time.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { spawnSync } from 'node:child_process';

const here = dirname(dirname(fileURLToPath(import.meta.url)));

/** The target dir build-native.mjs used: CARGO_TARGET_DIR, else cargo's. */
function targetDir() {
  if (process.env.CARGO_TARGET_DIR) return process.env.CARGO_TARGET_DIR;
  const run = spawnSync('cargo', ['metadata', '--format-version', '1', '--no-deps', '--manifest-path', join(here, 'Cargo.toml')], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (run.status !== 0) throw new Error(`cargo metadata failed: ${run.stderr}`);
  return JSON.parse(run.stdout).target_directory;
}

/**
 * native.d.ts as the Rust of the last build declares it, and the committed one.
 * @returns {Promise<{ generated: string, committed: string, typeDefFile: string }>}
 */
export async function nativeTypings() {
  const typeDefDir = join(targetDir(), 'napi-rs', 'mehr-node-type-defs');
  const typeDefFile = join(typeDefDir, 'mehr-node');
  if (!existsSync(typeDefFile)) {
    throw new Error(`no type definitions at ${typeDefFile}: build the addon first (node scripts/build-native.mjs)`);
  }
  const { generateTypeDef } = await import('@napi-rs/cli');
  // napi build's defaults (string enums as `declare const enum`, the default header) and, as with
  // `--js false`, no loader, so no binding-target declaration.
  const { dts } = await generateTypeDef({ typeDefDir, cwd: here, declareBindingTarget: false });
  return { generated: dts, committed: readFileSync(join(here, 'native.d.ts'), 'utf8'), typeDefFile };
}

/** The first lines where `a` and `b` differ, for a readable failure. */
export function firstDifferences(a, b, count = 5) {
  const left = a.split('\n');
  const right = b.split('\n');
  const lines = [];
  for (let i = 0; i < Math.max(left.length, right.length) && lines.length < count; i++) {
    if (left[i] !== right[i]) lines.push(`line ${i + 1}:\n  committed: ${right[i] ?? '<end>'}\n  from Rust: ${left[i] ?? '<end>'}`);
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { generated, committed } = await nativeTypings();
  if (process.argv.includes('--write')) {
    writeFileSync(join(here, 'native.d.ts'), generated);
  } else if (generated !== committed) {
    console.error(`native.d.ts is stale (regenerate: npm run build:types):\n${firstDifferences(generated, committed)}`);
    process.exit(1);
  } else {
    console.log('native.d.ts matches the Rust');
  }
}
