//! The error codes of a response, as Kafka's `errorCounts()` lists them: the top-level
//! code, and each partition's, topic's or group's where a response carries them.

use kafka_protocol::messages::ResponseKind;

/// Calls `f` with every error code of `resp`.
pub fn each_code(resp: &ResponseKind, f: &mut impl FnMut(i16)) {
    use ResponseKind as R;
    match resp {
        R::Produce(r) => r
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .for_each(|p| f(p.error_code)),
        R::Fetch(r) => {
            if r.error_code != 0 {
                f(r.error_code);
            }
            r.responses
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| f(p.error_code));
        }
        R::ListOffsets(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        R::Metadata(r) => {
            for t in &r.topics {
                f(t.error_code);
                t.partitions.iter().for_each(|p| f(p.error_code));
            }
        }
        R::OffsetCommit(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        R::OffsetFetch(r) => {
            if r.groups.is_empty() {
                f(r.error_code);
                r.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| f(p.error_code));
            }
            for g in &r.groups {
                f(g.error_code);
                g.topics
                    .iter()
                    .flat_map(|t| &t.partitions)
                    .for_each(|p| f(p.error_code));
            }
        }
        R::FindCoordinator(r) => {
            if r.coordinators.is_empty() {
                f(r.error_code);
            }
            r.coordinators.iter().for_each(|c| f(c.error_code));
        }
        R::JoinGroup(r) => f(r.error_code),
        R::Heartbeat(r) => f(r.error_code),
        R::LeaveGroup(r) => {
            f(r.error_code);
            r.members.iter().for_each(|m| f(m.error_code));
        }
        R::SyncGroup(r) => f(r.error_code),
        R::DescribeGroups(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        R::ListGroups(r) => f(r.error_code),
        R::SaslHandshake(r) => f(r.error_code),
        R::ApiVersions(r) => f(r.error_code),
        R::CreateTopics(r) => r.topics.iter().for_each(|t| f(t.error_code)),
        R::DeleteTopics(r) => r.responses.iter().for_each(|t| f(t.error_code)),
        R::DeleteRecords(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        R::InitProducerId(r) => f(r.error_code),
        R::OffsetForLeaderEpoch(r) => r
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .for_each(|p| f(p.error_code)),
        R::DescribeConfigs(r) => r.results.iter().for_each(|x| f(x.error_code)),
        R::AlterConfigs(r) => r.responses.iter().for_each(|x| f(x.error_code)),
        R::IncrementalAlterConfigs(r) => r.responses.iter().for_each(|x| f(x.error_code)),
        R::CreatePartitions(r) => r.results.iter().for_each(|x| f(x.error_code)),
        R::DescribeCluster(r) => f(r.error_code),
        R::DescribeLogDirs(r) => {
            f(r.error_code);
            r.results.iter().for_each(|x| f(x.error_code));
        }
        R::DeleteGroups(r) => r.results.iter().for_each(|x| f(x.error_code)),
        R::OffsetDelete(r) => {
            f(r.error_code);
            r.topics
                .iter()
                .flat_map(|t| &t.partitions)
                .for_each(|p| f(p.error_code));
        }
        R::ConsumerGroupHeartbeat(r) => f(r.error_code),
        R::ConsumerGroupDescribe(r) => r.groups.iter().for_each(|g| f(g.error_code)),
        R::SaslAuthenticate(r) => f(r.error_code),
        R::DescribeUserScramCredentials(r) => {
            f(r.error_code);
            r.results.iter().for_each(|x| f(x.error_code));
        }
        R::AlterUserScramCredentials(r) => r.results.iter().for_each(|x| f(x.error_code)),
        R::DescribeClientQuotas(r) => f(r.error_code),
        R::AlterClientQuotas(r) => r.entries.iter().for_each(|x| f(x.error_code)),
        R::CreateAcls(r) => r.results.iter().for_each(|x| f(x.error_code)),
        R::DescribeAcls(r) => f(r.error_code),
        R::DeleteAcls(r) => r.filter_results.iter().for_each(|x| f(x.error_code)),
        // Every API this broker serves is listed above; others are never answered.
        _ => {}
    }
}
