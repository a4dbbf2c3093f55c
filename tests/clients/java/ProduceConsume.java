// Java client round trip, run as a single-file source program (Java 17):
//   java -cp "$CACHE/kafka-*/lib/*" ProduceConsume.java BOOTSTRAP TOPIC COUNT
// The producer uses the DEFAULT configuration (idempotent, acks=all since Kafka 3.0); records
// carry keys, so they spread over the topic's partitions. A consumer then assign()s every
// partition from the beginning and checks count, order, content and the acked offsets.
// Exits 0 and prints "OK ..." on success, non-zero with a reason on any mismatch.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.Future;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class ProduceConsume {
    static void fail(String msg) {
        System.err.println("FAIL: " + msg);
        System.exit(1);
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 3) fail("usage: ProduceConsume BOOTSTRAP TOPIC COUNT");
        String bootstrap = args[0], topic = args[1];
        int count = Integer.parseInt(args[2]);

        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        pp.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 30000);
        pp.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 10000);

        List<Future<RecordMetadata>> futures = new ArrayList<>();
        int partitions;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            partitions = producer.partitionsFor(topic).size();
            for (int i = 0; i < count; i++) {
                ProducerRecord<String, String> rec = new ProducerRecord<>(topic, "key-" + i, "value-" + i);
                rec.headers().add("idx", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
                futures.add(producer.send(rec));
            }
            producer.flush();
        }
        RecordMetadata[] acked = new RecordMetadata[count];
        for (int i = 0; i < count; i++) acked[i] = futures.get(i).get();

        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        cp.put(ConsumerConfig.CHECK_CRCS_CONFIG, true);

        Map<Integer, List<ConsumerRecord<String, String>>> byPartition = new TreeMap<>();
        int total = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo pi : consumer.partitionsFor(topic)) tps.add(new TopicPartition(topic, pi.partition()));
            if (tps.size() != partitions) fail("consumer sees " + tps.size() + " partitions, producer " + partitions);
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            long deadline = System.currentTimeMillis() + 30000;
            while (total < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    byPartition.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r);
                    total++;
                }
            }
            // anything beyond `count` would be a duplicate: give it a moment to show up
            for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(1000))) {
                byPartition.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r);
                total++;
            }
        }
        if (total != count) fail("consumed " + total + " records, produced " + count);

        boolean[] seen = new boolean[count];
        for (Map.Entry<Integer, List<ConsumerRecord<String, String>>> e : byPartition.entrySet()) {
            long expectOffset = 0;
            int lastIdx = -1;
            for (ConsumerRecord<String, String> r : e.getValue()) {
                if (r.offset() != expectOffset)
                    fail("partition " + e.getKey() + ": offset " + r.offset() + " where " + expectOffset + " expected");
                expectOffset++;
                int idx = Integer.parseInt(r.key().substring("key-".length()));
                if (seen[idx]) fail("duplicate record " + r.key());
                seen[idx] = true;
                if (idx <= lastIdx) fail("partition " + e.getKey() + ": " + r.key() + " after key-" + lastIdx);
                lastIdx = idx;
                if (!r.value().equals("value-" + idx)) fail(r.key() + " has value " + r.value());
                String h = new String(r.headers().lastHeader("idx").value(), StandardCharsets.UTF_8);
                if (!h.equals(Integer.toString(idx))) fail(r.key() + " has header idx=" + h);
                if (acked[idx].partition() != r.partition() || acked[idx].offset() != r.offset())
                    fail(r.key() + " acked at " + acked[idx].partition() + "/" + acked[idx].offset()
                         + " but found at " + r.partition() + "/" + r.offset());
            }
        }
        System.out.println("OK " + count + " records in " + byPartition.size() + " partitions");
    }
}
