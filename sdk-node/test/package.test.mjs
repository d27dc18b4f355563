// The npm package as `npm pack` makes it: it carries everything its install script needs (the
// Mehr crates the addon needs vendored by the prepack script, as a standalone Cargo workspace
// cargo can resolve), and that script, unpacked outside a Mehr checkout without them, says
// clearly what it needs instead of failing in cargo. (The full install of a tarball into a fresh
// app, which compiles the addon, was checked by hand: see "Install" in the README.)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { workdir } from './daemon.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** The files of `npm pack`; with `scripts`, its prepack/postpack scripts run (vendoring). */
function packedFiles({ scripts = false } = {}) {
  const args = ['pack', '--dry-run', '--json', ...(scripts ? [] : ['--ignore-scripts'])];
  const run = spawnSync(npm, args, { cwd: root, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout)[0].files.map((/** @type {{ path: string }} */ file) => file.path).sort();
}

const vendorScript = join(root, 'scripts', 'vendor-crates.mjs');

test('npm pack carries the install script, the Rust crate, the vendored Mehr crates and the JavaScript layer, and nothing built or test-only', () => {
  const files = packedFiles({ scripts: true });
  const needed = [
    'package.json', 'README.md', 'Cargo.toml', 'build.rs', 'scripts/build-native.mjs', 'scripts/vendor-crates.mjs',
    'native.cjs', 'native.d.ts', 'index.d.ts',
    ...readdirSync(join(root, 'src')).map((name) => `src/${name}`),
    ...readdirSync(join(root, 'lib')).map((name) => `lib/${name}`),
    'vendor/mehr-node/Cargo.toml', 'vendor/mehr-node/Cargo.lock',
    'vendor/mehr-sdk/Cargo.toml', 'vendor/mehr-sdk/src/lib.rs', 'vendor/mehr-storage/src/lib.rs',
    'vendor/mehr-proto/build.rs', 'vendor/mehr-proto/mehr/v1/compute.proto',
  ];
  for (const file of needed) assert.ok(files.includes(file), `${file} is missing from the package: ${files.join(', ')}`);
  for (const file of files) {
    assert.doesNotMatch(file, /\.node$|^test\/|^test-artifacts\/|^node_modules\/|^benches\/|^examples\/|\/target\/|Cargo\.toml\.orig$/, `${file} should not be packed`);
  }
  // postpack removed the vendored copy: it is an artifact of packing, not of the checkout.
  assert.equal(existsSync(join(root, 'vendor')), false);
});

test('the vendored crate is a standalone Cargo workspace that resolves without the checkout', () => {
  const unpacked = join(workdir(), 'package');
  const made = spawnSync(process.execPath, [vendorScript], { cwd: root, encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  try {
    for (const file of packedFiles()) cpSync(join(root, file), join(unpacked, file));
  } finally {
    spawnSync(process.execPath, [vendorScript, '--clean'], { cwd: root });
  }
  // Outside the workspace, cargo places the manifest in its own workspace, with mehr-sdk,
  // mehr-proto and mehr-storage from vendor/ (the patches) and everything else from the lock.
  const manifest = join(unpacked, 'vendor', 'mehr-node', 'Cargo.toml');
  const run = spawnSync('cargo', ['metadata', '--format-version', '1', '--locked', '--manifest-path', manifest], { cwd: unpacked, encoding: 'utf8', maxBuffer: 256 << 20 });
  assert.equal(run.status, 0, run.stderr);
  const metadata = JSON.parse(run.stdout);
  assert.equal(metadata.workspace_root, join(unpacked, 'vendor', 'mehr-node'));
  for (const name of ['mehr-sdk', 'mehr-proto', 'mehr-storage']) {
    const found = metadata.packages.find((p) => p.name === name);
    assert.equal(found?.manifest_path, join(unpacked, 'vendor', name, 'Cargo.toml'), name);
  }
  const addon = metadata.packages.find((p) => p.name === 'mehr-node');
  assert.equal(resolve(addon.targets.find((t) => t.kind.includes('cdylib')).src_path), join(unpacked, 'src', 'lib.rs'));
});

test('the install script, outside a Mehr checkout and without vendor/, names what it needs and checks MEHR_SOURCE', () => {
  const unpacked = join(workdir(), 'node_modules', '@mehr', 'sdk');
  mkdirSync(unpacked, { recursive: true });
  for (const file of packedFiles()) cpSync(join(root, file), join(unpacked, file));
  const env = { ...process.env };
  delete env.MEHR_SOURCE;
  const bare = spawnSync(process.execPath, ['scripts/build-native.mjs'], { cwd: unpacked, env, encoding: 'utf8' });
  assert.equal(bare.status, 1, bare.stdout + bare.stderr);
  assert.match(bare.stderr, /member of the Mehr Cargo workspace/);
  assert.match(bare.stderr, /carries no vendor\/ copy/);
  assert.match(bare.stderr, /MEHR_SOURCE=\/path\/to\/mehr npm install/);

  // A checkout whose Rust sources are not the packaged ones is refused before cargo runs.
  const otherCheckout = join(workdir(), 'mehr');
  mkdirSync(join(otherCheckout, 'sdk-node', 'src'), { recursive: true });
  writeFileSync(join(otherCheckout, 'sdk-node', 'Cargo.toml'), '[package]\nname = "mehr-node"\n');
  writeFileSync(join(otherCheckout, 'sdk-node', 'src', 'lib.rs'), '// another version\n');
  const other = spawnSync(process.execPath, ['scripts/build-native.mjs'], { cwd: unpacked, env: { ...env, MEHR_SOURCE: otherCheckout }, encoding: 'utf8' });
  assert.equal(other.status, 1, other.stdout + other.stderr);
  assert.match(other.stderr, /is not the checkout this package was packed from: its sdk-node\/src differs in .*lib\.rs/);
});
