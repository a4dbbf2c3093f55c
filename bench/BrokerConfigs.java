// Records the settings a broker actually runs with (DescribeConfigs of the broker resource):
//   java -cp "$KAFKA_HOME/lib/*:CLASSES" BrokerConfigs BOOTSTRAP NODE_ID
// Prints one line per setting, sorted by name:
//   name=value source=DEFAULT_CONFIG|STATIC_BROKER_CONFIG|...
// Fails (exit status 1) if the broker does not answer.

import java.util.*;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.config.ConfigResource;

public class BrokerConfigs {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        ConfigResource broker = new ConfigResource(ConfigResource.Type.BROKER, args[1]);
        try (Admin admin = Admin.create(p)) {
            Config config = admin.describeConfigs(List.of(broker)).all().get(60, TimeUnit.SECONDS).get(broker);
            List<ConfigEntry> entries = new ArrayList<>(config.entries());
            entries.sort(Comparator.comparing(ConfigEntry::name));
            for (ConfigEntry e : entries)
                System.out.println(e.name() + "=" + (e.isSensitive() ? "(sensitive)" : e.value()) + " source=" + e.source());
        }
    }
}
