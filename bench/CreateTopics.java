// Creates topics in one JVM (kafka-topics.sh starts one JVM per topic):
//   java -cp "$KAFKA_HOME/lib/*:CLASSES" CreateTopics BOOTSTRAP NAME:PARTITIONS...
// Replication factor 1; fails (exit status 1) if a topic cannot be created within 60 s.

import java.util.*;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;

public class CreateTopics {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        List<NewTopic> topics = new ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            String[] nv = args[i].split(":");
            topics.add(new NewTopic(nv[0], Integer.parseInt(nv[1]), (short) 1));
        }
        try (Admin admin = Admin.create(p)) {
            admin.createTopics(topics).all().get(60, TimeUnit.SECONDS);
            for (NewTopic t : topics) System.out.println("created " + t.name() + " partitions=" + t.numPartitions());
        }
    }
}
