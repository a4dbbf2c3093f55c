// kafkajs group consumer for the client tests (tests/clients/test_groups_clients.py).
//   NODE_PATH=$STRATUS_CACHE/node_modules node group_consumer.js BOOTSTRAP TOPIC GROUP MAX [TIMEOUT_MS]
// Joins GROUP, processes records one at a time until MAX were processed, printing
// "R <partition> <offset> <value>" for each, commits exactly the processed records (auto-commit
// is off: nothing fetched but not processed is committed), leaves the group and prints
// "DONE <count>". Exits non-zero on an error or when TIMEOUT_MS (default 60000) passes first.
const { Kafka, logLevel } = require("kafkajs");

const [bootstrap, topic, group, maxArg, timeoutArg] = process.argv.slice(2);
const max = parseInt(maxArg, 10);
const timeoutMs = parseInt(timeoutArg || "60000", 10);

async function main() {
  const kafka = new Kafka({ clientId: "stratus-test-kafkajs", brokers: [bootstrap], logLevel: logLevel.ERROR });
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 6000, heartbeatInterval: 1000,
                                    rebalanceTimeout: 10000, maxWaitTimeInMs: 500 });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  const next = new Map(); // partition -> next offset to commit
  let count = 0;
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ partition, message }) => {
      if (count >= max) return; // fetched but not processed: never committed
      console.log(`R ${partition} ${message.offset} ${message.value.toString()}`);
      next.set(partition, (BigInt(message.offset) + 1n).toString());
      count++;
      if (count >= max) {
        consumer.pause([{ topic }]);
        finish();
      }
    },
  });
  const timer = setTimeout(() => {
    console.error(`ERR timed out after ${timeoutMs} ms with ${count} of ${max} records`);
    process.exit(3);
  }, timeoutMs);
  await finished;
  clearTimeout(timer);
  await consumer.commitOffsets([...next].map(([partition, offset]) => ({ topic, partition, offset })));
  await consumer.disconnect();
  console.log(`DONE ${count}`);
}

main().catch((e) => {
  console.error("ERR", e);
  process.exit(2);
});
