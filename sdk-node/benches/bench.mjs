// Benchmark: a trivial JS-served function called through the local daemon vs a plain
// @grpc/grpc-js server doing the same work (echo), sequential and 16 concurrent; and storage
// put/get MiB/s through the Node SDK vs the Rust SDK (the `mehr store` CLI, built on mehr-sdk)
// on the same object; and one mesh hop: a JS function served on node B, invoked from Node
// through node A one hop away, by the SDK and by a plain @grpc/grpc-js client (server
// reflection, no generated code) sending A the same ComputeService/Invoke over the same Unix
// socket. One run: the figures are ratios against anchors measured here.
//
//   node benches/bench.mjs            (MEHRD_BIN / CARGO_TARGET_DIR locate mehrd and mehr)
//   BENCH_ONLY=mesh node benches/bench.mjs     (only the mesh-hop rows)
import * as grpc from '@grpc/grpc-js';
import { spawnSync } from 'node:child_process';
import { createReadStream, createWriteStream, writeFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';

import { GrpcReflection } from 'grpc-js-reflection-client';
import { connect } from '@mehr/sdk';
import { Daemon, freePort, mehrdBinary, workdir } from '../test/daemon.mjs';

const SEQUENTIAL = Number(process.env.BENCH_CALLS ?? 2000);
const CONCURRENT = 16;
const OBJECT_MIB = Number(process.env.BENCH_OBJECT_MIB ?? 256);
const MESH_CALLS = Number(process.env.BENCH_MESH_CALLS ?? 1000);
const ONLY = process.env.BENCH_ONLY;

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Calls `total` times at `concurrency` in flight: calls/s and latency percentiles. */
async function measure(call, total, concurrency) {
  for (let i = 0; i < 200; i++) await call(i); // warm-up
  const { latencies, seconds } = await timedCalls(call, total, concurrency);
  latencies.sort((a, b) => a - b);
  return { callsPerSecond: total / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

/** Like `measure` for two ways of making a call, alternated in `rounds` blocks so that the
 * load of a shared machine drifting during the run falls on both alike. */
async function measurePair(calls, total, concurrency, rounds = 5) {
  for (const call of calls) for (let i = 0; i < 100; i++) await call(i); // warm-up
  const runs = calls.map(() => ({ latencies: [], seconds: 0 }));
  for (let round = 0; round < rounds; round++) {
    for (const [which, call] of calls.entries()) {
      const { latencies, seconds } = await timedCalls(call, Math.ceil(total / rounds), concurrency);
      runs[which].latencies.push(...latencies);
      runs[which].seconds += seconds;
    }
  }
  return runs.map(({ latencies, seconds }) => {
    latencies.sort((a, b) => a - b);
    return { callsPerSecond: latencies.length / seconds, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
  });
}

async function timedCalls(call, total, concurrency) {
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
  return { latencies, seconds: (performance.now() - started) / 1000 };
}

async function localRows() {
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
  return { rows, nodePut, nodeGet, rustPut, rustGet };
}

/** One mesh hop: `hop.echo` served (by this process, through the SDK) on B, called on A. */
async function meshRows() {
  const dir = workdir();
  const port = await freePort();
  const a = await Daemon.start(dir, 'a', `[[interfaces]]\ntype = "tcp_server"\nlisten_ip = "127.0.0.1"\nlisten_port = ${port}\n`);
  const b = await Daemon.start(dir, 'b', `[[interfaces]]\ntype = "tcp_client"\ntarget_host = "127.0.0.1"\ntarget_port = ${port}\n`);
  const bClient = await connect({ dataDir: b.dataDir });
  const aClient = await connect({ dataDir: a.dataDir });
  const bId = (await bClient.info()).nodeId;
  const served = await bClient.serve({ 'hop.echo': { handler: async (input) => input, maxConcurrency: 64 } });
  const input = Buffer.from('ping');
  const options = { placement: 'mesh', timeoutMs: 10_000 };
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      const first = await aClient.invoke('hop.echo', input, options);
      if (first.metering?.providerNodeId !== bId) throw new Error('hop.echo did not run on B');
      break;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  // The anchor: plain grpc-js, the same request to A over the same socket.
  const target = `unix:${a.socket}`;
  const credentials = grpc.credentials.createInsecure();
  const reflection = new GrpcReflection(target, credentials);
  const descriptor = await reflection.getDescriptorBySymbol('mehr.v1.ComputeService');
  const pkg = descriptor.getPackageObject({ keepCase: true, longs: String, defaults: true });
  const compute = new pkg.mehr.v1.ComputeService(target, credentials);
  const request = { function_id: 'hop.echo', input, placement: 'PLACEMENT_MESH', deadline_ms: 10_000 };
  const plainInvoke = () => new Promise((resolve, reject) => compute.Invoke(request, (e, r) => (e ? reject(e) : resolve(r))));
  const check = await plainInvoke();
  if (Buffer.from(check.output).toString() !== 'ping') throw new Error('grpc-js anchor: wrong output');
  const rows = [];
  for (const [label, concurrency, total] of [['sequential', 1, MESH_CALLS], ['16 concurrent', CONCURRENT, MESH_CALLS * 2]]) {
    const [viaSdk, viaGrpc] = await measurePair([() => aClient.invoke('hop.echo', input, options), plainInvoke], total, concurrency);
    rows.push({ label, viaSdk, viaGrpc });
  }
  compute.close();
  await served.stop();
  await Promise.all([a.stop(), b.stop()]);
  rmSync(dir, { recursive: true, force: true });
  return rows;
}

const f = (n, d = 0) => n.toFixed(d);
if (ONLY !== 'mesh') {
  const { rows, nodePut, nodeGet, rustPut, rustGet } = await localRows();
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
}

const meshTable = await meshRows();
console.log(`\none mesh hop (hop.echo served on B, called on A; ${MESH_CALLS} sequential, ${MESH_CALLS * 2} at 16 concurrent, each in 5 blocks alternating SDK and grpc-js)`);
console.log('| mode | SDK calls/s | grpc-js calls/s | ratio calls/s | SDK p50 ms | grpc-js p50 ms | ratio p50 | SDK p99 ms | grpc-js p99 ms |');
console.log('|---|---|---|---|---|---|---|---|---|');
for (const { label, viaSdk: d, viaGrpc: g } of meshTable) {
  console.log(`| ${label} | ${f(d.callsPerSecond)} | ${f(g.callsPerSecond)} | ${f(d.callsPerSecond / g.callsPerSecond, 2)} | ${f(d.p50, 3)} | ${f(g.p50, 3)} | ${f(d.p50 / g.p50, 2)} | ${f(d.p99, 3)} | ${f(g.p99, 3)} |`);
}
