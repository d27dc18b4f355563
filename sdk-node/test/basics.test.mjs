// Connecting, node info, errors, events: against one real daemon.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createRequire } from 'node:module';

import { connect, MehrError, NotFoundError, InvalidArgumentError, UnavailableError } from '@mehr/sdk';
import { Daemon, workdir } from './daemon.mjs';

let daemon;
before(async () => { daemon = await Daemon.start(workdir(), 'node'); });
after(async () => { await daemon?.stop(); });

test('connects by data dir, by TCP endpoint with token, and via MEHR_DATA_DIR with no arguments', async () => {
  const byDir = await connect({ dataDir: daemon.dataDir });
  const info = await byDir.info();
  assert.match(info.nodeId, /^[0-9a-f]{32}$/);
  assert.ok(info.version.length > 0);
  const byTcp = await connect({ endpoint: daemon.address, token: daemon.token });
  assert.equal((await byTcp.info()).nodeId, info.nodeId);
  process.env.MEHR_DATA_DIR = daemon.dataDir;
  try {
    const discovered = await connect();
    assert.equal((await discovered.info()).nodeId, info.nodeId);
    assert.equal(discovered.target, `unix:${daemon.socket}`);
  } finally {
    delete process.env.MEHR_DATA_DIR;
  }
});

test('the CommonJS entry point is the same module', () => {
  const require = createRequire(import.meta.url);
  const cjs = require('@mehr/sdk');
  assert.equal(cjs.connect, connect);
  assert.equal(cjs.MehrError, MehrError);
});

test('errors are MehrError subclasses with the gRPC code and the ErrorInfo reason', async () => {
  const client = await connect({ dataDir: daemon.dataDir });
  await assert.rejects(client.stat('00'.repeat(32)), (error) => {
    assert.ok(error instanceof NotFoundError, String(error));
    assert.ok(error instanceof MehrError);
    assert.equal(error.code, 'NOT_FOUND');
    assert.equal(error.grpcCode, 5);
    assert.equal(error.reason, 'OBJECT_NOT_FOUND');
    return true;
  });
  await assert.rejects(client.invoke('no-such-function', 'x'), (error) => error instanceof NotFoundError && typeof error.reason === 'string');
  await assert.rejects(client.stat('zz'), (error) => error instanceof InvalidArgumentError);
  await assert.rejects(connect({ endpoint: 'unix:/nonexistent/mehrd.sock' }), (error) => error instanceof UnavailableError && /no socket there/.test(error.message));
});

test('an aborted call rejects with the signal reason', async () => {
  const client = await connect({ dataDir: daemon.dataDir });
  const controller = new AbortController();
  controller.abort(new Error('stop now'));
  await assert.rejects(client.info({ signal: controller.signal }), /stop now/);
});

test('events arrive in for-await, and breaking the loop ends the stream', async () => {
  const client = await connect({ dataDir: daemon.dataDir });
  const seen = [];
  let registered;
  const loop = (async () => {
    for await (const event of client.events()) {
      seen.push(event.kind);
      if (event.kind === 'function_registered') {
        registered = event;
        break;
      }
    }
  })();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const server = await client.serve({ 'events-probe': async () => 'x' });
  await loop;
  assert.ok(seen.includes('function_registered'), seen.join(','));
  // The event's fields arrive as data (proto JSON names, enums by name), not as debug text.
  assert.equal(registered.detail.functionId, 'events-probe');
  assert.equal(registered.detail.kind, 'FUNCTION_KIND_SERVED');
  assert.equal(typeof registered.sequence, 'number');
  await server.stop();
  const interfaces = await client.interfaces();
  assert.ok(Array.isArray(interfaces));
  assert.ok(Array.isArray(await client.paths()));
  assert.ok(Array.isArray(await client.neighbours()));
  const balance = await client.balance();
  assert.equal(typeof balance.freeUmhr, 'number');
  assert.ok(Array.isArray(await client.channels()));
  assert.ok(Array.isArray(await client.agreements()));
});
