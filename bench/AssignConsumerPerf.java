// Consume throughput with the Kafka Java consumer, like Kafka's ConsumerPerformance but with
// assign() instead of subscribe() (no group join in the measured time). Same consumer
// settings as ConsumerPerformance's defaults (ByteArrayDeserializer, max.partition.fetch.bytes
// = 1 MiB, receive.buffer.bytes = 2 MiB, no auto commit). Compiled by bench/run.sh:
//   java -cp "$KAFKA_HOME/lib/*:CLASSES" AssignConsumerPerf BOOTSTRAP TOPIC NUM_RECORDS [TIMEOUT_MS]
// Assigns every partition of TOPIC from the beginning and polls until NUM_RECORDS records.
// Prints one line:
//   RESULT records=N bytes=B seconds=S MBps=X recps=Y first_record_ms=F steady_MBps=Z end_offsets=E
// seconds runs from the first poll() to the last record; first_record_ms is the wait for the
// first record (metadata, first fetch); steady_MBps covers the last two thirds of the records
// (after the JIT has warmed up); end_offsets is the sum of the partitions' end offsets before
// the read (what the topic holds).
// Exits with status 1, after printing the RESULT line, when it stopped short: no record for
// TIMEOUT_MS (default 15000) before NUM_RECORDS were read, or the topic holds fewer than
// NUM_RECORDS records. A short read is never a throughput figure.

import java.time.Duration;
import java.util.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class AssignConsumerPerf {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: AssignConsumerPerf BOOTSTRAP TOPIC NUM_RECORDS [TIMEOUT_MS]");
            System.exit(2);
        }
        String bootstrap = args[0], topic = args[1];
        long want = Long.parseLong(args[2]);
        long timeoutMs = args.length > 3 ? Long.parseLong(args[3]) : 15000;

        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        cp.put(ConsumerConfig.MAX_PARTITION_FETCH_BYTES_CONFIG, 1048576);
        cp.put(ConsumerConfig.RECEIVE_BUFFER_CONFIG, 2097152);
        cp.put(ConsumerConfig.CLIENT_ID_CONFIG, "bench-consumer");

        long records = 0, bytes = 0, endOffsets = 0;
        long start, first = -1, last, third = -1, thirdBytes = 0;
        String shortBy = null;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(cp)) {
            List<PartitionInfo> parts = consumer.partitionsFor(topic);
            if (parts == null || parts.isEmpty()) {
                System.err.println("ERROR: topic " + topic + " has no partitions");
                System.exit(1);
            }
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo p : parts) tps.add(new TopicPartition(topic, p.partition()));
            for (long e : consumer.endOffsets(tps).values()) endOffsets += e;
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            start = System.nanoTime();
            last = start;
            while (records < want) {
                ConsumerRecords<byte[], byte[]> batch = consumer.poll(Duration.ofMillis(100));
                long now = System.nanoTime();
                if (batch.isEmpty()) {
                    if ((now - last) / 1_000_000 > timeoutMs) {
                        shortBy = "no record for " + timeoutMs + " ms after " + records + " of " + want + " records";
                        break;
                    }
                    continue;
                }
                if (first < 0) first = now;
                for (ConsumerRecord<byte[], byte[]> r : batch) {
                    records++;
                    bytes += r.serializedValueSize() + Math.max(0, r.serializedKeySize());
                }
                if (third < 0 && records >= want / 3) {
                    third = now;
                    thirdBytes = bytes;
                }
                last = now;
            }
        }
        double secs = (last - start) / 1e9;
        double steadySecs = third < 0 ? 0 : (last - third) / 1e9;
        System.out.printf(Locale.ROOT, "RESULT records=%d bytes=%d seconds=%.3f MBps=%.2f recps=%.1f first_record_ms=%.1f steady_MBps=%.2f end_offsets=%d%n",
            records, bytes, secs, secs > 0 ? bytes / 1048576.0 / secs : 0.0, secs > 0 ? records / secs : 0.0,
            first < 0 ? -1.0 : (first - start) / 1e6,
            steadySecs > 0 ? (bytes - thirdBytes) / 1048576.0 / steadySecs : 0.0, endOffsets);
        if (shortBy == null && endOffsets < want)
            shortBy = "topic " + topic + " holds " + endOffsets + " records, fewer than the " + want + " expected";
        if (shortBy != null) {
            System.err.println("ERROR: stopped short: " + shortBy);
            System.exit(1);
        }
    }
}
