// Builds the native addon from source (the package's `install` script): `cargo build` of the
// `mehr-node` crate, release unless MEHR_NODE_PROFILE=debug, into CARGO_TARGET_DIR when set
// (tests/run.sh shares its cargo cache this way), then copies the library beside native.cjs
// as `mehr.<platform>.node`, the name napi-rs' `--platform` builds use.
// `npm install ./sdk-node` installs none of the package's own dependencies, so this needs only
// cargo and node (see the README).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const profile = process.env.MEHR_NODE_PROFILE === 'debug' ? 'debug' : 'release';
const args = ['build', '-p', 'mehr-node', '--manifest-path', join(here, 'Cargo.toml')];
if (profile === 'release') args.push('--release');
const built = spawnSync('cargo', args, { stdio: 'inherit', cwd: here });
if (built.status !== 0) {
  console.error('@mehr/sdk: building the native addon failed (cargo and a Rust toolchain are needed)');
  process.exit(built.status ?? 1);
}
const metadata = spawnSync('cargo', ['metadata', '--format-version', '1', '--no-deps', '--manifest-path', join(here, 'Cargo.toml')], { cwd: here, encoding: 'utf8', maxBuffer: 64 << 20 });
const targetDir = process.env.CARGO_TARGET_DIR || JSON.parse(metadata.stdout).target_directory;
const library = { linux: 'libmehr_node.so', darwin: 'libmehr_node.dylib', win32: 'mehr_node.dll' }[process.platform];
const source = join(targetDir, profile, library);
if (!existsSync(source)) {
  console.error(`@mehr/sdk: cargo built no ${source}`);
  process.exit(1);
}
const { platformTag } = await import('../lib/platform.cjs');
copyFileSync(source, join(here, `mehr.${platformTag()}.node`));
