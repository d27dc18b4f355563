// Compiled by `tsc --noEmit` (test/typecheck.test.mjs): the public typings accept the tour's
// code and reject misuse (each @ts-expect-error must be an error).
import { connect, MehrError, NotFoundError, type InvokeResult, type NodeInfo } from '@mehr/sdk';

async function tour(): Promise<void> {
  const client = await connect({ dataDir: '/tmp/x' });
  const info: NodeInfo = await client.info({ signal: AbortSignal.timeout(1000) });
  const id: string = info.nodeId;
  for await (const event of client.events()) {
    const kind: string = event.kind;
    if (kind) break;
  }
  const server = await client.serve({
    upper: async (input) => input.toString().toUpperCase(),
    count: { handler: async function* (input) { yield input; return 'done'; }, maxConcurrency: 8 },
  });
  const result: InvokeResult = await client.invoke('upper', 'hi', { placement: 'mesh', maxPriceUmhr: 10, tier: { kind: 'redundant', k: 3 } });
  const output: Buffer = result.output;
  const stored = await client.put(Buffer.from(id), { name: 'n', onProgress: (n: number) => n });
  client.get(stored.object.id).pipe(process.stdout);
  await server.stop();
  try {
    await client.stat('00');
  } catch (error) {
    if (error instanceof NotFoundError) { const r: string | null = error.reason; void r; }
    if (error instanceof MehrError) { const c: number = error.grpcCode; void c; }
  }
  // @ts-expect-error placement is one of auto, local, mesh
  await client.invoke('upper', 'hi', { placement: 'moon' });
  // @ts-expect-error input must be bytes or a string
  await client.invoke('upper', 42);
  void output;
}
void tour;
