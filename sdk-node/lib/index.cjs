'use strict';
// The public API: Promises, `for await` iterators, Node streams and AbortSignals over the
// native addon (src/). Each native method is awaited through `native()` so that its errors
// become MehrError subclasses, and through `cancellable()` where an AbortSignal may cut it.
const { Readable, Writable, pipeline } = require('node:stream');
const { promisify } = require('node:util');
const native = require('../native.cjs');
const errors = require('./errors.cjs');

const { translate } = errors;
const pipe = promisify(pipeline);
const EMPTY = Buffer.alloc(0);

async function nativeCall(work) {
  try {
    return await work();
  } catch (error) {
    throw translate(error);
  }
}

/** Runs `work(token)`, cancelling the native token when `signal` aborts. */
async function cancellable(signal, work) {
  if (!signal) return nativeCall(() => work(undefined));
  signal.throwIfAborted();
  const token = new native.CancelToken();
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

/** An async iterable over a native pull stream; breaking the loop closes the stream. */
function iterate(streamPromise, signal, map = (item) => item) {
  return {
    async *[Symbol.asyncIterator]() {
      const stream = await nativeCall(() => streamPromise);
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
  constructor(nativeServer) {
    this.#native = nativeServer;
    /** Resolves when serving has ended; rejects when the connection to the daemon failed. */
    this.closed = nativeCall(() => nativeServer.wait()).finally(() => liveServers.delete(this));
    // A `closed` nobody awaits must not become an unhandled rejection.
    this.closed.catch(() => {});
    liveServers.add(this);
  }
  /** The ids of the functions served. */
  get functions() {
    return this.#native.functions;
  }
  /** @internal */
  emit(invocationId, chunk) {
    return this.#native.emit(invocationId, chunk);
  }
  /** Stops cleanly: no new calls, running calls finish, then `closed` settles. */
  async stop() {
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
    return iterate(this.#native.events(), options.signal);
  }
  interfaces() {
    return nativeCall(() => this.#native.interfaces());
  }
  paths(options = {}) {
    return nativeCall(() => this.#native.paths(options.mehrOnly ?? false));
  }
  neighbours() {
    return nativeCall(() => this.#native.neighbours());
  }
  announce() {
    return nativeCall(() => this.#native.announce());
  }

  // ----- messaging -----
  async listen(name, options = {}) {
    const listener = await nativeCall(() => this.#native.listen(name, options.announce ?? true));
    const messages = listener.takeMessages();
    return {
      destination: listener.destination,
      [Symbol.asyncIterator]: () => iterate(Promise.resolve(messages), options.signal)[Symbol.asyncIterator](),
      close: () => messages.close(),
    };
  }
  send(destination, payload, options = {}) {
    return cancellable(options.signal, (token) => this.#native.send(destination, toBuffer(payload), options.timeoutMs, token));
  }
  reply(linkId, payload) {
    return nativeCall(() => this.#native.reply(linkId, toBuffer(payload)));
  }

  // ----- compute -----
  async serve(functions, options = {}) {
    const entries = Object.entries(functions).map(([name, entry]) =>
      typeof entry === 'function' ? [name, { handler: entry }] : [name, entry]);
    const handlers = new Map(entries.map(([name, entry]) => [name, entry.handler]));
    let resolveServer;
    const serverReady = new Promise((resolve) => { resolveServer = resolve; });
    const handler = new native.JsHandler(async (call) => {
      const fn = handlers.get(call.functionId);
      const context = { functionId: call.functionId, invocationId: call.invocationId, remainingMs: call.remainingMs };
      try {
        const result = fn(call.input, context);
        if (isAsyncIterator(result)) {
          const server = await serverReady;
          for (;;) {
            const step = await result.next();
            if (step.done) return toBuffer(step.value, 'the handler result');
            if (!(await server.emit(call.invocationId, toBuffer(step.value, 'a yielded chunk')))) {
              await result.return?.(undefined);
              return EMPTY;
            }
          }
        }
        return toBuffer(await result, 'the handler result');
      } catch (error) {
        const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
        throw new Error(`handler of ${call.functionId} failed: ${message}`);
      }
    });
    const specs = entries.map(([name, entry]) => ({
      name,
      description: entry.description,
      pricePerInvocationUmhr: entry.pricePerInvocationUmhr,
      maxConcurrency: entry.maxConcurrency ?? options.maxConcurrency ?? 1,
      maxInputBytes: entry.maxInputBytes,
    }));
    const nativeServer = await nativeCall(() => this.#native.serve(specs, handler));
    const server = new Server(nativeServer);
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
    const outputs = iterate(this.#native.invokeStream(functionId, toBuffer(input, 'input'), limits), signal);
    return {
      async *[Symbol.asyncIterator]() {
        for await (const message of outputs) {
          if (message.output.length > 0) yield message.output;
          if (message.done) return;
        }
      },
    };
  }
  functions() {
    return nativeCall(() => this.#native.functions());
  }

  // ----- storage -----
  /** A Writable that stores what is written as one object; `done` resolves with the result. */
  createWriteStream(options = {}) {
    const opening = nativeCall(() => this.#native.putOpen(options.name, options.expectedSize));
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
      const stream = await nativeCall(() => nativeClient.get(id, options.offset, options.length));
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
  stat(id) {
    return nativeCall(() => this.#native.stat(id));
  }
  list(query = {}) {
    return nativeCall(() => this.#native.list(query));
  }
  delete(id) {
    return nativeCall(() => this.#native.delete(id));
  }
  replicate(id, providers, options = {}) {
    return nativeCall(() => this.#native.replicate(id, providers, options.dataShards, options.parityShards));
  }
  challenge(id) {
    return nativeCall(() => this.#native.challenge(id));
  }

  // ----- ledger, market -----
  balance() {
    return nativeCall(() => this.#native.balance());
  }
  channels() {
    return nativeCall(() => this.#native.channels());
  }
  openChannel(peer, depositUmhr, options = {}) {
    return nativeCall(() => this.#native.openChannel(peer, depositUmhr, options.peerDepositUmhr ?? 0, options.timeoutMs));
  }
  pay(peer, amountUmhr, options = {}) {
    return nativeCall(() => this.#native.pay(peer, amountUmhr, options.timeoutMs));
  }
  discover(query, options = {}) {
    return cancellable(options.signal, (token) => this.#native.discover(query, token));
  }
  agreements() {
    return nativeCall(() => this.#native.agreements());
  }
  watchAgreements(options = {}) {
    return iterate(this.#native.watchAgreements(), options.signal);
  }
}

/** Connects to a daemon: with no options, the local one (same discovery as the CLI). */
async function connect(options) {
  return new Client(await nativeCall(() => native.connect(options)));
}

module.exports = { connect, Client, Server, ...errors };
delete module.exports.translate;
delete module.exports.CODE_NAMES;
