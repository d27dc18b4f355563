// Storage through Node streams: a 100 MiB round trip with constant memory, progress, and the
// object calls.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, test } from 'node:test';

import { connect, NotFoundError } from '@mehr/sdk';
import { Daemon, workdir } from './daemon.mjs';

let daemon;
let client;
before(async () => {
  daemon = await Daemon.start(workdir(), 'node');
  client = await connect({ dataDir: daemon.dataDir });
});
after(async () => { await daemon?.stop(); });

const MiB = 1 << 20;

/** `total` pseudo-random bytes in 64 KiB chunks, generated on the fly. */
function generated(total) {
  let sent = 0;
  let counter = 0;
  return new Readable({
    read() {
      if (sent >= total) return this.push(null);
      const size = Math.min(64 * 1024, total - sent);
      const chunk = Buffer.alloc(size);
      for (let i = 0; i < size; i += 32) createHash('sha256').update(String(counter++)).digest().copy(chunk, i);
      sent += size;
      this.push(chunk);
    },
  });
}

test('a 100 MiB put and get through streams, in constant memory', { timeout: 240_000 }, async () => {
  const total = 100 * MiB;
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  let peakRss = rssBefore;
  const sample = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage().rss); }, 20);
  try {
    const putHash = createHash('sha256');
    let progress = 0;
    const source = generated(total);
    source.on('data', (chunk) => putHash.update(chunk));
    const sink = client.createWriteStream({ name: 'big', expectedSize: total, onProgress: (n) => { progress = n; } });
    await pipeline(source, sink);
    const stored = await sink.done;
    console.log(`# after put: peak ${(peakRss / MiB).toFixed(1)} MiB`);
    assert.equal(stored.object.length, total);
    assert.equal(progress, total);
    assert.match(stored.object.id, /^[0-9a-f]{64}$/);

    const getHash = createHash('sha256');
    let received = 0;
    await pipeline(
      client.get(stored.object.id, { onProgress: (n) => { received = n; } }),
      new Writable({ write(chunk, _e, cb) { getHash.update(chunk); cb(); } }),
    );
    assert.equal(received, total);
    assert.equal(getHash.digest('hex'), putHash.digest('hex'));
  } finally {
    clearInterval(sample);
  }
  const grown = (peakRss - rssBefore) / MiB;
  console.log(`# RSS before ${(rssBefore / MiB).toFixed(1)} MiB, peak ${(peakRss / MiB).toFixed(1)} MiB, grown ${grown.toFixed(1)} MiB for a 100 MiB round trip`);
  // Constant memory: less than the object. What remains is bounded by the SDK's HTTP/2 windows
  // (32 MiB per connection, mehr-sdk's connect.rs) and the put queue; `npm test` runs with a
  // 1 MiB V8 semi-space so freed Buffers are collected promptly instead of counting here.
  assert.ok(grown < 96, `RSS grew ${grown.toFixed(1)} MiB`);
});

test('put from a Buffer, stat, list, ranged get, delete', async () => {
  const stored = await client.put(Buffer.from('hello storage'), { name: 'greeting' });
  assert.equal(stored.alreadyStored, false);
  const status = await client.stat(stored.object.id);
  assert.equal(status.object.name, 'greeting');
  assert.equal(status.heldLocally, true);
  assert.equal(status.replication ?? null, null);
  const page = await client.list({ order: 'id' });
  assert.ok(page.objects.some((o) => o.id === stored.object.id));
  assert.equal((await client.getBuffer(stored.object.id, { offset: 6, length: 7 })).toString(), 'storage');
  assert.equal((await client.put('hello storage')).alreadyStored, true);
  await client.delete(stored.object.id);
  await assert.rejects(client.stat(stored.object.id), NotFoundError);
  await assert.rejects(client.challenge(stored.object.id), (e) => e.code === 'NOT_FOUND' || e.code === 'FAILED_PRECONDITION');
});
