// Consumer-group benchmark: N consumers in one JVM against one broker.
//
//   java -cp 'lib/*' bench/GroupBench.java BOOTSTRAP TOPIC PARTITIONS CONSUMERS PROTOCOL COMMIT_SECONDS
//
// Prints lines "name value":
//   stable_ms      time from the first subscribe until every partition is assigned, each to
//                  exactly one consumer, and every consumer has its share
//   rebalance_ms   time from one consumer's close() until its partitions are owned again
//   commits_per_s  synchronous offset commits per second, summed over all consumers
//   commit_errors  commitSync calls that threw during the commit phase (not counted above)
// Exits with status 1 (after printing what it has) when a figure could not be measured: the
// group did not become stable or did not rebalance within 120 s, no commit succeeded, a
// consumer thread died with an exception, or a thread did not stop. No figure is printed
// as -1 or 0 in place of a failure.
import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public class GroupBench {
    static final Map<Integer, Set<TopicPartition>> owned = new ConcurrentHashMap<>();

    public static void main(String[] a) throws Exception {
        String bootstrap = a[0], topic = a[1], protocol = a[4];
        int partitions = Integer.parseInt(a[2]), n = Integer.parseInt(a[3]);
        int commitSeconds = Integer.parseInt(a[5]);
        String group = "bench-" + protocol + "-" + System.nanoTime();
        AtomicBoolean stop = new AtomicBoolean(false);
        AtomicBoolean committing = new AtomicBoolean(false);
        AtomicLong commits = new AtomicLong();
        Set<Integer> closing = ConcurrentHashMap.newKeySet();
        List<Thread> threads = new ArrayList<>();
        long start = System.nanoTime();
        for (int i = 0; i < n; i++) {
            final int id = i;
            owned.put(id, ConcurrentHashMap.newKeySet());
            Thread t = new Thread(() -> run(id, bootstrap, topic, group, protocol, stop, committing, commits, closing));
            t.start();
            threads.add(t);
        }
        long stable = waitFor(() -> covered(partitions, n, -1), 120_000);
        if (stable < 0) fail("the group of " + n + " consumers did not become stable within 120 s", stop, threads);
        System.out.println("stable_ms " + (stable - start) / 1_000_000);
        // One consumer leaves: time until the others own every partition again.
        long left = System.nanoTime();
        closing.add(0);
        long again = waitFor(() -> owned.get(0).isEmpty() && covered(partitions, n - 1, 0), 120_000);
        if (again < 0) fail("the group did not rebalance within 120 s after a consumer left", stop, threads);
        System.out.println("rebalance_ms " + (again - left) / 1_000_000);
        commits.set(0);
        commitErrors.set(0);
        committing.set(true);
        long c0 = System.nanoTime();
        Thread.sleep(commitSeconds * 1000L);
        long done = commits.get();
        double secs = (System.nanoTime() - c0) / 1e9;
        System.out.printf(Locale.ROOT, "commits_per_s %.1f%n", done / secs);
        System.out.println("commit_errors " + commitErrors.get());
        if (done == 0) fail("no offset commit succeeded in " + commitSeconds + " s", stop, threads);
        stop.set(true);
        for (Thread t : threads) t.join(30_000);
        for (Thread t : threads) if (t.isAlive()) fail("a consumer thread did not stop within 30 s", stop, threads);
        if (errors.get() > 0) fail(errors.get() + " consumer thread(s) died with an exception (see above)", stop, threads);
        System.exit(0);
    }

    static final AtomicInteger errors = new AtomicInteger();
    static final AtomicLong commitErrors = new AtomicLong();

    static void fail(String why, AtomicBoolean stop, List<Thread> threads) {
        System.err.println("ERROR: " + why);
        System.out.flush();
        stop.set(true);
        System.exit(1);  // the consumers' threads end with the JVM
    }

    static boolean covered(int partitions, int members, int except) {
        Set<TopicPartition> all = new HashSet<>();
        int total = 0;
        int min = Integer.MAX_VALUE, max = 0;
        for (Map.Entry<Integer, Set<TopicPartition>> e : owned.entrySet()) {
            if (e.getKey() == except) continue;
            int s = e.getValue().size();
            total += s;
            all.addAll(e.getValue());
            min = Math.min(min, s);
            max = Math.max(max, s);
        }
        return all.size() == partitions && total == partitions && max - min <= Math.max(1, partitions / members);
    }

    interface Cond { boolean ok(); }

    static long waitFor(Cond c, long timeoutMs) throws InterruptedException {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (System.currentTimeMillis() < deadline) {
            if (c.ok()) return System.nanoTime();
            Thread.sleep(5);
        }
        return -1;
    }

    static void run(int id, String bootstrap, String topic, String group, String protocol, AtomicBoolean stop,
                    AtomicBoolean committing, AtomicLong commits, Set<Integer> closing) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("group.protocol", protocol);
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        if (protocol.equals("classic")) {
            p.put("partition.assignment.strategy", CooperativeStickyAssignor.class.getName());
            p.put("session.timeout.ms", "10000");
            p.put("heartbeat.interval.ms", "500");
        }
        Set<TopicPartition> mine = owned.get(id);
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                public void onPartitionsRevoked(Collection<TopicPartition> ps) { mine.removeAll(ps); }
                public void onPartitionsAssigned(Collection<TopicPartition> ps) { mine.addAll(ps); }
                public void onPartitionsLost(Collection<TopicPartition> ps) { mine.removeAll(ps); }
            });
            while (!stop.get()) {
                if (closing.contains(id)) {
                    c.close(Duration.ofSeconds(10));
                    mine.clear();
                    return;
                }
                c.poll(Duration.ofMillis(50));
                if (committing.get() && !c.assignment().isEmpty()) {
                    Map<TopicPartition, OffsetAndMetadata> offs = new HashMap<>();
                    for (TopicPartition tp : c.assignment()) offs.put(tp, new OffsetAndMetadata(0));
                    try {
                        c.commitSync(offs, Duration.ofSeconds(5));
                        commits.incrementAndGet();
                    } catch (Exception e) {
                        // e.g. a rebalance in progress: counted, and tried again
                        commitErrors.incrementAndGet();
                    }
                }
            }
        } catch (Exception e) {
            if (!stop.get()) {
                errors.incrementAndGet();
                System.err.println("consumer " + id + ": " + e);
            }
        }
    }
}
