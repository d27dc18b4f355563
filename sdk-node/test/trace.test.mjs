// The SDK carries the caller's trace: with @opentelemetry/api installed (the optional peer
// dependency) and a span active, every call sends its W3C `traceparent`, and the daemon's span
// of the call, exported to a real OTLP receiver, is that span's child. Outside a span, or for
// an invalid span context, calls carry none.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { context, trace, TraceFlags } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { connect } from '@mehr/sdk';
import { Daemon, eventually, workdir } from './daemon.mjs';
import { SpanReceiver } from './otlp-receiver.mjs';

let receiver;
let daemon;
before(async () => {
  // What an OpenTelemetry SDK's registration sets up: a context manager following async work.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  receiver = await SpanReceiver.start();
  process.env.OTEL_BSP_SCHEDULE_DELAY = '100'; // the daemon exports its spans quickly
  daemon = await Daemon.start(workdir(), 'traced', `[telemetry]\notlp_endpoint = "${receiver.endpoint}"\n# every trace the node starts is recorded (the default samples one in ten)\nsample_ratio = 1.0\n`);
  delete process.env.OTEL_BSP_SCHEDULE_DELAY;
});
after(async () => {
  await daemon?.stop();
  receiver?.stop();
  context.disable();
});

const CALLER = {
  traceId: '0af7651916cd43dd8448eb211c80319c',
  spanId: 'b7ad6b7169203331',
  traceFlags: TraceFlags.SAMPLED,
  isRemote: false,
};

test('calls inside an active span continue its trace; calls outside start their own', async () => {
  const client = await connect({ dataDir: daemon.dataDir });
  await client.info(); // outside any span
  const inSpan = trace.setSpan(context.active(), trace.wrapSpanContext(CALLER));
  await context.with(inSpan, async () => {
    await client.info();
    const stored = await client.put('traced bytes');
    assert.equal(stored.object.length, 12);
  });
  const getInfo = () => receiver.spans.filter((s) => s.name === 'mehr.v1.NodeService/GetInfo');
  const children = await eventually('the daemon\'s GetInfo span under the caller\'s', () => {
    const found = getInfo().filter((s) => s.traceId === CALLER.traceId);
    return found.length > 0 ? found : null;
  }, 20_000);
  assert.equal(children.length, 1);
  assert.equal(children[0].parentSpanId, CALLER.spanId);
  // A streamed call (the put's client stream) carries it too.
  await eventually('the put span under the caller\'s', () =>
    receiver.spans.some((s) => s.name === 'mehr.v1.StorageService/PutObject' && s.traceId === CALLER.traceId && s.parentSpanId === CALLER.spanId), 20_000);
  // The call outside the span is in a trace of its own.
  const both = await eventually('both GetInfo spans', () => (getInfo().length === 2 ? getInfo() : null), 20_000);
  assert.notEqual(both[0].traceId, both[1].traceId);
});
