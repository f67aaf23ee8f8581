'use strict';
// Closed sockets and listeners are garbage-collected: nothing the addon holds for them
// (the function their messages go to) keeps them alive once their end reached JavaScript.
const test = require('node:test');
const assert = require('node:assert/strict');
const v8 = require('node:v8');
const vm = require('node:vm');
const { ipcez, pair, within, sleep } = require('./helpers');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

test('closed sockets and listeners are garbage-collected (no handle leaks per connection)', async (t) => {
  let collected = 0;
  const registry = new FinalizationRegistry(() => { collected++; });
  const rounds = 100;
  for (let i = 0; i < rounds; i++) {
    const [client, server, listener] = await pair();
    await within(5000, client.send('x'), 'a send');
    assert.equal((await within(5000, server[Symbol.asyncIterator]().next())).value.toString(), 'x');
    for (const o of [client, server, listener]) {
      registry.register(o);
      o.close();
    }
    await within(5000, new Promise((r) => client.once('close', r)), "the client's close");
  }
  for (let i = 0; i < 20 && collected < 3 * rounds - 3; i++) {
    await sleep(20);
    gc();
  }
  t.diagnostic(`${collected} of ${3 * rounds} closed objects collected`);
  // The last round's objects may still be on the stack.
  assert.ok(collected >= 3 * rounds - 3, `only ${collected} of ${3 * rounds} collected`);
});
