// Benchmark: a trivial JS-served function called through the local daemon vs a plain
// @grpc/grpc-js server doing the same work (echo), sequential and 16 concurrent; and storage
// put/get MiB/s through the Node SDK vs the Rust SDK (the `mehr store` CLI, built on mehr-sdk)
// on the same object. One daemon, one run: the figures are ratios against anchors measured here.
//
//   node benches/bench.mjs            (MEHRD_BIN / CARGO_TARGET_DIR locate mehrd and mehr)
import * as grpc from '@grpc/grpc-js';
import { spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, writeFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';

import { connect } from '@mehr/sdk';
import { Daemon, freePort, mehrdBinary, workdir } from '../test/daemon.mjs';

const SEQUENTIAL = Number(process.env.BENCH_CALLS ?? 2000);
const CONCURRENT = 16;
const OBJECT_MIB = Number(process.env.BENCH_OBJECT_MIB ?? 256);

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function measure(call, total, concurrency) {
  for (let i = 0; i < 200; i++) await call(i); // warm-up
  const latencies = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < total) {
      const i = next++;
      const t = performance.now();
      await call(i);
      latencies.push(performance.now() - t);
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { callsPerSecond: total / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

const dir = workdir();
const daemon = await Daemon.start(dir, 'node');
const client = await connect({ dataDir: daemon.dataDir });
const server = await client.serve({ echo: { handler: async (input) => input, maxConcurrency: 64 } });

// The plain grpc-js anchor: one unary method, raw bytes both ways, over loopback TCP.
const raw = { serialize: (b) => b, deserialize: (b) => b };
const definition = {
  echo: { path: '/bench.Echo/Echo', requestStream: false, responseStream: false,
    requestSerialize: raw.serialize, requestDeserialize: raw.deserialize,
    responseSerialize: raw.serialize, responseDeserialize: raw.deserialize },
};
const grpcServer = new grpc.Server();
grpcServer.addService(definition, { echo: (call, callback) => callback(null, call.request) });
const port = await freePort();
await new Promise((resolve, reject) => grpcServer.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? reject(e) : resolve())));
const Echo = grpc.makeGenericClientConstructor(definition, 'Echo');
const plain = new Echo(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
const plainEcho = (input) => new Promise((resolve, reject) => plain.echo(input, (e, r) => (e ? reject(e) : resolve(r))));

const input = Buffer.from('ping');
const rows = [];
for (const [label, concurrency, total] of [['sequential', 1, SEQUENTIAL], ['16 concurrent', CONCURRENT, SEQUENTIAL * 2]]) {
  const viaDaemon = await measure(() => client.invoke('echo', input), total, concurrency);
  const viaGrpc = await measure(() => plainEcho(input), total, concurrency);
  rows.push({ label, viaDaemon, viaGrpc });
}
await server.stop();
plain.close();
grpcServer.forceShutdown();

// Storage: the same object through the Node SDK and the Rust SDK (`mehr store`).
const file = join(dir, 'object.bin');
const chunk = randomBytes(1 << 20);
writeFileSync(file, Buffer.concat(Array.from({ length: OBJECT_MIB }, (_, i) => { const c = Buffer.from(chunk); c.writeUInt32LE(i, 0); return c; })));
const mehr = join(dirname(mehrdBinary()), 'mehr');
const env = { ...process.env, MEHR_DATA_DIR: daemon.dataDir };
function timed(work) { const t = performance.now(); const r = work(); return [r, (performance.now() - t) / 1000]; }
async function timedAsync(work) { const t = performance.now(); const r = await work(); return [r, (performance.now() - t) / 1000]; }

const [putResult, nodePut] = await timedAsync(async () => {
  const sink = client.createWriteStream({ name: 'bench' });
  await pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), sink);
  return sink.done;
});
const id = putResult.object.id;
const [, nodeGet] = await timedAsync(() => pipeline(client.get(id), createWriteStream(join(dir, 'node.out'))));
await client.delete(id);
const [rustPutRun, rustPut] = timed(() => spawnSync(mehr, ['store', 'put', file, '--name', 'bench'], { env, encoding: 'utf8' }));
if (rustPutRun.status !== 0) throw new Error(rustPutRun.stderr);
const [rustGetRun, rustGet] = timed(() => spawnSync(mehr, ['store', 'get', id, '-o', join(dir, 'rust.out')], { env, encoding: 'utf8' }));
if (rustGetRun.status !== 0) throw new Error(rustGetRun.stderr);
await daemon.stop();
rmSync(dir, { recursive: true, force: true });

const f = (n, d = 0) => n.toFixed(d);
console.log(`calls (echo of 4 bytes; ${SEQUENTIAL} sequential, ${SEQUENTIAL * 2} at 16 concurrent)`);
console.log('| mode | SDK via daemon calls/s | grpc-js calls/s | ratio calls/s | SDK p50 ms | grpc-js p50 ms | ratio p50 | SDK p99 ms | grpc-js p99 ms |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const { label, viaDaemon: d, viaGrpc: g } of rows) {
  console.log(`| ${label} | ${f(d.callsPerSecond)} | ${f(g.callsPerSecond)} | ${f(d.callsPerSecond / g.callsPerSecond, 2)} | ${f(d.p50, 3)} | ${f(g.p50, 3)} | ${f(d.p50 / g.p50, 2)} | ${f(d.p99, 3)} | ${f(g.p99, 3)} |`);
}
const mib = (s) => OBJECT_MIB / s;
console.log(`\nstorage (${OBJECT_MIB} MiB object)`);
console.log('| op | Node SDK MiB/s | Rust SDK (mehr store) MiB/s | ratio |');
console.log('|---|---|---|---|');
console.log(`| put | ${f(mib(nodePut))} | ${f(mib(rustPut))} | ${f(rustPut / nodePut, 2)} |`);
console.log(`| get | ${f(mib(nodeGet))} | ${f(mib(rustGet))} | ${f(rustGet / nodeGet, 2)} |`);
