//! Every decision of `cluster::plan::decide`.

use crate::cluster::plan::*;

fn pods(n: i32, rev: &str) -> Vec<PodState> {
    (0..n)
        .map(|i| PodState {
            ordinal: i,
            revision: Some(rev.into()),
            ready: true,
            terminating: false,
        })
        .collect()
}

fn brokers(counts: &[(i32, u32)]) -> View {
    View {
        brokers: counts
            .iter()
            .map(|(id, p)| BrokerState {
                id: *id,
                alive: true,
                draining: false,
                partitions: *p,
                shards: 4,
                incarnation: 100 + *id as u64,
            })
            .collect(),
        unassigned: 0,
        controller: 0,
        rebalance_moves: None,
    }
}

fn observed(desired: i32, replicas: i32, view: Option<View>) -> Observed {
    Observed {
        desired,
        replicas: Some(replicas),
        update_revision: Some("r1".into()),
        pods: pods(replicas, "r1"),
        view,
        restarting: None,
        auto_rebalance: true,
    }
}

#[test]
fn a_new_cluster_gets_its_statefulset() {
    let o = Observed {
        desired: 3,
        replicas: None,
        update_revision: None,
        pods: vec![],
        view: None,
        restarting: None,
        auto_rebalance: true,
    };
    let p = decide(&o);
    assert_eq!(p.steps, vec![Step::Replicas(3)]);
    assert_eq!(p.phase, Phase::Creating);
}

#[test]
fn a_steady_cluster_needs_nothing() {
    let p = decide(&observed(3, 3, Some(brokers(&[(0, 4), (1, 4), (2, 5)]))));
    assert_eq!(p.steps, vec![]);
    assert_eq!(p.phase, Phase::Ready);
}

#[test]
fn scale_up_adds_pods_then_rebalances_once_the_new_brokers_serve() {
    let p = decide(&observed(5, 3, Some(brokers(&[(0, 4), (1, 4), (2, 4)]))));
    assert_eq!(p.steps, vec![Step::Replicas(5)]);
    assert_eq!(p.phase, Phase::ScalingUp);
    // Pods exist but brokers 3 and 4 have not registered: wait.
    let mut o = observed(5, 5, Some(brokers(&[(0, 4), (1, 4), (2, 4)])));
    assert_eq!(decide(&o).phase, Phase::Starting);
    assert!(decide(&o).steps.is_empty());
    o.view = Some(brokers(&[(0, 4), (1, 4), (2, 4), (3, 0), (4, 0)]));
    let p = decide(&o);
    assert_eq!(p.steps, vec![Step::Rebalance]);
    assert_eq!(p.phase, Phase::Balancing);
}

#[test]
fn the_brokers_dry_run_decides_when_they_give_one() {
    // Counts are uneven, but the brokers' plan (by measured traffic) moves nothing: no
    // rebalance, which would move nothing either.
    let mut view = brokers(&[(0, 9), (1, 1), (2, 2)]);
    view.rebalance_moves = Some(0);
    let p = decide(&observed(3, 3, Some(view)));
    assert!(p.steps.is_empty(), "{p:?}");
    assert_eq!(p.phase, Phase::Ready);
    // Counts are even, but the brokers would move busy partitions: rebalance.
    let mut view = brokers(&[(0, 4), (1, 4), (2, 4)]);
    view.rebalance_moves = Some(2);
    let p = decide(&observed(3, 3, Some(view)));
    assert_eq!(p.steps, vec![Step::Rebalance]);
    assert_eq!(p.phase, Phase::Balancing);
}

#[test]
fn without_auto_rebalance_an_uneven_spread_is_left_alone() {
    let mut o = observed(3, 3, Some(brokers(&[(0, 9), (1, 1), (2, 2)])));
    o.auto_rebalance = false;
    let p = decide(&o);
    assert!(p.steps.is_empty());
    assert_eq!(p.phase, Phase::Ready);
}

#[test]
fn scale_down_drains_first_and_removes_pods_only_when_they_own_nothing() {
    let view = brokers(&[(0, 3), (1, 3), (2, 3), (3, 3)]);
    let p = decide(&observed(2, 4, Some(view.clone())));
    assert_eq!(p.steps, vec![Step::Drain(2), Step::Drain(3)]);
    assert_eq!(p.phase, Phase::Draining);
    assert_eq!(p.draining, vec![2, 3]);
    // Draining, partitions still moving: nothing to do, the pods stay.
    let mut v = view.clone();
    v.brokers[2].draining = true;
    v.brokers[3].draining = true;
    v.brokers[3].partitions = 0;
    let p = decide(&observed(2, 4, Some(v.clone())));
    assert!(p.steps.is_empty(), "{p:?}");
    assert_eq!(p.phase, Phase::Draining);
    // Empty: now the StatefulSet shrinks.
    v.brokers[2].partitions = 0;
    v.brokers[2].shards = 0;
    v.brokers[3].shards = 0;
    let p = decide(&observed(2, 4, Some(v)));
    assert_eq!(p.steps, vec![Step::Replicas(2)]);
    assert_eq!(p.phase, Phase::ScalingDown);
}

