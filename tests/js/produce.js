// produce.js - kafkajs producer for interop tests: sends --count conversation
// events (msgpack) to --topic, key "js-key-I", header "trace-id: js-I",
// id "js-PREFIX-I", content "js message I". Prints {"produced": N, "ids": [...]}.
//
//   node produce.js --brokers B --topic T --count N [--prefix P]
'use strict';
const lib = require('./lib');

lib.run(async () => {
  const a = lib.parseArgs(process.argv.slice(2), {
    options: { brokers: 'str', topic: 'str', count: 'int', prefix: 'str' },
    required: ['brokers', 'topic', 'count'], defaults: { prefix: 'p' },
  });
  const items = [];
  for (let i = 0; i < a.count; i++) {
    items.push({
      key: `js-key-${i}`,
      headers: { 'trace-id': `js-${i}` },
      value: lib.conversationEvent(`js-${a.prefix}-${i}`, `js message ${i}`,
                                   { metadata: { seq: i, source: 'kafkajs' } }),
    });
  }
  await lib.produceEvents(lib.makeKafka(a.brokers, 'guardd-js-produce'), a.topic, items);
  process.stdout.write(JSON.stringify({ produced: items.length, ids: items.map((x) => x.value.id) }) + '\n');
  return 0;
});
