// @ts-check
// A chat between two nodes: each side listens on the app destination `chat.<name>` and sends
// lines to the other's destination; a received message is answered over its inbound link.
//
//   node examples/chat.mjs alice <data dir of node A> <data dir of node B>
// prints the exchange and exits (the tests run it on a two-node mesh).
import { connect } from '@mehr/sdk';

const [, , , dirA, dirB] = process.argv;
const alice = await connect({ dataDir: dirA });
const bob = await connect({ dataDir: dirB });

const bobInbox = await bob.listen('chat.bob', { announce: true });
const aliceInbox = await alice.listen('chat.alice', { announce: true });

// Bob answers every message he gets, over the link it came on.
const bobLoop = (async () => {
  for await (const message of bobInbox) {
    console.log(`bob got: ${message.payload.toString()}`);
    if (message.linkId) await bob.reply(message.linkId, `hi alice, got "${message.payload.toString()}"`);
    break;
  }
})();
// Alice prints what arrives on her destination.
const aliceLoop = (async () => {
  for await (const message of aliceInbox) {
    console.log(`alice got: ${message.payload.toString()}`);
    break;
  }
})();

// Announces take a moment to cross the mesh: retry until the path is known.
const deadline = Date.now() + 60_000;
for (;;) {
  try {
    const sent = await alice.send(bobInbox.destination, 'hello bob', { timeoutMs: 5000 });
    console.log(`alice sent, delivered=${sent.delivered}`);
    break;
  } catch (error) {
    if (Date.now() > deadline) throw error;
    await alice.announce();
    await bob.announce();
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}
await bobLoop;
await bob.send(aliceInbox.destination, 'bye alice', { timeoutMs: 10_000 });
await aliceLoop;
await aliceInbox.close();
await bobInbox.close();