#[test]
fn scale_down_without_the_admin_api_keeps_every_broker() {
    let p = decide(&observed(1, 3, None));
    assert!(p.steps.is_empty());
    assert_eq!(p.phase, Phase::AdminUnreachable);
}

#[test]
fn a_broker_that_failed_to_drain_is_drained_again_and_its_pod_kept() {
    // Drain was asked but the flag did not stick (the call failed): ask again.
    let v = brokers(&[(0, 3), (1, 3), (2, 3)]);
    let p = decide(&observed(2, 3, Some(v)));
    assert_eq!(p.steps, vec![Step::Drain(2)]);
    assert!(!p.steps.contains(&Step::Replicas(2)));
}

#[test]
fn scaling_back_up_undrains_brokers_that_come_back() {
    let mut v = brokers(&[(0, 3), (1, 3), (2, 0)]);
    v.brokers[2].draining = true;
    // Scale-down to 2 was under way; the user asks for 3 again.
    let p = decide(&observed(3, 3, Some(v)));
    assert_eq!(p.steps, vec![Step::Undrain(2)]);
}

#[test]
fn a_roll_restarts_one_broker_at_a_time_and_the_controller_last() {
    let mut o = observed(3, 3, Some(brokers(&[(0, 3), (1, 3), (2, 3)])));
    o.update_revision = Some("r2".into());
    let p = decide(&o);
    assert_eq!(
        p.steps,
        vec![Step::Restart(1)],
        "broker 0 is the controller"
    );
    assert_eq!(p.phase, Phase::Rolling);
    assert_eq!(p.restarting, Some((1, 101)));
    o.restarting = p.restarting;
    // Broker 1's pod is back but not ready: wait.
    o.pods[1].revision = Some("r2".into());
    o.pods[1].ready = false;
    assert!(decide(&o).steps.is_empty());
    // The pod is ready, but the broker is still the old process: wait, and remember.
    o.pods[1].ready = true;
    let p = decide(&o);
    assert!(p.steps.is_empty());
    assert_eq!(p.restarting, Some((1, 101)));
    // Back as a new process, owning nothing yet: rebalance before the next restart.
    let mut v = brokers(&[(0, 5), (1, 0), (2, 4)]);
    v.brokers[1].incarnation = 201;
    o.view = Some(v.clone());
    let p = decide(&o);
    assert_eq!(p.steps, vec![Step::Rebalance]);
    assert_eq!(p.restarting, None, "done with broker 1");
    o.restarting = None;
    v.brokers.iter_mut().for_each(|b| b.partitions = 3);
    o.view = Some(v);
    assert_eq!(decide(&o).steps, vec![Step::Restart(2)]);
    o.pods[2].revision = Some("r2".into());
    assert_eq!(decide(&o).steps, vec![Step::Restart(0)]);
    o.pods[0].revision = Some("r2".into());
    assert_eq!(decide(&o).phase, Phase::Ready);
}

#[test]
fn a_restart_recorded_but_not_done_is_done_again() {
    let mut o = observed(3, 3, Some(brokers(&[(0, 3), (1, 3), (2, 3)])));
    o.update_revision = Some("r2".into());
    o.restarting = Some((1, 101));
    let p = decide(&o);
    assert_eq!(p.steps, vec![Step::Restart(1)]);
    assert_eq!(p.restarting, Some((1, 101)));
    // Once the pod is on the new revision, it is only waited for.
    o.pods[1].revision = Some("r2".into());
    assert!(decide(&o).steps.is_empty());
}

#[test]
fn a_roll_waits_for_ownerless_partitions_to_be_owned() {
    let mut o = observed(3, 3, Some(brokers(&[(0, 3), (1, 3), (2, 3)])));
    o.update_revision = Some("r2".into());
    o.view.as_mut().unwrap().unassigned = 2;
    let p = decide(&o);
    assert!(p.steps.is_empty());
    assert_eq!(p.phase, Phase::Balancing);
}

#[test]
fn a_terminating_pod_is_not_ready() {
    let mut o = observed(3, 3, Some(brokers(&[(0, 3), (1, 3), (2, 3)])));
    o.update_revision = Some("r2".into());
    o.pods[1].terminating = true;
    let p = decide(&o);
    assert!(p.steps.is_empty(), "never two restarts at once: {p:?}");
    assert_eq!(p.phase, Phase::Starting);
}
