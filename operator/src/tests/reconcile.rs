//! Reconciles against a mocked API server and admin API (`fake`): each decision, end to
//! end through the API calls it makes.

use std::sync::Arc;

use serde_json::{json, Value};

use super::fake::{context, FakeAdmin, FakeApi};
use crate::cluster::plan::{BrokerState, View};
use crate::crd::testing::cluster;
use crate::crd::{StratusCluster, StratusTopic, StratusUser};

const STS: &str = "/apis/apps/v1/namespaces/kafka/statefulsets/prod-broker";
const CLUSTER: &str = "/apis/stratus.io/v1alpha1/namespaces/kafka/stratusclusters/prod";

fn pod_path(i: i32) -> String {
    format!("/api/v1/namespaces/kafka/pods/prod-broker-{i}")
}

fn pod(i: i32, rev: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("prod-broker-{i}"), "namespace": "kafka",
                        "labels": {"controller-revision-hash": rev}},
           "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
}

fn view(partitions: &[(i32, u32, bool)]) -> View {
    View {
        brokers: partitions
            .iter()
            .map(|(id, p, draining)| BrokerState {
                id: *id,
                alive: true,
                draining: *draining,
                partitions: *p,
                shards: if *p == 0 { 0 } else { 3 },
                incarnation: 100 + *id as u64,
            })
            .collect(),
        unassigned: 0,
        controller: 0,
        rebalance_moves: None,
    }
}

/// A running cluster: its StatefulSet with `replicas` pods on revision `rev` of `update`.
fn running(api: &FakeApi, replicas: i32, rev: &str, update: &str) {
    api.put(
        STS,
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": "prod-broker", "namespace": "kafka"},
               "spec": {"replicas": replicas, "selector": {}, "template": {}},
               "status": {"updateRevision": update}}),
    );
    for i in 0..replicas {
        api.put(&pod_path(i), pod(i, rev));
    }
}

fn applied_replicas(api: &FakeApi) -> i64 {
    api.get(STS).unwrap()["spec"]["replicas"].as_i64().unwrap()
}

fn status(api: &FakeApi) -> Value {
    api.get(CLUSTER)
        .map(|c| c["status"].clone())
        .unwrap_or(Value::Null)
}

