// One member of a consumer group, for tests/clients/test_groups_java.py. Single-file program:
//   java -cp "$CACHE/kafka-*/lib/*" GroupConsumer.java BOOTSTRAP TOPIC GROUP PROTOCOL ASSIGNOR STOPFILE
// PROTOCOL is classic or consumer (KIP-848); ASSIGNOR is range, roundrobin, sticky or
// cooperative-sticky for classic (client-side assignors) and uniform or range for consumer
// (broker-side assignors). Auto-commit is off: after processing the records of each poll the
// member commits their offsets synchronously. It prints one line per event, flushed at once:
//   ASSIGNMENT p,p,...      the whole assignment after each onPartitionsAssigned
//   REVOKED p,p,...         onPartitionsRevoked (only non-empty)
//   LOST p,p,...            onPartitionsLost
//   R p offset value        a record, printed (processed) before its offset is committed
//   COMMITTED p:o,p:o,...   after commitSync returned (o = next offset to read)
//   COMMITFAIL exception    commitSync failed because of a rebalance (normal; the loop goes on)
//   ERROR text              an exception from poll or commit (the member exits 1)
//   CLOSED                  after close() (when STOPFILE exists)
// The member runs until STOPFILE exists or it is killed.

import java.io.File;
import java.time.Duration;
import java.util.*;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.serialization.StringDeserializer;

public class GroupConsumer {
    static synchronized void out(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static String parts(Collection<TopicPartition> tps) {
        return tps.stream().map(TopicPartition::partition).sorted().map(String::valueOf)
                .collect(Collectors.joining(","));
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 6) {
            System.err.println("usage: GroupConsumer BOOTSTRAP TOPIC GROUP PROTOCOL ASSIGNOR STOPFILE");
            System.exit(2);
        }
        String bootstrap = args[0], topic = args[1], group = args[2], protocol = args[3], assignor = args[4];
        File stop = new File(args[5]);

        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, 50);
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 200);
        if (protocol.equals("classic")) {
            // 6000 is the broker's group.min.session.timeout.ms; the classic protocol's timeouts are client-side
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 6000);
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 1000);
            p.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, 30000);
            String cls = switch (assignor) {
                case "range" -> RangeAssignor.class.getName();
                case "roundrobin" -> RoundRobinAssignor.class.getName();
                case "sticky" -> StickyAssignor.class.getName();
                case "cooperative-sticky" -> CooperativeStickyAssignor.class.getName();
                default -> throw new IllegalArgumentException("unknown classic assignor " + assignor);
            };
            p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, cls);
        } else {
            // KIP-848: session timeout, heartbeat interval and assignment are the broker's business
            p.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, assignor);
        }

        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p);
        consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
            public void onPartitionsRevoked(Collection<TopicPartition> tps) {
                if (!tps.isEmpty()) out("REVOKED " + parts(tps));
            }
            public void onPartitionsAssigned(Collection<TopicPartition> tps) {
                out("ASSIGNMENT " + parts(consumer.assignment()));
            }
            public void onPartitionsLost(Collection<TopicPartition> tps) {
                out("LOST " + parts(tps));
            }
        });
        int rc = 0;
        try {
            while (!stop.exists()) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
                if (records.isEmpty()) continue;
                Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
                for (ConsumerRecord<String, String> r : records) {
                    out("R " + r.partition() + " " + r.offset() + " " + r.value());
                    offsets.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                try {
                    consumer.commitSync(offsets, Duration.ofSeconds(30));
                } catch (RebalanceInProgressException | CommitFailedException e) {
                    // a rebalance is under way: the next poll rejoins; the records stay uncommitted
                    // (whoever owns the partitions next reads them again: at-least-once)
                    out("COMMITFAIL " + e.getClass().getSimpleName());
                    continue;
                }
                out("COMMITTED " + offsets.entrySet().stream()
                        .sorted(Comparator.comparingInt(e -> e.getKey().partition()))
                        .map(e -> e.getKey().partition() + ":" + e.getValue().offset())
                        .collect(Collectors.joining(",")));
            }
        } catch (Exception e) {
            out("ERROR " + e.getClass().getName() + ": " + e.getMessage());
            rc = 1;
        }
        consumer.close(CloseOptions.timeout(Duration.ofSeconds(10)));
        out("CLOSED");
        System.exit(rc);
    }
}
