// Serving JavaScript functions and invoking them: locally, under load, with failures, across
// a daemon restart, and two hops away on a three-node mesh.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { connect, AbortedError, CancelledError, InvalidArgumentError, NotFoundError, MehrError, ResourceExhaustedError } from '@mehr/sdk';
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
    const streamed = client.invokeStream('count', '3');
    assert.equal(streamed.metering, null);
    for await (const part of streamed) parts.push(part.toString());
    assert.equal(parts.join(''), '1;2;3;end');
    // The last message's metering: the call ran here, served from this process.
    assert.equal(streamed.metering?.providerNodeId, (await client.info()).nodeId);
    assert.equal(streamed.remote, null);
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

/** Resolves once `signal` aborts, with its reason. */
function aborted(signal) {
  return new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason), { once: true }));
}

test('a withdrawn call aborts its handler\'s signal: the caller\'s deadline, and the caller\'s abort', async () => {
  const calls = [];
  let announce;
  const server = await client.serve({
    patient: {
      maxConcurrency: 4,
      handler: async (input, call) => {
        const entry = { input: input.toString(), signal: call.signal, reason: aborted(call.signal) };
        calls.push(entry);
        announce?.(entry);
        await entry.reason;
        return 'too late';
      },
    },
  });
  try {
    const started = () => new Promise((resolve) => { announce = resolve; });
    // 1. The caller's deadline passes: the daemon cancels the call, the handler hears it.
    let running = started();
    const deadline = client.invoke('patient', 'deadline', { placement: 'local', timeoutMs: 700 });
    const first = await running;
    assert.equal(first.signal.aborted, false);
    await assert.rejects(deadline, MehrError);
    const firstReason = await first.reason;
    assert.ok(firstReason instanceof CancelledError, String(firstReason));
    assert.equal(first.signal.aborted, true);
    // 2. The caller aborts: the gRPC call is dropped, the daemon withdraws the call.
    running = started();
    const controller = new AbortController();
    const abortedCall = client.invoke('patient', 'abort', { placement: 'local', timeoutMs: 60_000, signal: controller.signal });
    const second = await running;
    controller.abort(new Error('caller gave up'));
    await assert.rejects(abortedCall, /caller gave up/);
    assert.ok((await second.reason) instanceof CancelledError);
    // A call that finishes normally never aborts its signal.
    const quick = await client.serve({ quick: async (input, call) => { calls.push({ input: 'quick', signal: call.signal }); return input; } });
    assert.equal((await client.invoke('quick', 'q', { placement: 'local' })).output.toString(), 'q');
    await sleep(200);
    assert.equal(calls.find((c) => c.input === 'quick').signal.aborted, false);
    await quick.stop();
  } finally {
    await server.stop();
  }
});

// A WebAssembly echo module, assembled by hand (no WAT compiler needed): `memory`, a
// `mehr_alloc` that hands out address 1024, and `echo(ptr, len)` returning (ptr << 32) | len.
const ECHO_WASM = Buffer.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
  0x01, 0x0c, 0x02, 0x60, 0x01, 0x7f, 0x01, 0x7f, 0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7e,
  0x03, 0x03, 0x02, 0x00, 0x01,
  0x05, 0x03, 0x01, 0x00, 0x01,
  0x07, 0x1e, 0x03,
  0x06, ...Buffer.from('memory'), 0x02, 0x00,
  0x0a, ...Buffer.from('mehr_alloc'), 0x00, 0x00,
  0x04, ...Buffer.from('echo'), 0x00, 0x01,
  0x0a, 0x14, 0x02,
  0x05, 0x00, 0x41, 0x80, 0x08, 0x0b,
  0x0c, 0x00, 0x20, 0x00, 0xad, 0x42, 0x20, 0x86, 0x20, 0x01, 0xad, 0x84, 0x0b,
]);

