// The examples, run as a user would run them, against real daemons.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

import { Daemon, freePort, workdir } from './daemon.mjs';

const root = dirname(dirname(fileURLToPath(import.meta.url)));

test('examples/chat.mjs: two nodes chat over the mesh', { timeout: 120_000 }, async () => {
  const dir = workdir();
  const port = await freePort();
  const a = await Daemon.start(dir, 'a', `[[interfaces]]\ntype = "tcp_server"\nlisten_ip = "127.0.0.1"\nlisten_port = ${port}\n`);
  const b = await Daemon.start(dir, 'b', `[[interfaces]]\ntype = "tcp_client"\ntarget_host = "127.0.0.1"\ntarget_port = ${port}\n`);
  try {
    const run = spawnSync(process.execPath, [join(root, 'examples/chat.mjs'), 'alice', a.dataDir, b.dataDir], { encoding: 'utf8', timeout: 100_000 });
    assert.equal(run.status, 0, run.stdout + run.stderr);
    assert.match(run.stdout, /bob got: hello bob/);
    assert.match(run.stdout, /alice got: (hi alice|bye alice)/);
  } finally {
    await Promise.all([b.stop(), a.stop()]);
  }
});
