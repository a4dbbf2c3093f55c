//! The HorizontalPodAutoscaler of a cluster with `spec.autoscaling`: it scales the
//! StratusCluster's `/scale`, never the StatefulSet, so that every step is a drain or a
//! rebalance by the operator.

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerBehavior, HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec,
    MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::Resource;

use super::{owned_meta, Names};
use crate::crd::StratusCluster;

/// The HPA, when the cluster asks for one.
pub fn autoscaler(c: &StratusCluster) -> Option<HorizontalPodAutoscaler> {
    let a = c.spec.autoscaling.as_ref()?;
    let names = Names::of(c);
    let mut metrics = vec![MetricSpec {
        type_: "Resource".into(),
        resource: Some(ResourceMetricSource {
            name: "cpu".into(),
            target: MetricTarget {
                type_: "Utilization".into(),
                average_utilization: Some(a.target_cpu_utilization.unwrap_or(70)),
                ..Default::default()
            },
        }),
        ..Default::default()
    }];
    if let Some(rate) = &a.target_messages_in_per_second {
        metrics.push(MetricSpec {
            type_: "Pods".into(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier {
                    name: "stratus_broker_messages_in_per_second".into(),
                    ..Default::default()
                },
                target: MetricTarget {
                    type_: "AverageValue".into(),
                    average_value: Some(Quantity(rate.clone())),
                    ..Default::default()
                },
            }),
            ..Default::default()
        });
    }
    // One broker at a time each way: each step drains or rebalances before the next.
    let one_at_a_time = |window: i32| HPAScalingRules {
        stabilization_window_seconds: Some(window),
        select_policy: Some("Min".into()),
        policies: Some(vec![HPAScalingPolicy {
            type_: "Pods".into(),
            value: 1,
            period_seconds: 60,
        }]),
        ..Default::default()
    };
    Some(HorizontalPodAutoscaler {
        metadata: owned_meta(c, names.cluster.clone()),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(StratusCluster::api_version(&()).to_string()),
                kind: StratusCluster::kind(&()).to_string(),
                name: names.cluster.clone(),
            },
            min_replicas: Some(a.min_brokers),
            max_replicas: a.max_brokers,
            metrics: Some(metrics),
            behavior: Some(HorizontalPodAutoscalerBehavior {
                scale_up: Some(one_at_a_time(60)),
                scale_down: Some(one_at_a_time(
                    a.scale_down_stabilization_seconds.unwrap_or(600),
                )),
            }),
        },
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::testing::cluster;
    use crate::crd::Autoscaling;

    #[test]
    fn the_autoscaler_scales_the_cluster_one_broker_at_a_time() {
        let mut c = cluster("prod", 3);
        assert!(autoscaler(&c).is_none());
        c.spec.autoscaling = Some(Autoscaling {
            min_brokers: 3,
            max_brokers: 12,
            target_cpu_utilization: None,
            target_messages_in_per_second: Some("50k".into()),
            scale_down_stabilization_seconds: None,
        });
        let h = autoscaler(&c).unwrap().spec;
        assert_eq!(h.scale_target_ref.kind, "StratusCluster");
        assert_eq!((h.min_replicas, h.max_replicas), (Some(3), 12));
        assert_eq!(h.metrics.as_ref().unwrap().len(), 2);
        let down = h.behavior.unwrap().scale_down.unwrap();
        assert_eq!(down.stabilization_window_seconds, Some(600));
        assert_eq!(down.policies.unwrap()[0].value, 1);
    }
}
