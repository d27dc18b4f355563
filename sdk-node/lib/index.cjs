'use strict';
// The public API: Promises, `for await` iterators, Node streams and AbortSignals over the
// native addon (src/). Each native method is awaited through `native()` so that its errors
// become MehrError subclasses, and through `cancellable()` where an AbortSignal may cut it.
const { Readable, Writable, pipeline } = require('node:stream');
const { promisify } = require('node:util');
const native = require('../native.cjs');
const errors = require('./errors.cjs');

const { translate, CancelledError } = errors;
const pipe = promisify(pipeline);
const EMPTY = Buffer.alloc(0);

async function nativeCall(work) {
  try {
    return await work();
  } catch (error) {
    throw translate(error);
  }
}

// The caller's trace position: with the optional peer dependency @opentelemetry/api installed
// and a span active, every call carries its W3C `traceparent`, so the daemon's span of the call
// (and, on the mesh, the provider's) joins the caller's trace. Without the package this is one
// failed require per process.
let openTelemetry;
function traceparent() {
  if (openTelemetry === undefined) {
    try {
      openTelemetry = require('@opentelemetry/api');
    } catch {
      openTelemetry = null;
    }
  }
  if (!openTelemetry) return undefined;
  const { trace, context } = openTelemetry;
  const position = trace.getSpanContext(context.active());
  if (!position || !trace.isSpanContextValid(position)) return undefined;
  const flags = (position.traceFlags & 0xff).toString(16).padStart(2, '0');
  return `00-${position.traceId}-${position.spanId}-${flags}`;
}

/** Runs `work(token)`: the token carries the caller's trace position and is cancelled when
 * `signal` aborts. */
