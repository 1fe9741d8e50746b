// consume.js - kafkajs consumer for interop tests: reads --count records from
// --topic (from the beginning, one group member) and prints each as a JSON
// line {topic, partition, offset, key, headers, value}, value msgpack-decoded
// (null when the bytes are not msgpack; then "raw_base64" holds them).
// Exits 1 if fewer than --count records arrived within --timeout-ms.
//
//   node consume.js --brokers B --topic T --count N [--timeout-ms MS] [--group G]
'use strict';
const lib = require('./lib');

lib.run(async () => {
  const a = lib.parseArgs(process.argv.slice(2), {
    options: { brokers: 'str', topic: 'str', count: 'int', 'timeout-ms': 'int', group: 'str' },
    required: ['brokers', 'topic', 'count'],
    defaults: { 'timeout-ms': 30000, group: `guardd-js-consume-${process.pid}` },
  });
  const recs = await lib.consumeUntil(lib.makeKafka(a.brokers, 'guardd-js-consume'), {
    topics: [a.topic], groupId: a.group, timeoutMs: a['timeout-ms'],
    done: (r) => r.length >= a.count,
  });
  for (const r of recs) {
    const out = { topic: r.topic, partition: r.partition, offset: r.offset, key: r.key,
                  headers: r.headers, value: r.value };
    if (r.value === null && r.raw) out.raw_base64 = r.raw.toString('base64');
    process.stdout.write(JSON.stringify(out) + '\n');
  }
  if (recs.length < a.count) {
    process.stderr.write(`consume.js: ${recs.length} of ${a.count} records before the timeout\n`);
    return 1;
  }
  return 0;
});
