// Serving JavaScript functions and invoking them: locally, under load, with failures, across
// a daemon restart, and two hops away on a three-node mesh.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { connect, AbortedError, NotFoundError, MehrError, ResourceExhaustedError } from '@mehr/sdk';
import { Daemon, eventually, freePort, workdir } from './daemon.mjs';

let daemon;
let client;
before(async () => {
  daemon = await Daemon.start(workdir(), 'node');
  client = await connect({ dataDir: daemon.dataDir });
});
after(async () => { await daemon?.stop(); });

test('async and async-generator handlers: whole and streamed outputs', async () => {
  const server = await client.serve({
    upper: async (input) => input.toString().toUpperCase(),
    count: {
      handler: async function* (input) {
        for (let i = 1; i <= Number(input.toString()); i++) yield `${i};`;
        return 'end';
      },
      maxConcurrency: 2,
      description: 'counts',
    },
  });
  try {
    assert.deepEqual(server.functions.sort(), ['count', 'upper']);
    const result = await client.invoke('upper', 'hello', { placement: 'local' });
    assert.equal(result.output.toString(), 'HELLO');
    const parts = [];
    for await (const part of client.invokeStream('count', '3')) parts.push(part.toString());
    assert.equal(parts.join(''), '1;2;3;end');
    const listed = await client.functions();
    assert.equal(listed.find((f) => f.functionId === 'count').maxConcurrency, 2);
  } finally {
    await server.stop();
  }
});

test('100 concurrent invocations against a max concurrency of 8', async () => {
  let running = 0;
  let peak = 0;
  const server = await client.serve({
    slow: {
      handler: async (input) => {
        running++;
        peak = Math.max(peak, running);
        await sleep(20);
        running--;
        return input;
      },
      maxConcurrency: 8,
    },
  });
  try {
    // The daemon runs 8 and queues 64 (its bound); the rest are refused with
    // RESOURCE_EXHAUSTED and a retry delay, so a well-behaved caller retries them.
    let refused = 0;
    const call = async (i) => {
      for (;;) {
        try {
          return await client.invoke('slow', `call ${i}`, { timeoutMs: 60_000 });
        } catch (error) {
          if (!(error instanceof ResourceExhaustedError)) throw error;
          refused++;
          await sleep(50);
        }
      }
    };
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => call(i)));
    results.forEach((r, i) => assert.equal(r.output.toString(), `call ${i}`));
    console.log(`# peak ${peak} handlers at once, ${refused} refusals retried`);
    assert.ok(peak <= 8, `peak ${peak}`);
    assert.ok(peak >= 2, `calls ran concurrently (peak ${peak})`);
  } finally {
    await server.stop();
  }
});

test('a throwing handler gives the caller a clear error and serving continues', async () => {
  const server = await client.serve({
    fragile: async (input) => {
      if (input.toString() === 'boom') throw new RangeError('input out of range');
      return 'fine';
    },
    syncThrow: (input) => { throw new TypeError(`sync ${input}`); },
  });
  try {
    await assert.rejects(client.invoke('fragile', 'boom'), (error) => {
      assert.ok(error instanceof AbortedError, String(error));
      assert.match(error.message, /RangeError: input out of range/);
      return true;
    });
    await assert.rejects(client.invoke('syncThrow', 'x'), /TypeError: sync x/);
    assert.equal((await client.invoke('fragile', 'ok')).output.toString(), 'fine');
  } finally {
    await server.stop();
  }
  // Stopped: the function is gone.
  await assert.rejects(client.invoke('fragile', 'ok', { placement: 'local' }), NotFoundError);
});

test('a daemon restarted while serving: `closed` settles, serving again works', async () => {
  // Documented behaviour: the serving stream ends with the daemon (`closed` resolves on a
  // clean shutdown, rejects with UNAVAILABLE when the connection breaks); the app serves again
  // on a new connection once the daemon is back. Calls in flight fail for their callers.
  const server = await client.serve({ echo: async (input) => input });
  await daemon.stop();
  const outcome = await server.closed.then(() => 'resolved', (error) => error);
  assert.ok(outcome === 'resolved' || outcome instanceof MehrError, String(outcome));
  await daemon.start();
  const again = await connect({ dataDir: daemon.dataDir });
  const server2 = await again.serve({ echo: async (input) => input });
  assert.equal((await again.invoke('echo', 'back')).output.toString(), 'back');
  await server2.stop();
  client = again;
});

test('serve on A, invoke from C two hops away', { timeout: 240_000 }, async () => {
  const dir = workdir();
  const [ab, bc] = [await freePort(), await freePort()];
  const a = await Daemon.start(dir, 'a', `[[interfaces]]\ntype = "tcp_server"\nlisten_ip = "127.0.0.1"\nlisten_port = ${ab}\n`);
  const b = await Daemon.start(dir, 'b', `[[interfaces]]\ntype = "tcp_client"\ntarget_host = "127.0.0.1"\ntarget_port = ${ab}\n\n[[interfaces]]\ntype = "tcp_server"\nlisten_ip = "127.0.0.1"\nlisten_port = ${bc}\n`);
  const c = await Daemon.start(dir, 'c', `[[interfaces]]\ntype = "tcp_client"\ntarget_host = "127.0.0.1"\ntarget_port = ${bc}\n`);
  try {
    const aClient = await connect({ dataDir: a.dataDir });
    const cClient = await connect({ dataDir: c.dataDir });
    const aId = (await aClient.info()).nodeId;
    const server = await aClient.serve({ 'mesh.upper': { handler: async (t) => t.toString().toUpperCase(), maxConcurrency: 4 } });
    const result = await eventually('mesh.upper reachable from C', async () => {
      try {
        return await cClient.invoke('mesh.upper', 'two hops', { timeoutMs: 30_000 });
      } catch (error) {
        if (error instanceof NotFoundError || error.code === 'UNAVAILABLE' || error.code === 'DEADLINE_EXCEEDED') return null;
        throw error;
      }
    }, 180_000);
    assert.equal(result.output.toString(), 'TWO HOPS');
    assert.equal(result.metering.providerNodeId, aId);
    assert.deepEqual(result.remote.providers, [aId]);
    await server.stop();
  } finally {
    await Promise.all([c.stop(), b.stop(), a.stop()]);
  }
});
