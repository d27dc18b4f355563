// Real mehrd processes for the tests: each on its own temp data dir and free port, SIGTERMed
// at the end. The binary is MEHRD_BIN (tests/run.sh sets it), else the cargo target dir's.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export function mehrdBinary() {
  if (process.env.MEHRD_BIN && existsSync(process.env.MEHRD_BIN)) return process.env.MEHRD_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(process.env.HOME, '.cache/mehr/target');
  const candidate = join(target, 'release', 'mehrd');
  if (existsSync(candidate)) return candidate;
  throw new Error('set MEHRD_BIN to the mehrd binary (tests/run.sh does)');
}

/** Temp dirs of this test file, removed when its process exits (MEHR_KEEP_TEST_DIRS=1 keeps them). */
const workdirs = [];
process.on('exit', () => {
  if (process.env.MEHR_KEEP_TEST_DIRS === '1') return;
  for (const dir of workdirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh temp dir (the 100 MiB test's store is in one: they are removed at exit, see above). */
export function workdir() {
  const dir = mkdtempSync(join(tmpdir(), 'mehr-node-'));
  workdirs.push(dir);
  return dir;
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = tcpConnect(port, '127.0.0.1');
    socket.once('connect', () => { socket.destroy(); resolve(true); });
    socket.once('error', () => resolve(false));
  });
}

/** One daemon; `stop()` and `start()` again keep its data dir and ports. */
export class Daemon {
  constructor(dir, name, config) {
    this.dataDir = join(dir, name);
    this.logPath = join(dir, `${name}.log`);
    this.configPath = config ? join(dir, `${name}.toml`) : null;
    if (config) writeFileSync(this.configPath, config);
    this.process = null;
  }

  static async start(dir, name, config) {
    const daemon = new Daemon(dir, name, config);
    daemon.port = await freePort();
    await daemon.start();
    return daemon;
  }

  get socket() {
    return join(this.dataDir, 'mehrd.sock');
  }
  get token() {
    return readFileSync(join(this.dataDir, 'api.token'), 'utf8').trim();
  }
  get address() {
    return `127.0.0.1:${this.port}`;
  }

  async start() {
    const args = ['--data-dir', this.dataDir, '--api-listen', this.address];
    if (this.configPath) args.push('--config', this.configPath);
    const env = { ...process.env, MEHR_LOG_LEVEL: 'info' };
    // The client's settings, and the test suite's own switches, which mehrd would warn about.
    for (const name of ['MEHR_CONFIG', 'MEHR_ENDPOINT', 'MEHR_TOKEN', 'MEHR_DATA_DIR', 'MEHR_CA_CERT', 'MEHR_TLS_DOMAIN',
      'MEHR_BROWSER_STRICT', 'MEHR_CHROMIUM', 'MEHR_TEST_ARTIFACTS', 'MEHR_KEEP_TEST_DIRS', 'MEHR_SOURCE']) delete env[name];
    if (!this.configPath || !readFileSync(this.configPath, 'utf8').includes('interfaces')) env.MEHR_INTERFACES = '[]';
    const log = openSync(this.logPath, 'a');
    this.process = spawn(mehrdBinary(), args, { stdio: ['ignore', 'ignore', log], env });
    let exited = false;
    this.process.once('exit', () => { exited = true; });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (exited) throw new Error(`mehrd exited early:\n${this.logs()}`);
      if (existsSync(this.socket) && (await canConnect(this.port))) return;
      await sleep(50);
    }
    throw new Error(`mehrd did not start:\n${this.logs()}`);
  }

  logs() {
    try { return readFileSync(this.logPath, 'utf8'); } catch { return ''; }
  }

  async stop() {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Polls `check` until it returns something truthy. */
export async function eventually(what, check, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
