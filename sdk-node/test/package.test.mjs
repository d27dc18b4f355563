// The npm package as `npm pack` makes it: it carries everything its install script needs, and
// that script, unpacked outside a Mehr checkout, says clearly what it needs instead of failing
// in cargo. (The full install of a tarball into a fresh app, which builds the addon, was checked
// by hand: see "Install" in the README.)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { workdir } from './daemon.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function packedFiles() {
  const run = spawnSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout)[0].files.map((/** @type {{ path: string }} */ file) => file.path).sort();
}

test('npm pack carries the install script, the Rust crate and the JavaScript layer, and nothing built or test-only', () => {
  const files = packedFiles();
  const needed = [
    'package.json', 'README.md', 'Cargo.toml', 'build.rs', 'scripts/build-native.mjs',
    'native.cjs', 'native.d.ts', 'index.d.ts',
    ...readdirSync(join(root, 'src')).map((name) => `src/${name}`),
    ...readdirSync(join(root, 'lib')).map((name) => `lib/${name}`),
  ];
  for (const file of needed) assert.ok(files.includes(file), `${file} is missing from the package: ${files.join(', ')}`);
  for (const file of files) {
    assert.doesNotMatch(file, /\.node$|^test\/|^test-artifacts\/|^node_modules\/|^benches\/|^examples\//, `${file} should not be packed`);
  }
});

test('the install script, outside a Mehr checkout, names what it needs (MEHR_SOURCE) and checks the checkout', () => {
  const unpacked = join(workdir(), 'node_modules', '@mehr', 'sdk');
  mkdirSync(unpacked, { recursive: true });
  for (const file of packedFiles()) cpSync(join(root, file), join(unpacked, file));
  const env = { ...process.env };
  delete env.MEHR_SOURCE;
  const bare = spawnSync(process.execPath, ['scripts/build-native.mjs'], { cwd: unpacked, env, encoding: 'utf8' });
  assert.equal(bare.status, 1, bare.stdout + bare.stderr);
  assert.match(bare.stderr, /member of the Mehr Cargo workspace/);
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
