// The outside witness: plain @grpc/grpc-js with server reflection (grpc-js-reflection-client),
// no code or .proto files from this project, calls NodeService/GetInfo and
// ComputeService/Invoke on a daemon (Invoke reaching a function served by this SDK).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import * as grpc from '@grpc/grpc-js';
import { GrpcReflection } from 'grpc-js-reflection-client';
import { connect } from '@mehr/sdk';
import { Daemon, workdir } from './daemon.mjs';

let daemon;
before(async () => { daemon = await Daemon.start(workdir(), 'node'); });
after(async () => { await daemon?.stop(); });

function call(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

test('NodeService/GetInfo and ComputeService/Invoke through reflection only', async () => {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${daemon.token}`);
  const credentials = grpc.credentials.createInsecure();
  const reflection = new GrpcReflection(daemon.address, credentials);
  const services = await reflection.listServices();
  assert.ok(services.includes('mehr.v1.NodeService'), services.join(','));

  const nodeDescriptor = await reflection.getDescriptorBySymbol('mehr.v1.NodeService');
  const nodePackage = nodeDescriptor.getPackageObject({ keepCase: true, longs: String, defaults: true });
  const node = new nodePackage.mehr.v1.NodeService(daemon.address, credentials);
  const info = await call(node, 'GetInfo', {}, metadata);

  const sdk = await connect({ dataDir: daemon.dataDir });
  assert.equal(Buffer.from(info.identity_hash).toString('hex'), (await sdk.info()).nodeId);

  const server = await sdk.serve({ 'witness.reverse': async (input) => Buffer.from(input).reverse() });
  try {
    const computeDescriptor = await reflection.getDescriptorBySymbol('mehr.v1.ComputeService');
    const computePackage = computeDescriptor.getPackageObject({ keepCase: true, longs: String, defaults: true });
    const compute = new computePackage.mehr.v1.ComputeService(daemon.address, credentials);
    const answer = await call(compute, 'Invoke', { function_id: 'witness.reverse', input: Buffer.from('abc') }, metadata);
    assert.equal(Buffer.from(answer.output).toString(), 'cba');
    await assert.rejects(call(compute, 'Invoke', { function_id: 'nope', input: Buffer.from('x') }, metadata), (e) => e.code === grpc.status.NOT_FOUND);
    compute.close();
  } finally {
    await server.stop();
    node.close();
  }
});
