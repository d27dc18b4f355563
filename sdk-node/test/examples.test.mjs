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

test('examples/web-store.mjs: upload, object id and replication state, download back', { timeout: 60_000 }, async () => {
  const { startWebApp } = await import('../examples/web-store.mjs');
  const { connect } = await import('@mehr/sdk');
  const daemon = await Daemon.start(workdir(), 'web');
  const server = await startWebApp(await connect({ dataDir: daemon.dataDir }), 0);
  try {
    const base = `http://127.0.0.1:${server.address().port}`;
    const page = await (await fetch(`${base}/`)).text();
    assert.match(page, /<form id="upload">/);
    const body = Buffer.alloc(3 * 1024 * 1024 + 17, 'mehr');
    const stored = await (await fetch(`${base}/objects?name=photo.jpg`, { method: 'POST', body })).json();
    assert.match(stored.id, /^[0-9a-f]{64}$/);
    assert.equal(stored.length, body.length);
    const status = await (await fetch(`${base}/objects/${stored.id}/status`)).json();
    assert.equal(status.heldLocally, true);
    assert.equal(status.object.name, 'photo.jpg');
    const download = await fetch(`${base}/objects/${stored.id}`);
    assert.equal(download.headers.get('content-disposition'), 'attachment; filename="photo.jpg"');
    assert.ok(Buffer.from(await download.arrayBuffer()).equals(body));
    assert.equal((await fetch(`${base}/objects/${'0'.repeat(64)}/status`)).status, 404);
  } finally {
    server.close();
    await daemon.stop();
  }
});