async function cancellable(signal, work) {
  const traced = traceparent();
  if (!signal) {
    return nativeCall(() => work(traced === undefined ? undefined : new native.CancelToken(traced)));
  }
  signal.throwIfAborted();
  const token = new native.CancelToken(traced);
  const onAbort = () => token.cancel();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await work(token);
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    throw translate(error);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

function toBuffer(value, what = 'payload') {
  if (value === undefined || value === null) return EMPTY;
  if (Buffer.isBuffer(value)) return value;
  if (typeof value === 'string') return Buffer.from(value);
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError(`${what} must be a Buffer, Uint8Array or string, not ${typeof value}`);
}

/** An async iterable over the native pull stream `open(token)` resolves with (opened when the
 * iteration starts); breaking the loop closes the stream. */
function iterate(open, signal, map = (item) => item) {
  return {
    async *[Symbol.asyncIterator]() {
      const stream = await cancellable(signal, open);
      try {
        for (;;) {
          const item = await cancellable(signal, (token) => stream.next(token));
          if (item === null || item === undefined) return;
          yield map(item);
        }
      } finally {
        await stream.close();
      }
    },
  };
}

/** A node event with its fields parsed (the addon sends them as JSON). */
function nodeEvent(event) {
  return { sequence: event.sequence, atUnixMs: event.atUnixMs, kind: event.kind, detail: JSON.parse(event.detailJson) };
}

function isAsyncIterator(value) {
  return value !== null && typeof value === 'object' && typeof value[Symbol.asyncIterator] === 'function' && typeof value.next === 'function';
}

// Servers alive in this process: Ctrl-C stops (unregisters) them before the process exits.
const liveServers = new Set();
let sigintInstalled = false;
function installSigint() {
  if (sigintInstalled) return;
  sigintInstalled = true;
  process.once('SIGINT', async () => {
    await Promise.allSettled([...liveServers].map((server) => server.stop()));
    // Nobody else handles SIGINT: exit as Node would have (128 + 2).
    if (process.listenerCount('SIGINT') === 0) process.exit(130);
  });
}

/** Functions served from this process. */
class Server {
  #native;
  #serveAgain;
  #stopped = false;
  #wake = () => {};
  constructor(nativeServer, serveAgain, reconnect) {
    this.#native = nativeServer;
    this.#serveAgain = serveAgain;
    /** False while the connection is lost and the SDK is serving again (`reconnect`). */
    this.connected = true;
    /** How many times the functions were registered again after the connection was lost. */
    this.reconnects = 0;
    /** Resolves when serving has ended; rejects when the connection to the daemon failed. */
    this.closed = this.#serve(reconnect).finally(() => liveServers.delete(this));
    // A `closed` nobody awaits must not become an unhandled rejection.
    this.closed.catch(() => {});
    liveServers.add(this);
  }
  /** Waits on the serving stream; with `reconnect`, registers again whenever it ends without
   * `stop()` (the daemon restarted, the connection broke), backing off from 100 ms to 5 s. */
  async #serve(reconnect) {
    for (;;) {
      let failure = null;
      try {
        await nativeCall(() => this.#native.wait());
      } catch (error) {
        failure = error;
      }
      if (!reconnect || this.#stopped) {
        if (failure) throw failure;
        return;
      }
      this.connected = false;
      for (let delay = 100; ; delay = Math.min(delay * 2, 5_000)) {
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.#wake = () => { clearTimeout(timer); resolve(); };
        });
        if (this.#stopped) return;
        try {
          this.#native = await this.#serveAgain();
          this.reconnects += 1;
          this.connected = true;
          break;
        } catch {
          // The daemon is not back yet: try again after the next delay.
        }
      }
    }
  }
  /** The ids of the functions served. */
  get functions() {
    return this.#native.functions;
  }
  /** The batching counters of each batched function (over the current serving stream). */
  batchStats() {
    return this.#native.batchStats();
  }
  /** @internal The serving stream calls arrive on now (a call's partial outputs go back on it). */
  get stream() {
    return this.#native;
  }
  /** Stops cleanly: no new calls, running calls finish, then `closed` settles. */
  async stop() {
    this.#stopped = true;
    this.#wake();
    await nativeCall(() => this.#native.stop());
    await this.closed.catch(() => {});
  }
  async [Symbol.asyncDispose]() {
    await this.stop();
  }
}

/** A connection to a Mehr daemon. */
class Client {
  #native;
  constructor(nativeClient) {
    this.#native = nativeClient;
  }
  /** Where this client is connected. */
  get target() {
    return this.#native.target;
  }

  // ----- node, transport -----
  info(options = {}) {
    return cancellable(options.signal, (token) => this.#native.info(token));
  }
  events(options = {}) {
    return iterate((token) => this.#native.events(token), options.signal, nodeEvent);
  }
  interfaces(options = {}) {
    return cancellable(options.signal, (token) => this.#native.interfaces(token));
  }
  paths(options = {}) {
    return cancellable(options.signal, (token) => this.#native.paths(options.mehrOnly ?? false, token));
  }
  neighbours(options = {}) {
    return cancellable(options.signal, (token) => this.#native.neighbours(token));
  }
  announce(options = {}) {
    return cancellable(options.signal, (token) => this.#native.announce(token));
  }

  // ----- messaging -----
  async listen(name, options = {}) {
    const listener = await cancellable(options.signal, (token) => this.#native.listen(name, options.announce ?? true, token));
    const messages = listener.takeMessages();
    return {
      destination: listener.destination,
      [Symbol.asyncIterator]: () => iterate(() => messages, options.signal)[Symbol.asyncIterator](),
      close: () => messages.close(),
    };
  }
  send(destination, payload, options = {}) {
    return cancellable(options.signal, (token) => this.#native.send(destination, toBuffer(payload), options.timeoutMs, options.policy, token));
  }
  reply(linkId, payload, options = {}) {
    return cancellable(options.signal, (token) => this.#native.reply(linkId, toBuffer(payload), token));
  }

  // ----- compute -----
  async serve(functions, options = {}) {
    const entries = Object.entries(functions).map(([name, entry]) =>
      typeof entry === 'function' ? [name, { handler: entry }] : [name, entry]);
    for (const [name, entry] of entries) {
      const wanted = entry.batch ? 'handleBatch' : 'handler';
      if (typeof entry[wanted] !== 'function') throw new TypeError(`function \`${name}\` needs a \`${wanted}\` function`);
    }
    const handlers = new Map(entries.map(([name, entry]) => [name, entry.batch ? entry.handleBatch : entry.handler]));
    let resolveServer;
    const serverReady = new Promise((resolve) => { resolveServer = resolve; });
    // The calls running now, each with the AbortController of its handler's signal.
    const running = new Map();
    const handler = new native.JsHandler(async (call) => {
      if (call.withdrawn) {
        // The daemon withdrew a call delivered before (deadline, caller gone, serving stopped).
        running.get(call.invocationId)?.abort(new CancelledError(
          `CANCELLED: call ${call.invocationId} of ${call.functionId} was withdrawn`, { grpcCode: 1 }));
        return EMPTY;
      }
      const fn = handlers.get(call.functionId);
      const controller = new AbortController();
      running.set(call.invocationId, controller);
      const context = {
        functionId: call.functionId,
        invocationId: call.invocationId,
        remainingMs: call.remainingMs,
        signal: controller.signal,
      };
      try {
        const result = fn(call.input, context);
        if (isAsyncIterator(result)) {
          // The stream this call came on (after a reconnect, ids start again on a new one).
          const stream = (await serverReady).stream;
          for (;;) {
            const step = await result.next();
            if (step.done) return toBuffer(step.value, 'the handler result');
            if (!(await stream.emit(call.invocationId, toBuffer(step.value, 'a yielded chunk')))) {
              await result.return?.(undefined);
              return EMPTY;
            }
          }
        }
        return toBuffer(await result, 'the handler result');
      } catch (error) {
        const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
        throw new Error(`handler of ${call.functionId} failed: ${message}`);
      } finally {
        running.delete(call.invocationId);
      }
    }, entries.some(([, entry]) => entry.batch) ? async (batch) => {
      // A batch of a batched function: one handler call, one output per call, in order.
      const fn = handlers.get(batch.functionId);
      const calls = batch.invocationIds.map((invocationId, i) => ({
        functionId: batch.functionId, invocationId, remainingMs: batch.remainingMs[i],
      }));
      try {
        const outputs = await fn(batch.inputs, calls);
        if (!Array.isArray(outputs)) throw new TypeError(`a batch handler returns an array of outputs, not ${typeof outputs}`);
        return outputs.map((output) => toBuffer(output, 'a batch output'));
      } catch (error) {
        const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
        throw new Error(`handler of ${batch.functionId} failed: ${message}`);
      }
    } : undefined);
    const specs = entries.map(([name, entry]) => ({
      name,
      description: entry.description,
      pricePerInvocationUmhr: entry.pricePerInvocationUmhr,
      maxConcurrency: entry.maxConcurrency ?? options.maxConcurrency ?? 1,
      maxInputBytes: entry.maxInputBytes,
      batchMaxSize: entry.batch?.maxSize,
      batchMaxWaitMs: entry.batch?.maxWaitMs,
      batchMaxQueue: entry.batch?.maxQueue,
    }));
    const serveAgain = () => nativeCall(() => this.#native.serve(specs, handler));
    const server = new Server(await serveAgain(), serveAgain, options.reconnect ?? false);
    resolveServer(server);
    installSigint();
    if (options.signal) {
      const stop = () => server.stop().catch(() => {});
      if (options.signal.aborted) stop();
      else options.signal.addEventListener('abort', stop, { once: true });
    }
    return server;
  }
  invoke(functionId, input, options = {}) {
    const { signal, ...limits } = options;
    return cancellable(signal, (token) => this.#native.invoke(functionId, toBuffer(input, 'input'), limits, token));
  }
  invokeStream(functionId, input, options = {}) {
    const { signal, ...limits } = options;
    const bytes = toBuffer(input, 'input');
    const outputs = iterate((token) => this.#native.invokeStream(functionId, bytes, limits, token), signal);
    const stream = {
      /** Set once the last output has arrived: who ran the call and what it cost. */
      metering: null,
      /** Set once the last output has arrived, for a call that ran on the mesh. */
      remote: null,
      async *[Symbol.asyncIterator]() {
        for await (const message of outputs) {
          if (message.output.length > 0) yield message.output;
          if (message.done) {
            stream.metering = message.metering ?? null;
            stream.remote = message.remote ?? null;
            return;
          }
        }
      },
    };
    return stream;
  }
  functions(options = {}) {
    return cancellable(options.signal, (token) => this.#native.functions(token));
  }
  /** Deploys a WebAssembly module; its exports are offered as `<name>/<export>`. */
  deployModule(wasm, options = {}) {
    return cancellable(options.signal, (token) => this.#native.deployModule(toBuffer(wasm, 'wasm'), options.name, token));
  }
  /** Removes a module (name or id); resolves with the function ids no longer offered. */
  removeModule(module, options = {}) {
    return cancellable(options.signal, (token) => this.#native.removeModule(module, token));
  }

  // ----- storage -----
  /** A Writable that stores what is written as one object; `done` resolves with the result. */
  createWriteStream(options = {}) {
    const opening = cancellable(undefined, (token) => this.#native.putOpen(options.name, options.expectedSize, token));
    opening.catch(() => {});
    let sent = 0;
    let settle;
    const done = new Promise((resolve, reject) => { settle = { resolve, reject }; });
    done.catch(() => {});
    const stream = new Writable({
      highWaterMark: 1 << 20,
      write(chunk, _encoding, callback) {
        opening
          .then((writer) => writer.write(chunk))
          .then(() => {
            sent += chunk.length;
            options.onProgress?.(sent);
            callback();
          }, (error) => callback(translate(error)));
      },
      final(callback) {
        opening
          .then((writer) => writer.finish())
          .then((result) => { settle.resolve(result); callback(); }, (error) => callback(translate(error)));
      },
      destroy(error, callback) {
        if (error) {
          settle.reject(error);
          opening.then((writer) => writer.abort(String(error.message ?? error)), () => {}).finally(() => callback(error));
        } else callback(null);
      },
    });
    if (options.signal) {
      options.signal.addEventListener('abort', () => stream.destroy(options.signal.reason), { once: true });
    }
    stream.done = done;
    return stream;
  }
  /** Stores `source` (bytes, a string, a Readable or any async iterable of chunks). */
  async put(source, options = {}) {
    const stream = this.createWriteStream(options);
    const readable = (Buffer.isBuffer(source) || typeof source === 'string' || source instanceof Uint8Array)
      ? Readable.from([toBuffer(source)], { objectMode: false })
      : source;
    await pipe(readable, stream);
    return stream.done;
  }
  /** A Readable of object `id` (hex), or of `length` bytes from `offset`. */
  get(id, options = {}) {
    const nativeClient = this.#native;
    const { signal, onProgress } = options;
    async function* chunks() {
      const stream = await cancellable(signal, (token) => nativeClient.get(id, options.offset, options.length, token));
      let received = 0;
      try {
        for (;;) {
          const chunk = await cancellable(signal, (token) => stream.next(token));
          if (!chunk) return;
          received += chunk.data.length;
          onProgress?.(received);
          yield chunk.data;
        }
      } finally {
        await stream.close();
      }
    }
    return Readable.from(chunks(), { objectMode: false, highWaterMark: 1 << 20 });
  }
  /** The whole object as one Buffer (for small objects). */
  async getBuffer(id, options = {}) {
    const parts = [];
    for await (const chunk of this.get(id, options)) parts.push(chunk);
    return Buffer.concat(parts);
  }
  stat(id, options = {}) {
    return cancellable(options.signal, (token) => this.#native.stat(id, token));
  }
  list(query = {}) {
    const { signal, ...page } = query;
    return cancellable(signal, (token) => this.#native.list(page, token));
  }
  delete(id, options = {}) {
    return cancellable(options.signal, (token) => this.#native.delete(id, token));
  }
  replicate(id, providers, options = {}) {
    return cancellable(options.signal, (token) => this.#native.replicate(id, providers, options.dataShards, options.parityShards, token));
  }
  challenge(id, options = {}) {
    return cancellable(options.signal, (token) => this.#native.challenge(id, token));
  }

  // ----- ledger, market -----
  balance(options = {}) {
    return cancellable(options.signal, (token) => this.#native.balance(token));
  }
  channels(options = {}) {
    return cancellable(options.signal, (token) => this.#native.channels(token));
  }
  openChannel(peer, depositUmhr, options = {}) {
    return cancellable(options.signal, (token) => this.#native.openChannel(peer, depositUmhr, options.peerDepositUmhr ?? 0, options.timeoutMs, token));
  }
  pay(peer, amountUmhr, options = {}) {
    return cancellable(options.signal, (token) => this.#native.pay(peer, amountUmhr, options.timeoutMs, token));
  }
  /** Settles a channel: `checkpoint` (default; it stays open), `close` or `unilateral`. */
  settleChannel(channelId, options = {}) {
    return cancellable(options.signal, (token) => this.#native.settleChannel(channelId, options.mode ?? 'checkpoint', options.timeoutMs, token));
  }
  /** Closes a channel with the peer's signature (`unilateral: true`: without it). */
  closeChannel(channelId, options = {}) {
    return this.settleChannel(channelId, { ...options, mode: options.unilateral ? 'unilateral' : 'close' });
  }
  trustedPeers(options = {}) {
    return cancellable(options.signal, (token) => this.#native.trustedPeers(token));
  }
  /** Trusts `nodeId` up to `creditLimitUmhr`; resolves whether anything changed. */
  trust(nodeId, creditLimitUmhr, options = {}) {
    return cancellable(options.signal, (token) => this.#native.setTrust(nodeId, true, creditLimitUmhr, token));
  }
  /** Stops trusting `nodeId`; resolves whether it was trusted. */
  untrust(nodeId, options = {}) {
    return cancellable(options.signal, (token) => this.#native.setTrust(nodeId, false, 0, token));
  }
  discover(query, options = {}) {
    return cancellable(options.signal, (token) => this.#native.discover(query, token));
  }
  agreements(options = {}) {
    return cancellable(options.signal, (token) => this.#native.agreements(token));
  }
  agreement(id, options = {}) {
    return cancellable(options.signal, (token) => this.#native.agreement(id, token));
  }
  proposeAgreement(proposal, options = {}) {
    return cancellable(options.signal, (token) => this.#native.proposeAgreement(proposal, token));
  }
  acceptAgreement(id, options = {}) {
    return cancellable(options.signal, (token) => this.#native.acceptAgreement(id, token));
  }
  cancelAgreement(id, options = {}) {
    return cancellable(options.signal, (token) => this.#native.cancelAgreement(id, token));
  }
  watchAgreements(options = {}) {
    return iterate((token) => this.#native.watchAgreements(token), options.signal);
  }
}

/** Connects to a daemon: with no options, the local one (same discovery as the CLI). */
async function connect(options) {
  return new Client(await nativeCall(() => native.connect(options)));
}

module.exports = { connect, Client, Server, ...errors };
delete module.exports.translate;
delete module.exports.CODE_NAMES;
