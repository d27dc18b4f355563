// Makes the npm tarball build without a Mehr checkout (the package's `prepack` script).
//
// The addon's crate is a member of the Mehr Cargo workspace: it inherits the workspace's
// dependency versions and reaches mehr-sdk, mehr-proto, mehr-storage (and through it mehr-transport, mehr-wire) by path. `cargo package`
// turns each of those crates into what crates.io would get: a standalone manifest with the
// workspace's inheritance resolved, and only the files the crate needs. This script unpacks
// them into `vendor/<crate>/` and writes `vendor/mehr-node/`, a one-crate workspace whose
// manifest is the packaged mehr-node one pointed at the package's own `src/` and `build.rs`,
// with `[patch.crates-io]` sending the three crates to their vendored copies, the workspace's
// release profile, and the Cargo.lock cargo resolved while packaging (the versions this
// checkout builds with). scripts/build-native.mjs builds it when it finds no workspace.
// `postpack` (`--clean`) removes `vendor/` again: it is an artifact, never committed.
//
//   node scripts/vendor-crates.mjs           write vendor/
//   node scripts/vendor-crates.mjs --clean   remove it
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const vendor = join(here, 'vendor');
/** The workspace crates the addon needs, in dependency order. */
const CRATES = ['mehr-wire', 'mehr-transport', 'mehr-proto', 'mehr-storage', 'mehr-sdk'];

rmSync(vendor, { recursive: true, force: true });
if (process.argv.includes('--clean')) process.exit(0);

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...options });
  if (result.status !== 0) {
    console.error(`@mehr/sdk: ${command} ${args.join(' ')} failed:\n${result.stderr}`);
    process.exit(1);
  }
  return result.stdout;
}

const metadata = JSON.parse(run('cargo', ['metadata', '--format-version', '1', '--no-deps'], { cwd: here }));
const workspaceRoot = metadata.workspace_root;
const version = (name) => metadata.packages.find((p) => p.name === name).version;

const scratch = mkdtempSync(join(tmpdir(), 'mehr-node-vendor-'));
try {
  // `--no-verify`: nothing is compiled here; the install builds it.
  const packages = [...CRATES, 'mehr-node'].flatMap((name) => ['-p', name]);
  run('cargo', ['package', '--no-verify', '--allow-dirty', '--quiet', ...packages, '--target-dir', scratch], { cwd: workspaceRoot });
  mkdirSync(vendor, { recursive: true });
  for (const name of [...CRATES, 'mehr-node']) {
    const crate = join(scratch, 'package', `${name}-${version(name)}.crate`);
    run('tar', ['-xzf', crate, '-C', vendor]);
    renameSync(join(vendor, `${name}-${version(name)}`), join(vendor, name));
    for (const extra of ['Cargo.toml.orig', '.cargo_vcs_info.json']) rmSync(join(vendor, name, extra), { force: true });
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}

for (const name of CRATES) rmSync(join(vendor, name, 'Cargo.lock'), { force: true });

// mehr-node: keep only the packaged manifest and lock; the sources are the package's own.
const nodeCrate = join(vendor, 'mehr-node');
const manifest = readFileSync(join(nodeCrate, 'Cargo.toml'), 'utf8');
const lock = readFileSync(join(nodeCrate, 'Cargo.lock'), 'utf8');
rmSync(nodeCrate, { recursive: true, force: true });
mkdirSync(nodeCrate);

/** The workspace's `[profile.release]` table, as written (the same profile as the tests). */
function releaseProfile() {
  const lines = readFileSync(join(workspaceRoot, 'Cargo.toml'), 'utf8').split('\n');
  const start = lines.findIndex((line) => line.trim() === '[profile.release]');
  if (start < 0) return '';
  const end = lines.findIndex((line, i) => i > start && line.trim().startsWith('['));
  return lines.slice(start, end < 0 ? undefined : end).filter((line) => !line.trim().startsWith('#')).join('\n').trim();
}

const standalone = manifest
  .replace(/^path = "src\/lib\.rs"$/m, 'path = "../../src/lib.rs"')
  .replace(/^build = "build\.rs"$/m, 'build = "../../build.rs"')
  .replace(/^readme = .*\n/m, '');
if (!standalone.includes('../../src/lib.rs') || !standalone.includes('../../build.rs')) {
  console.error('@mehr/sdk: the packaged mehr-node manifest has no `path = "src/lib.rs"` or `build = "build.rs"` to point at the package');
  process.exit(1);
}
writeFileSync(join(nodeCrate, 'Cargo.toml'), `${standalone.trimEnd()}

# Written by scripts/vendor-crates.mjs: this crate is its own workspace, built by the install
# script from an npm tarball, with the Mehr crates it needs vendored beside it.
[workspace]

[patch.crates-io]
${CRATES.map((name) => `${name} = { path = "../${name}" }`).join('\n')}

${releaseProfile()}
`);
writeFileSync(join(nodeCrate, 'Cargo.lock'), lock);
// Let cargo settle the lock once here (the patched crates become path entries, nothing else
// moves), so that the install can build it `--locked`: exactly the versions packed.
run('cargo', ['metadata', '--format-version', '1', '--manifest-path', join(nodeCrate, 'Cargo.toml')], { cwd: nodeCrate });
process.stderr.write(`@mehr/sdk: vendored ${CRATES.join(', ')} into ${vendor}\n`);
