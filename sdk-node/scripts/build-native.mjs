// Builds the native addon from source (the package's `install` script): `cargo build` of the
// `mehr-node` crate, release unless MEHR_NODE_PROFILE=debug, into CARGO_TARGET_DIR when set
// (tests/run.sh shares its cargo cache this way), then copies the library beside native.cjs
// as `mehr.<platform>.node`, the name napi-rs' `--platform` builds use.
// `npm install ./sdk-node` installs none of the package's own dependencies, so this needs only
// cargo and node (see the README).
//
// Which crate it builds:
// - installed from a Mehr checkout's folder, the package *is* the workspace member: that;
// - unpacked from an `npm pack` tarball, with MEHR_SOURCE naming a checkout: that checkout's
//   sdk-node crate (after checking that its Rust sources are the packaged ones, so the addon
//   matches this package's JavaScript);
// - unpacked from a tarball without MEHR_SOURCE: `vendor/mehr-node`, the standalone crate
//   scripts/vendor-crates.mjs wrote at pack time (the Mehr crates it needs vendored beside it,
//   everything else from crates.io).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const profile = process.env.MEHR_NODE_PROFILE === 'debug' ? 'debug' : 'release';

/** `cargo metadata` of the crate at `manifest`; null when cargo cannot place it in a workspace. */
function metadataOf(manifest) {
  const run = spawnSync('cargo', ['metadata', '--format-version', '1', '--no-deps', '--manifest-path', manifest], { cwd: dirname(manifest), encoding: 'utf8', maxBuffer: 64 << 20 });
  return run.status === 0 ? { metadata: JSON.parse(run.stdout) } : { error: run.stderr.trim() };
}

function fail(message) {
  console.error(`@mehr/sdk: ${message}`);
  process.exit(1);
}

let crate = here;
let found = metadataOf(join(here, 'Cargo.toml'));
const vendored = join(here, 'vendor', 'mehr-node');
if (!found.metadata && !process.env.MEHR_SOURCE && existsSync(join(vendored, 'Cargo.toml'))) {
  crate = vendored;
  found = metadataOf(join(crate, 'Cargo.toml'));
  if (!found.metadata) fail(`cargo cannot read the vendored crate ${join(crate, 'Cargo.toml')}: ${found.error}`);
} else if (!found.metadata) {
  const checkout = process.env.MEHR_SOURCE;
  if (!checkout) {
    fail(`cannot build the native addon here (${here}): its Rust crate is a member of the Mehr Cargo workspace and needs the rest of it (mehr-sdk, the workspace's dependency versions), and this package carries no vendor/ copy of them (a tarball packed with --ignore-scripts skips the prepack script that writes it).
  Either install from a Mehr checkout's folder:        npm install /path/to/mehr/sdk-node
  or a tarball packed with its scripts:                cd sdk-node && npm pack
  or name the checkout this tarball was packed from:   MEHR_SOURCE=/path/to/mehr npm install mehr-sdk-<version>.tgz
(cargo said: ${found.error.split('\n')[0]})`);
  }
  crate = join(checkout, 'sdk-node');
  if (!existsSync(join(crate, 'Cargo.toml'))) fail(`MEHR_SOURCE=${checkout} is not a Mehr checkout (no sdk-node/Cargo.toml there)`);
  const differing = readdirSync(join(here, 'src')).filter((name) => {
    const theirs = join(crate, 'src', name);
    return !existsSync(theirs) || !readFileSync(theirs).equals(readFileSync(join(here, 'src', name)));
  });
  if (differing.length > 0) {
    fail(`MEHR_SOURCE=${checkout} is not the checkout this package was packed from: its sdk-node/src differs in ${differing.join(', ')}`);
  }
  found = metadataOf(join(crate, 'Cargo.toml'));
  if (!found.metadata) fail(`cargo cannot read ${join(crate, 'Cargo.toml')}: ${found.error}`);
}

const targetDir = process.env.CARGO_TARGET_DIR || found.metadata.target_directory;
// napi-derive writes the crate's TypeScript declarations here as it compiles (scripts/
// check-types.mjs turns them into native.d.ts and checks the committed one). The folder is the
// same on every build, so setting it costs no recompile: napi-build reruns when it changes.
const typeDefFolder = join(targetDir, 'napi-rs', 'mehr-node-type-defs');
mkdirSync(typeDefFolder, { recursive: true });
const args = ['build', '-p', 'mehr-node', '--manifest-path', join(crate, 'Cargo.toml')];
// The vendored crate builds exactly the versions its lock was packed with.
if (crate === vendored) args.push('--locked');
if (profile === 'release') args.push('--release');
const built = spawnSync('cargo', args, { stdio: 'inherit', cwd: crate, env: { ...process.env, NAPI_TYPE_DEF_TMP_FOLDER: typeDefFolder } });
if (built.status !== 0) {
  fail('building the native addon failed (cargo and a Rust toolchain are needed)');
}
const library = { linux: 'libmehr_node.so', darwin: 'libmehr_node.dylib', win32: 'mehr_node.dll' }[process.platform];
const source = join(targetDir, profile, library);
if (!existsSync(source)) {
  console.error(`@mehr/sdk: cargo built no ${source}`);
  process.exit(1);
}
const { platformTag } = await import('../lib/platform.cjs');
copyFileSync(source, join(here, `mehr.${platformTag()}.node`));