fn reason(api: &FakeApi) -> String {
    status(api)["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn reconcile(
    api: &Arc<FakeApi>,
    admin: &Arc<FakeAdmin>,
    c: StratusCluster,
) -> Result<(), String> {
    let mut stored = serde_json::to_value(&c).unwrap();
    if let Some(Value::Object(s)) = api.get(CLUSTER).map(|o| o["status"].clone()) {
        stored["status"] = Value::Object(s);
    }
    api.put(CLUSTER, stored);
    crate::cluster::reconcile(Arc::new(c), context(api.clone(), admin.clone()))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn create_makes_every_object_and_says_so() {
    let (api, admin) = (Arc::new(FakeApi::default()), Arc::new(FakeAdmin::default()));
    reconcile(&api, &admin, cluster("prod", 3)).await.unwrap();
    for path in [
        "/api/v1/namespaces/kafka/serviceaccounts/prod-broker",
        "/api/v1/namespaces/kafka/configmaps/prod-config",
        "/api/v1/namespaces/kafka/services/prod-brokers",
        "/api/v1/namespaces/kafka/services/prod",
        "/apis/policy/v1/namespaces/kafka/poddisruptionbudgets/prod-broker",
        "/api/v1/namespaces/kafka/secrets/prod-admin",
        STS,
    ] {
        assert!(
            api.get(path).is_some(),
            "{path} not applied: {:?}",
            api.wrote("")
        );
    }
    assert_eq!(applied_replicas(&api), 3);
    assert_eq!(reason(&api), "Creating");
    assert!(
        !api.wrote("POST /apis/events.k8s.io").is_empty(),
        "an Event"
    );
    assert!(admin.calls().is_empty());
}

#[tokio::test]
async fn scale_up_grows_the_statefulset_then_rebalances() {
    let (api, admin) = (Arc::new(FakeApi::default()), Arc::new(FakeAdmin::default()));
    running(&api, 3, "r1", "r1");
    *admin.view.lock().unwrap() = Some(view(&[(0, 4), (1, 4), (2, 4)].map(|(i, p)| (i, p, false))));
    reconcile(&api, &admin, cluster("prod", 5)).await.unwrap();
    assert_eq!(applied_replicas(&api), 5);
    assert_eq!(reason(&api), "ScalingUp");
    // The new pods are up and their brokers registered, owning nothing yet.
    for i in 3..5 {
        api.put(&pod_path(i), pod(i, "r1"));
    }
    *admin.view.lock().unwrap() = Some(view(&[
        (0, 4, false),
        (1, 4, false),
        (2, 4, false),
        (3, 0, false),
        (4, 0, false),
    ]));
    reconcile(&api, &admin, cluster("prod", 5)).await.unwrap();
    assert_eq!(admin.calls(), vec!["rebalance()"]);
}

#[tokio::test]
async fn scale_down_drains_and_keeps_the_pod_until_the_broker_is_empty() {
    let (api, admin) = (Arc::new(FakeApi::default()), Arc::new(FakeAdmin::default()));
    running(&api, 3, "r1", "r1");
    *admin.view.lock().unwrap() = Some(view(&[(0, 4, false), (1, 4, false), (2, 4, false)]));
    reconcile(&api, &admin, cluster("prod", 2)).await.unwrap();
    assert_eq!(admin.calls(), vec!["drain(2)"]);
    assert_eq!(
        applied_replicas(&api),
        3,
        "the pod stays while the broker owns partitions"
    );
    assert_eq!(status(&api)["draining"], json!([2]));
    // Still moving: nothing more.
    *admin.view.lock().unwrap() = Some(view(&[(0, 6, false), (1, 5, false), (2, 1, true)]));
    reconcile(&api, &admin, cluster("prod", 2)).await.unwrap();
    assert_eq!(admin.calls().len(), 1);
    assert_eq!(applied_replicas(&api), 3);
    // Empty: the StatefulSet shrinks.
    *admin.view.lock().unwrap() = Some(view(&[(0, 6, false), (1, 6, false), (2, 0, true)]));
    reconcile(&api, &admin, cluster("prod", 2)).await.unwrap();
    assert_eq!(applied_replicas(&api), 2);
    assert_eq!(reason(&api), "ScalingDown");
}

#[tokio::test]
async fn a_failed_drain_is_retried_and_never_shrinks_the_statefulset() {
    let (api, admin) = (Arc::new(FakeApi::default()), Arc::new(FakeAdmin::default()));
    running(&api, 3, "r1", "r1");
    *admin.view.lock().unwrap() = Some(view(&[(0, 4, false), (1, 4, false), (2, 4, false)]));
    *admin.fail_drain.lock().unwrap() = true;
    assert!(
        reconcile(&api, &admin, cluster("prod", 2)).await.is_err(),
        "the error is retried with backoff"
    );
    assert_eq!(applied_replicas(&api), 3);
    *admin.fail_drain.lock().unwrap() = false;
    reconcile(&api, &admin, cluster("prod", 2)).await.unwrap();
    assert_eq!(admin.calls(), vec!["drain(2)", "drain(2)"]);
    assert_eq!(applied_replicas(&api), 3);
    // Without the admin API, nothing is removed either.
    *admin.view.lock().unwrap() = None;
    reconcile(&api, &admin, cluster("prod", 2)).await.unwrap();
    assert_eq!(applied_replicas(&api), 3);
    assert_eq!(reason(&api), "AdminUnreachable");
}

#[tokio::test]
async fn a_config_change_or_an_upgrade_rolls_one_pod_and_records_it() {
    let (api, admin) = (Arc::new(FakeApi::default()), Arc::new(FakeAdmin::default()));
    running(&api, 3, "r1", "r2");
    *admin.view.lock().unwrap() = Some(view(&[(0, 4, false), (1, 4, false), (2, 4, false)]));
    let mut c = cluster("prod", 3);
    c.spec.image = Some("stratus:v2".into());
    c.spec
        .config
        .insert("log.retention.ms".into(), "1000".into());
    reconcile(&api, &admin, c.clone()).await.unwrap();
    let sts = api.get(STS).unwrap();
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"],
        "stratus:v2"
    );
    let props = api
        .get("/api/v1/namespaces/kafka/configmaps/prod-config")
        .unwrap();
    assert!(props["data"]["server.properties"]
        .as_str()
        .unwrap()
        .contains("log.retention.ms=1000"));
    // One pod deleted (not the controller's), and the restart recorded before it.
    assert_eq!(api.wrote("DELETE"), vec![format!("DELETE {}", pod_path(1))]);
    assert_eq!(
        status(&api)["restarting"],
        json!({"broker": 1, "incarnation": 101})
    );
    assert_eq!(reason(&api), "Rolling");
    // Its pod is back and ready, but the broker is the old process: no second restart.
    api.put(&pod_path(1), pod(1, "r2"));
    c.status = serde_json::from_value(status(&api)).unwrap();
    reconcile(&api, &admin, c).await.unwrap();
    assert_eq!(api.wrote("DELETE").len(), 1);
}

#[tokio::test]
async fn a_topic_gets_its_finalizer_then_is_synced_and_deleted_with_its_resource() {
    let (api, admin) = (Arc::new(FakeApi::default()), Arc::new(FakeAdmin::default()));
    api.put(CLUSTER, serde_json::to_value(cluster("prod", 3)).unwrap());
    let path = "/apis/stratus.io/v1alpha1/namespaces/kafka/stratustopics/orders";
    let mut t: StratusTopic = serde_json::from_value(json!({
        "apiVersion": "stratus.io/v1alpha1", "kind": "StratusTopic",
        "metadata": {"name": "orders", "namespace": "kafka", "generation": 1},
        "spec": {"cluster": "prod", "partitions": 6, "config": {"retention.ms": "1000"}}}))
    .unwrap();
    api.put(path, serde_json::to_value(&t).unwrap());
    let ctx = context(api.clone(), admin.clone());
    crate::topic::reconcile(Arc::new(t.clone()), ctx.clone())
        .await
        .unwrap();
    let stored = api.get(path).unwrap();
    assert_eq!(
        stored["metadata"]["finalizers"],
        json!(["stratus.io/topic"])
    );
    t.metadata.finalizers = Some(vec!["stratus.io/topic".into()]);
    crate::topic::reconcile(Arc::new(t.clone()), ctx.clone())
        .await
        .unwrap();
    assert_eq!(
        admin.calls(),
        vec![r#"ensure_topic(orders, 6, {"retention.ms": "1000"})"#]
    );
    assert_eq!(api.get(path).unwrap()["status"]["topicId"], "id-1");
    // Deleted: the topic goes, then the finalizer.
    t.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    crate::topic::reconcile(Arc::new(t), ctx).await.unwrap();
    assert_eq!(admin.calls().last().unwrap(), "delete_topic(orders)");
    assert_eq!(api.get(path).unwrap()["metadata"]["finalizers"], json!([]));
}

#[tokio::test]
async fn a_user_gets_the_password_of_its_secret_and_its_acls() {
    let (api, admin) = (Arc::new(FakeApi::default()), Arc::new(FakeAdmin::default()));
    api.put(CLUSTER, serde_json::to_value(cluster("prod", 3)).unwrap());
    api.put(
        "/api/v1/namespaces/kafka/secrets/alice-pw",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "alice-pw", "resourceVersion": "7"},
               "data": {"password": "czNjcjN0"}}),
    );
    let path = "/apis/stratus.io/v1alpha1/namespaces/kafka/stratususers/alice";
    let u: StratusUser = serde_json::from_value(json!({
        "apiVersion": "stratus.io/v1alpha1", "kind": "StratusUser",
        "metadata": {"name": "alice", "namespace": "kafka", "generation": 1,
                     "finalizers": ["stratus.io/user"]},
        "spec": {"cluster": "prod",
                 "scram": {"mechanism": "SCRAM-SHA-512", "passwordSecret": {"name": "alice-pw"}},
                 "acls": [{"resourceType": "topic", "resourceName": "orders", "operations": ["Read", "Write"]}]}}))
    .unwrap();
    api.put(path, serde_json::to_value(&u).unwrap());
    crate::user::reconcile(Arc::new(u), context(api.clone(), admin.clone()))
        .await
        .unwrap();
    assert_eq!(
        admin.calls(),
        vec![r#"ensure_user(alice, Some("SCRAM-SHA-512:s3cr3t"), 2 acls)"#]
    );
    let st = api.get(path).unwrap()["status"].clone();
    assert_eq!(st["principal"], "User:alice");
    assert_eq!(st["secretVersion"], "7");
    assert!(
        !st.to_string().contains("s3cr3t"),
        "the password is not in status"
    );
}
