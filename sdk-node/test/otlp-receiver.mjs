// A small OpenTelemetry collector for the tests: an OTLP/gRPC trace receiver on @grpc/grpc-js
// that keeps each exported span's ids and name. The request is read with a minimal protobuf
// reader (the four nested fields it needs) rather than generated code from the OTLP protos.
import grpc from '@grpc/grpc-js';

/** Yields [field number, wire type, value] of a protobuf message (value: Buffer or number). */
function* fieldsOf(buffer) {
  let at = 0;
  const varint = () => {
    let value = 0;
    let scale = 1;
    for (;;) {
      const byte = buffer[at++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
  };
  while (at < buffer.length) {
    const key = varint();
    const [number, wire] = [Math.floor(key / 8), key % 8];
    if (wire === 0) yield [number, wire, varint()];
    else if (wire === 1) { at += 8; }
    else if (wire === 5) { at += 4; }
    else if (wire === 2) {
      const length = varint();
      yield [number, wire, buffer.subarray(at, at + length)];
      at += length;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
}

const children = (message, number) => [...fieldsOf(message)].filter(([n, w]) => n === number && w === 2).map(([, , v]) => v);

/** The spans of an ExportTraceServiceRequest: resource_spans(1) → scope_spans(2) → spans(2). */
function spansOf(request) {
  const spans = [];
  for (const resource of children(request, 1)) {
    for (const scope of children(resource, 2)) {
      for (const span of children(scope, 2)) {
        const field = (n) => children(span, n)[0] ?? Buffer.alloc(0);
        spans.push({
          traceId: field(1).toString('hex'),
          spanId: field(2).toString('hex'),
          parentSpanId: field(4).toString('hex'),
          name: field(5).toString('utf8'),
        });
      }
    }
  }
  return spans;
}

export class SpanReceiver {
  spans = [];
  #server = new grpc.Server();

  static async start() {
    const receiver = new SpanReceiver();
    const raw = (value) => value;
    receiver.#server.addService({
      Export: {
        path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
        requestStream: false,
        responseStream: false,
        requestSerialize: raw,
        requestDeserialize: raw,
        responseSerialize: raw,
        responseDeserialize: raw,
      },
    }, {
      Export: (call, callback) => {
        receiver.spans.push(...spansOf(call.request));
        callback(null, Buffer.alloc(0)); // an empty ExportTraceServiceResponse
      },
    });
    receiver.port = await new Promise((resolve, reject) => {
      receiver.#server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, port) => (error ? reject(error) : resolve(port)));
    });
    return receiver;
  }

  get endpoint() {
    return `http://127.0.0.1:${this.port}`;
  }

  stop() {
    this.#server.forceShutdown();
  }
}
