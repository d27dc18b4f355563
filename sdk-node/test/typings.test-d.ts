// Compiled by `tsc --noEmit` (test/typecheck.test.mjs): the public typings accept the tour's
// code and reject misuse (each @ts-expect-error must be an error).
import { connect, MehrError, NotFoundError, type EventValue, type InvokeResult, type NodeInfo, type Settled } from '@mehr/sdk';

async function tour(): Promise<void> {
  const client = await connect({ dataDir: '/tmp/x' });
  const info: NodeInfo = await client.info({ signal: AbortSignal.timeout(1000) });
  const id: string = info.nodeId;
  for await (const event of client.events()) {
    const kind: string = event.kind;
    const fn: EventValue = event.detail.functionId;
    if (kind && fn) break;
  }
  const server = await client.serve({
    upper: async (input, call) => {
      call.signal.throwIfAborted();
      return input.toString().toUpperCase();
    },
    count: { handler: async function* (input) { yield input; return 'done'; }, maxConcurrency: 8 },
    embed: { batch: { maxSize: 32, maxWaitMs: 2 }, handleBatch: async (inputs) => inputs.map((i) => i.reverse()) },
  }, { reconnect: true });
  const reconnects: number = server.reconnects;
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
  const deployed = await client.deployModule(Buffer.from('\0asm'), { name: 'm' });
  const removed: string[] = await client.removeModule(deployed.moduleId);
  const settled: Settled = await client.settleChannel('00', { mode: 'close', timeoutMs: 1000 });
  const round: number | undefined = settled.disputeClosesAtRound ?? undefined;
  const agreement = await client.proposeAgreement({ provider: id, function: 'upper', costCap: { perCallUmhr: 5 }, waitMs: 1000 });
  const changed: boolean = await client.trust(agreement.counterparty, 1000);
  await client.send(id, 'x', { policy: 'fastest' });
  const outcome: string | undefined = result.remote?.providers[0]?.outcome;
  // @ts-expect-error a settlement mode is checkpoint, close or unilateral
  await client.settleChannel('00', { mode: 'later' });
  // @ts-expect-error a route policy is cheapest, fastest or balanced
  await client.send(id, 'x', { policy: 'shortest' });
  void output; void reconnects; void removed; void round; void changed; void outcome;
}
void tour;
