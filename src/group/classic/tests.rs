//! The classic group state machine on its own, step by step, as Kafka's coordinator
//! behaves: the join handshake (MEMBER_ID_REQUIRED), the first rebalance, sync, heartbeat
//! errors, rebalances on join and leave, session expiry, and static members.
// Test-only: the parent declares this file with #[cfg(test)].

use super::*;

const LIMITS: Limits = Limits {
    initial_delay: Duration::from_millis(3000),
    max_size: 3,
};

fn join(member_id: &str, instance: Option<&str>, meta: &'static [u8]) -> Join {
    Join {
        member_id: member_id.into(),
        instance_id: instance.map(Into::into),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from_static(meta))],
        require_known_member_id: true,
        supports_skip_assignment: false,
    }
}

fn now(r: Joined) -> JoinResult {
    match r {
        Joined::Now(r) => r,
        Joined::Later(_) => panic!("expected an answer now"),
    }
}

fn later(r: Joined) -> oneshot::Receiver<JoinResult> {
    match r {
        Joined::Later(rx) => rx,
        Joined::Now(r) => panic!("expected to wait, got {r:?}"),
    }
}

/// A dynamic member's two-step join: MEMBER_ID_REQUIRED, then the join that waits.
fn enter(g: &mut Group, id: &str) -> oneshot::Receiver<JoinResult> {
    let first = now(g.join(join("", None, b"m"), LIMITS, id.into()));
    assert_eq!(
        (first.error, first.member_id.as_str()),
        (Some(Code::MemberIdRequired), id)
    );
    later(g.join(join(id, None, b"m"), LIMITS, "unused".into()))
}

/// Group `g` with members a (leader) and b at generation 1, Stable.
fn stable_pair() -> Group {
    let mut g = Group::new("g");
    let mut a = enter(&mut g, "a");
    let mut b = enter(&mut g, "b");
    assert_eq!(g.state, State::PreparingRebalance);
    // The first rebalance of a new group waits group.initial.rebalance.delay.ms.
    g.maybe_complete_join(Instant::now());
    assert!(a.try_recv().is_err(), "still within the initial delay");
    g.maybe_complete_join(Instant::now() + LIMITS.initial_delay);
    let (ra, rb) = (a.try_recv().unwrap(), b.try_recv().unwrap());
    assert_eq!((ra.generation, ra.leader.as_str()), (1, "a"));
    assert_eq!(
        ra.members.len(),
        2,
        "the leader gets every member's metadata"
    );
    assert!(rb.members.is_empty(), "a follower gets none");
    assert_eq!(g.state, State::CompletingRebalance);
    let mut follower = g.sync("b", None, 1, vec![]).unwrap();
    assert!(
        follower.try_recv().is_err(),
        "the follower waits for the leader"
    );
    let assignments = vec![
        ("a".into(), Bytes::from_static(b"pa")),
        ("b".into(), Bytes::from_static(b"pb")),
    ];
    let mut leader = g.sync("a", None, 1, assignments).unwrap();
    assert_eq!(&leader.try_recv().unwrap().assignment[..], b"pa");
    assert_eq!(&follower.try_recv().unwrap().assignment[..], b"pb");
    assert_eq!(g.state, State::Stable);
    g
}

#[test]
fn two_members_join_sync_and_become_stable() {
    let g = stable_pair();
    assert_eq!(g.generation, 1);
    assert_eq!(g.protocol.as_deref(), Some("range"));
}

#[test]
fn heartbeats_answer_as_kafka_does() {
    let mut g = stable_pair();
    assert_eq!(g.heartbeat("a", None, 1), Ok(()));
    assert_eq!(g.heartbeat("a", None, 0), Err(Code::IllegalGeneration));
    assert_eq!(g.heartbeat("zz", None, 1), Err(Code::UnknownMemberId));
    // A new member makes everyone rejoin: heartbeats say so.
    let _c = enter(&mut g, "c");
    assert_eq!(g.state, State::PreparingRebalance);
    assert_eq!(g.heartbeat("a", None, 1), Err(Code::RebalanceInProgress));
}

#[test]
fn a_leaving_member_triggers_a_rebalance_and_the_last_one_empties_the_group() {
    let mut g = stable_pair();
    assert_eq!(g.leave("b", None, LIMITS), Ok(()));
    assert_eq!(g.state, State::PreparingRebalance);
    let mut a = later(g.join(join("a", None, b"m"), LIMITS, "unused".into()));
    let r = a.try_recv().unwrap();
    assert_eq!(
        (r.generation, r.leader.as_str(), r.members.len()),
        (2, "a", 1)
    );
    assert_eq!(g.leave("a", None, LIMITS), Ok(()));
    assert_eq!(g.state, State::Empty);
    assert_eq!(g.leave("a", None, LIMITS), Err(Code::UnknownMemberId));
}

#[test]
fn a_member_whose_session_expires_is_removed_and_the_rest_rebalance() {
    let mut g = stable_pair();
    // a heartbeats; b stays silent past its 10 s session.
    let later_on = Instant::now() + Duration::from_secs(11);
    if let Some(m) = g.members.get_mut("a") {
        m.last_heartbeat = later_on;
    }
    assert!(g.expire(later_on, LIMITS));
    assert!(!g.members.contains_key("b"));
    assert_eq!(g.state, State::PreparingRebalance);
    assert_eq!(g.heartbeat("b", None, 1), Err(Code::UnknownMemberId));
}

#[test]
fn the_group_refuses_members_past_its_size_and_other_protocols() {
    let mut g = stable_pair();
    let _c = enter(&mut g, "c");
    let full = now(g.join(join("", None, b"m"), LIMITS, "d".into()));
    assert_eq!(full.error, Some(Code::GroupMaxSizeReached));
    let mut other = join("", None, b"m");
    other.protocols = vec![("roundrobin-only".into(), Bytes::new())];
    let refused = now(g.join(other, LIMITS, "e".into()));
    assert_eq!(refused.error, Some(Code::InconsistentGroupProtocol));
}

#[test]
fn a_static_member_back_with_a_new_id_takes_its_place_and_fences_the_old_id() {
    let mut g = Group::new("g");
    let mut a = later(g.join(join("", Some("host-1"), b"m"), LIMITS, "a1".into()));
    g.maybe_complete_join(Instant::now() + LIMITS.initial_delay);
    assert_eq!(a.try_recv().unwrap().leader, "a1");
    let mut s = g
        .sync(
            "a1",
            Some("host-1"),
            1,
            vec![("a1".into(), Bytes::from_static(b"p"))],
        )
        .unwrap();
    assert_eq!(&s.try_recv().unwrap().assignment[..], b"p");
    // Restarted: same instance id, no member id. It takes the old member's place; the
    // generation does not move, so nobody rebalances.
    let back = g.join(join("", Some("host-1"), b"m"), LIMITS, "a2".into());
    let r = match back {
        Joined::Now(r) => r,
        Joined::Later(_) => panic!("a static member rejoining a stable group answers now"),
    };
    assert_eq!(
        (r.error, r.generation, r.member_id.as_str()),
        (None, 1, "a2")
    );
    assert_eq!(
        g.heartbeat("a1", Some("host-1"), 1),
        Err(Code::FencedInstanceId)
    );
    assert_eq!(g.heartbeat("a2", Some("host-1"), 1), Ok(()));
}
