// lib.js - shared helpers for guardd's independent-client (kafkajs) tests.
//
// The scripts in tests/js are a second, unrelated Kafka + msgpack
// implementation (kafkajs 2.2.4, @msgpack/msgpack) used to check that what
// guardd and guardctl put on the wire is ordinary Kafka and ordinary msgpack.
// Packages come from DEPS_DIR/node_modules (tools/deps.d/20-npm.sh); run node
// with NODE_PATH=$DEPS_DIR/node_modules.
//
// Mock-cluster quirks honoured here (shared/reference/kafka-mock.md): plain
// (non-idempotent) producer, exactly one member per consumer group,
// sessionTimeout 6000 ms so a rebalance does not stall for 45 s.
'use strict';
const { Kafka, logLevel } = require('kafkajs');
const msgpack = require('@msgpack/msgpack');

// --name value pairs -> object; "--flag" without a value -> true.
function parseArgs(argv, spec) {
  const out = Object.assign({}, spec.defaults || {});
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument '${a}'`);
    const name = a.slice(2);
    if (!(name in spec.options)) throw new Error(`unknown option --${name}`);
    if (spec.options[name] === 'flag') { out[name] = true; continue; }
    if (i + 1 >= argv.length) throw new Error(`--${name} needs a value`);
    const v = argv[++i];
    out[name] = spec.options[name] === 'int' ? parseInt(v, 10) : v;
    if (spec.options[name] === 'int' && !Number.isFinite(out[name])) throw new Error(`--${name}: not a number`);
  }
  for (const r of spec.required || []) if (out[r] === undefined) throw new Error(`--${r} is required`);
  return out;
}

// kafkajs logs to stderr only (stdout carries the scripts' JSON results).
function stderrLogger() {
  return ({ namespace, level, label, log }) => {
    const { message, error } = log;
    process.stderr.write(`kafkajs ${label} ${namespace}: ${message}${error ? ' (' + error + ')' : ''}\n`);
  };
}

function makeKafka(brokers, clientId) {
  return new Kafka({
    clientId: clientId || 'guardd-js-test',
    brokers: brokers.split(',').map((s) => s.trim()).filter(Boolean),
    logLevel: logLevel.ERROR,
    logCreator: stderrLogger,
    retry: { retries: 8, initialRetryTime: 100 },
  });
}

// A conversation event as the schema describes (schemas/, DESIGN "Event formats").
function conversationEvent(id, text, extra) {
  return Object.assign({ id, messages: [{ role: 'user', content: text }] }, extra || {});
}

// Converts msgpack-decoded values to JSON-safe ones: byte arrays become
// {"base64": ...}, BigInts numbers or strings, Maps objects.
function jsonSafe(v) {
  if (v instanceof Uint8Array) return { base64: Buffer.from(v).toString('base64') };
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (Array.isArray(v)) return v.map(jsonSafe);
  if (v instanceof Map) return jsonSafe(Object.fromEntries(v));
  if (v && typeof v === 'object') {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = jsonSafe(x);
    return o;
  }
  return v;
}

// Decodes one record value; null if it is not one complete msgpack value.
function decodeValue(buf) {
  if (!buf) return null;
  try { return jsonSafe(msgpack.decode(buf)); } catch (e) { return null; }
}

function headersToStrings(h) {
  const out = {};
  for (const [k, v] of Object.entries(h || {})) {
    const last = Array.isArray(v) ? v[v.length - 1] : v;
    out[k] = last === undefined || last === null ? null : Buffer.from(last).toString('utf8');
  }
  return out;
}

// Reads from topics with ONE group member until done(record) returns true
// for the collected records or timeoutMs passes. Resolves to the records
// ({topic, partition, offset, key, headers, value, raw}).
async function consumeUntil(kafka, { topics, groupId, timeoutMs, done, fromBeginning = true }) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 6000, heartbeatInterval: 1000,
                                    rebalanceTimeout: 6000, allowAutoTopicCreation: true });
  const records = [];
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  const timer = setTimeout(() => finish('timeout'), timeoutMs);
  try {
    await consumer.connect();
    for (const topic of topics) await consumer.subscribe({ topic, fromBeginning });
    await consumer.run({
      autoCommit: true,
      eachMessage: async ({ topic, partition, message }) => {
        records.push({
          topic, partition, offset: Number(message.offset),
          key: message.key ? message.key.toString('utf8') : null,
          headers: headersToStrings(message.headers),
          value: decodeValue(message.value),
          raw: message.value,
        });
        if (done(records)) finish('done');
      },
    });
    await finished;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch(() => {});
  }
  return records;
}

// Sends msgpack-encoded values: items = [{key, value (object), headers}].
async function produceEvents(kafka, topic, items, batch = 100) {
  const producer = kafka.producer({ idempotent: false, allowAutoTopicCreation: true });
  await producer.connect();
  try {
    for (let i = 0; i < items.length; i += batch) {
      const messages = items.slice(i, i + batch).map((it) => ({
        key: it.key, headers: it.headers,
        value: it.raw !== undefined ? it.raw : Buffer.from(msgpack.encode(it.value)),
      }));
      await producer.send({ topic, acks: -1, messages });
    }
  } finally {
    await producer.disconnect();
  }
}

// Runs main(), prints errors on stderr and sets the exit code.
function run(main) {
  main().then((code) => process.exit(code || 0), (e) => {
    process.stderr.write(`error: ${e && e.stack ? e.stack : e}\n`);
    process.exit(1);
  });
}

module.exports = { parseArgs, makeKafka, conversationEvent, jsonSafe, decodeValue,
                   consumeUntil, produceEvents, run, msgpack };
