// The ledger and the market between two neighbours, through the SDK: trust, a payment channel
// opened, paid, checkpointed and closed (with its events' fields as data), and an agreement
// proposed, read back and cancelled.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { test } from 'node:test';

import { connect, InvalidArgumentError } from '@mehr/sdk';
import { Daemon, eventually, freePort, workdir } from './daemon.mjs';

const GENESIS = 10_000_000;
const DEPOSIT = 1_000_000;
const WAIT = { timeoutMs: 20_000 };

test('trust, a channel opened, paid, checkpointed and closed, and an agreement', { timeout: 240_000 }, async () => {
  const dir = workdir();
  const port = await freePort();
  const links = {
    a: `[[interfaces]]\ntype = "tcp_server"\nlisten_ip = "127.0.0.1"\nlisten_port = ${port}\n`,
    b: `[[interfaces]]\ntype = "tcp_client"\ntarget_host = "127.0.0.1"\ntarget_port = ${port}\n`,
  };
  // First start: each node makes its identity; the genesis allocation names both.
  const a = await Daemon.start(dir, 'a', links.a);
  const b = await Daemon.start(dir, 'b', links.b);
  try {
    const aId = (await (await connect({ dataDir: a.dataDir })).info()).nodeId;
    const bId = (await (await connect({ dataDir: b.dataDir })).info()).nodeId;
    await Promise.all([a.stop(), b.stop()]);
    const ledger = `\n[ledger]\ngossip_interval_secs = 1\nretry_millis = 500\n`
      + [aId, bId].map((id) => `[[ledger.genesis]]\nnode = "${id}"\namount_umhr = ${GENESIS}\n`).join('')
      + `\n[market]\ngossip_round_ms = 500\n`;
    writeFileSync(a.configPath, links.a + ledger);
    writeFileSync(b.configPath, links.b + ledger);
    await a.start();
    await b.start();
    const aClient = await connect({ dataDir: a.dataDir });
    const bClient = await connect({ dataDir: b.dataDir });
    await eventually('B a neighbour of A', async () => (await aClient.neighbours()).some((n) => n.nodeId === bId), 60_000);
    await eventually('A a neighbour of B', async () => (await bClient.neighbours()).some((n) => n.nodeId === aId), 60_000);

    // Trust.
    assert.equal(await aClient.trust(bId, 5_000), true);
    assert.deepEqual(await aClient.trustedPeers(), [{ nodeId: bId, creditLimitUmhr: 5_000 }]);
    assert.equal(await aClient.untrust(bId), true);
    assert.equal(await aClient.untrust(bId), false);
    assert.deepEqual(await aClient.trustedPeers(), []);

    // A channel, followed through A's events.
    const opened = (async () => {
      for await (const event of aClient.events()) if (event.kind === 'channel_opened') return event;
    })();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const channel = await aClient.openChannel(bId, DEPOSIT, WAIT);
    assert.equal(channel.peer, bId);
    assert.equal(channel.role, 'CHANNEL_ROLE_OPENER');
    assert.equal(channel.depositUmhr, DEPOSIT);
    assert.equal(channel.peerTrusted, false);
    const event = await opened;
    assert.deepEqual(event.detail, { channelId: channel.channelId, peer: bId });

    const paid = await aClient.pay(bId, 30_000, WAIT);
    assert.equal(paid.paidUmhr, 30_000);
    const onB = (await bClient.channels()).find((c) => c.channelId === channel.channelId);
    assert.equal(onB.role, 'CHANNEL_ROLE_ACCEPTOR');

    const checkpoint = await bClient.settleChannel(channel.channelId, WAIT);
    assert.equal(checkpoint.record.kind, 'SETTLEMENT_KIND_CHECKPOINT');
    assert.equal(checkpoint.record.channelId, channel.channelId);
    assert.ok(checkpoint.record.seq >= 1);
    assert.ok(checkpoint.record.encoded.length > 0);
    assert.equal(checkpoint.disputeClosesAtRound, undefined);
    const closed = await aClient.closeChannel(channel.channelId, WAIT);
    assert.equal(closed.record.kind, 'SETTLEMENT_KIND_COOPERATIVE_CLOSE');
    await assert.rejects(aClient.settleChannel('zz'), InvalidArgumentError);

    // An agreement for a function B serves at a price.
    const server = await bClient.serve({ 'mkt.upper': { handler: async (t) => t.toString().toUpperCase(), pricePerInvocationUmhr: 5 } });
    try {
      const offer = await eventually('B\'s advert of mkt.upper at A', async () =>
        (await aClient.discover({ function: 'mkt.upper', timeoutMs: 2_000 })).offers.find((o) => o.nodeId === bId), 60_000);
      assert.equal(offer.unitPriceUmhr, 5);
      assert.equal(offer.cost.perCallUmhr, 5);
      assert.equal(typeof offer.pathCostUmhr, 'number');
      const proposed = await aClient.proposeAgreement({
        provider: bId, function: 'mkt.upper', durationSeconds: 600, accept: true, waitMs: 30_000,
      });
      assert.equal(proposed.role, 'AGREEMENT_ROLE_CONSUMER');
      assert.equal(proposed.counterparty, bId);
      assert.match(proposed.capability.functionHash, /^[0-9a-f]{64}$/);
      assert.equal(proposed.state, 'AGREEMENT_STATE_ACTIVE', proposed.note);
      assert.equal(proposed.cost.perCallUmhr, 5);
      assert.equal(proposed.durationSeconds, 600);
      const byRequest = await aClient.agreement(proposed.requestId);
      assert.equal(byRequest.requestId, proposed.requestId);
      assert.ok((await aClient.agreements()).some((x) => x.requestId === proposed.requestId));
      const cancelled = await aClient.cancelAgreement(proposed.requestId);
      assert.equal(cancelled.requestId, proposed.requestId);
      assert.notEqual(cancelled.state, proposed.state, JSON.stringify([proposed.state, cancelled.state]));
      await assert.rejects(aClient.proposeAgreement({ provider: bId }), InvalidArgumentError);
    } finally {
      await server.stop();
    }
  } finally {
    await Promise.all([a.stop(), b.stop()]);
  }
});