test('a WebAssembly module: deployed, listed, invoked, removed', async () => {
  assert.ok(WebAssembly.validate(ECHO_WASM), 'the hand-assembled module is valid');
  const deployed = await client.deployModule(ECHO_WASM, { name: 'nodewasm' });
  assert.deepEqual(deployed.functionIds, ['nodewasm/echo']);
  assert.equal(deployed.name, 'nodewasm');
  assert.match(deployed.moduleId, /^[0-9a-f]{64}$/);
  assert.equal((await client.deployModule(ECHO_WASM, { name: 'nodewasm' })).created, false);
  const listed = (await client.functions()).find((f) => f.functionId === 'nodewasm/echo');
  assert.equal(listed.kind, 'FUNCTION_KIND_WASM');
  assert.equal(listed.moduleId, deployed.moduleId);
  assert.match(listed.functionHash, /^[0-9a-f]{64}$/);
  const result = await client.invoke('nodewasm/echo', 'wasm says hi', { placement: 'local', maxFuel: 1_000_000 });
  assert.equal(result.output.toString(), 'wasm says hi');
  assert.equal(result.metering.kind, 'FUNCTION_KIND_WASM');
  assert.ok(result.metering.fuelUsed > 0);
  assert.deepEqual(await client.removeModule('nodewasm'), ['nodewasm/echo']);
  await assert.rejects(client.invoke('nodewasm/echo', 'x', { placement: 'local' }), NotFoundError);
  await assert.rejects(client.deployModule(Buffer.from('\0asm-broken')), MehrError);
});

test('a batched function: concurrent calls merged into batches, one output per call', async () => {
  const batches = [];
  const server = await client.serve({
    'batch.upper': {
      batch: { maxSize: 16, maxWaitMs: 50 },
      handleBatch: async (inputs, calls) => {
        batches.push(calls.map((c) => c.invocationId));
        return inputs.map((input) => input.toString().toUpperCase());
      },
    },
    'batch.wrong': { batch: { maxSize: 4 }, handleBatch: async () => ['only one'] },
  });
  try {
    const words = Array.from({ length: 40 }, (_, i) => `word${i}`);
    const outputs = await Promise.all(words.map((w) => client.invoke('batch.upper', w, { placement: 'local' })));
    assert.deepEqual(outputs.map((o) => o.output.toString()), words.map((w) => w.toUpperCase()));
    assert.equal(batches.flat().length, 40);
    assert.ok(batches.length < 40, `40 calls in ${batches.length} batches`);
    assert.ok(Math.max(...batches.map((b) => b.length)) <= 16);
    const [upperStats] = server.batchStats();
    assert.equal(upperStats.functionId, 'batch.upper');
    assert.equal(upperStats.calls, 40);
    assert.equal(upperStats.batches, batches.length);
    assert.equal(upperStats.largest, Math.max(...batches.map((b) => b.length)));
    // A handler answering the wrong number of outputs fails its batch's calls, clearly.
    await assert.rejects(Promise.all(['a', 'b'].map((x) => client.invoke('batch.wrong', x, { placement: 'local' }))), MehrError);
  } finally {
    await server.stop();
  }
  await assert.rejects(client.serve({ nobatch: { batch: { maxSize: 4 }, handler: async () => 'x' } }), /needs a `handleBatch` function/);
  await assert.rejects(client.serve({ big: { batch: { maxSize: 4, maxWaitMs: 60_000 }, handleBatch: async (i) => i } }), InvalidArgumentError);
});

test('reconnect: a server registers again after the daemon restarts', async () => {
  const server = await client.serve({ 'phoenix.echo': async (input) => input }, { reconnect: true });
  await daemon.stop();
  await daemon.start();
  const again = await connect({ dataDir: daemon.dataDir });
  const answer = await eventually('phoenix.echo served again', async () => {
    try {
      return await again.invoke('phoenix.echo', 'risen', { placement: 'local' });
    } catch (error) {
      if (error instanceof NotFoundError || error.code === 'UNAVAILABLE') return null;
      throw error;
    }
  }, 30_000);
  assert.equal(answer.output.toString(), 'risen');
  assert.ok(server.reconnects >= 1);
  assert.equal(server.connected, true);
  await server.stop();
  await server.closed;
  client = again;
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
    assert.deepEqual(result.remote.providers.map((p) => p.nodeId), [aId]);
    assert.equal(result.remote.providers[0].outcome.startsWith('PROVIDER_OUTCOME_'), true);
    await server.stop();
  } finally {
    await Promise.all([c.stop(), b.stop(), a.stop()]);
  }
});
