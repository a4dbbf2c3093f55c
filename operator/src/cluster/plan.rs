//! What to do next for one StratusCluster, decided from what is observed: the
//! StatefulSet, its pods and the brokers' own view (the admin API). A pure function, so
//! that every decision (create, scale up, drain then scale down, roll one broker at a
//! time, rebalance) is unit tested, and so that the operator picks up where it left off
//! after a restart: nothing it decides depends on memory of earlier runs.

/// One broker pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodState {
    /// Its ordinal (= its broker id).
    pub ordinal: i32,
    /// Its StatefulSet revision (`controller-revision-hash`).
    pub revision: Option<String>,
    /// Ready (its `/readyz` answers).
    pub ready: bool,
    /// Being deleted.
    pub terminating: bool,
}

/// One broker as the cluster sees it (admin API `ClusterStatus`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BrokerState {
    /// Broker id.
    pub id: i32,
    /// Registered and within its session.
    pub alive: bool,
    /// Drained: takes nothing new.
    pub draining: bool,
    /// Partitions it owns.
    pub partitions: u32,
    /// Coordinator shards it owns.
    pub shards: u32,
    /// Changes each time the broker process starts.
    pub incarnation: u64,
}

/// The brokers' view.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct View {
    /// Every registered broker.
    pub brokers: Vec<BrokerState>,
    /// Partitions with no live owner.
    pub unassigned: u32,
    /// The controller's id.
    pub controller: i32,
    /// Partitions and shards a rebalance would move now, as the brokers compute it (by
    /// measured traffic, else by count); `None` from brokers that do not say.
    pub rebalance_moves: Option<u32>,
}

/// Everything a decision looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// `spec.brokers`.
    pub desired: i32,
    /// The StatefulSet's replicas; `None` when it does not exist yet.
    pub replicas: Option<i32>,
    /// The StatefulSet's update revision.
    pub update_revision: Option<String>,
    /// Its pods.
    pub pods: Vec<PodState>,
    /// The admin API's answer; `None` when no broker answered.
    pub view: Option<View>,
    /// The broker restarted last and its incarnation then (kept in status): the roll
    /// goes on only once that broker is back as a new incarnation.
    pub restarting: Option<(i32, u64)>,
    /// Rebalance whenever a rebalance would move something (uneven traffic or counts).
    pub auto_rebalance: bool,
}

/// One action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Apply the StatefulSet with this many replicas.
    Replicas(i32),
    /// Drain this broker (move everything off it).
    Drain(i32),
    /// Let this broker take partitions again.
    Undrain(i32),
    /// Spread partitions and shards evenly.
    Rebalance,
    /// Delete this pod so that it comes back on the new revision.
    Restart(i32),
}

/// Where the cluster stands (the Ready condition's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The StatefulSet is being created.
    Creating,
    /// Pods starting or brokers registering.
    Starting,
    /// New brokers are being added.
    ScalingUp,
    /// Leaving brokers are being drained; their pods stay until they own nothing.
    Draining,
    /// Drained brokers' pods are going.
    ScalingDown,
    /// Brokers are restarted one at a time onto a new revision.
    Rolling,
    /// Partitions are being spread over the brokers.
    Balancing,
    /// No broker's admin API answered: nothing that needs it is done.
    AdminUnreachable,
    /// Every broker runs the current revision, ready and balanced.
    Ready,
}

impl Phase {
    /// The condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            Phase::Creating => "Creating",
            Phase::Starting => "Starting",
            Phase::ScalingUp => "ScalingUp",
            Phase::Draining => "Draining",
            Phase::ScalingDown => "ScalingDown",
            Phase::Rolling => "Rolling",
            Phase::Balancing => "Balancing",
            Phase::AdminUnreachable => "AdminUnreachable",
            Phase::Ready => "Ready",
        }
    }
}

/// The decision: steps to take now, in order, and the phase they leave the cluster in.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Actions.
    pub steps: Vec<Step>,
    /// Where the cluster stands.
    pub phase: Phase,
    /// For people: what is being waited for.
    pub message: String,
    /// Brokers being drained.
    pub draining: Vec<i32>,
    /// The broker being restarted and its incarnation before (to keep in status).
    pub restarting: Option<(i32, u64)>,
}

fn plan(steps: Vec<Step>, phase: Phase, message: impl Into<String>) -> Plan {
    Plan {
        steps,
        phase,
        message: message.into(),
        draining: Vec::new(),
        restarting: None,
    }
}

/// Whether one broker owns more than one partition (or shard) more than another.
fn unbalanced(brokers: &[&BrokerState]) -> bool {
    let spread = |f: fn(&BrokerState) -> u32| {
        let max = brokers.iter().map(|b| f(b)).max().unwrap_or(0);
        let min = brokers.iter().map(|b| f(b)).min().unwrap_or(0);
        max > min + 1
    };
    spread(|b| b.partitions) || spread(|b| b.shards)
}

/// Decides.
pub fn decide(o: &Observed) -> Plan {
    let desired = o.desired.max(0);
    let Some(current) = o.replicas else {
        return plan(
            vec![Step::Replicas(desired)],
            Phase::Creating,
            format!("creating {desired} brokers"),
        );
    };
    if desired > current {
        // Ids that come back after an earlier scale-down are still drained: undrain them
        // once registered (below, on a later pass) — and now, if the view already has them.
        let mut steps = vec![Step::Replicas(desired)];
        if let Some(v) = &o.view {
            steps.extend(
                v.brokers
                    .iter()
                    .filter(|b| b.draining && b.id < desired)
                    .map(|b| Step::Undrain(b.id)),
            );
        }
        return plan(
            steps,
            Phase::ScalingUp,
            format!("adding brokers {current}..{}", desired - 1),
        );
    }
    let Some(view) = &o.view else {
        let message = if desired < current {
            "no broker's admin API answers: brokers are kept until they can be drained"
        } else {
            "no broker's admin API answers"
        };
        return plan(Vec::new(), Phase::AdminUnreachable, message);
    };
    if desired < current {
        return scale_down(desired, current, view);
    }
    let mut steps: Vec<Step> = view
        .brokers
        .iter()
        .filter(|b| b.draining && b.id < desired)
        .map(|b| Step::Undrain(b.id))
        .collect();
    let ready = o
        .pods
        .iter()
        .filter(|p| p.ready && !p.terminating && p.ordinal < desired)
        .count() as i32;
    let serving: Vec<&BrokerState> = view
        .brokers
        .iter()
        .filter(|b| b.alive && b.id < desired)
        .collect();
    // A restarted broker must be back as a new process: its pod being ready is not enough.
    if let Some((id, incarnation)) = o.restarting {
        let back = view
            .brokers
            .iter()
            .any(|b| b.id == id && b.alive && b.incarnation != incarnation);
        if !back && id < desired && o.pods.iter().any(|p| p.ordinal == id) {
            // An operator that stopped between recording the restart and deleting the pod
            // left the old pod in place: delete it now.
            let old = o.pods.iter().any(|p| {
                p.ordinal == id
                    && !p.terminating
                    && p.revision.is_some()
                    && p.revision != o.update_revision
            });
            if old {
                steps.push(Step::Restart(id));
            }
            return Plan {
                steps,
                restarting: o.restarting,
                ..plan(
                    Vec::new(),
                    Phase::Rolling,
                    format!("waiting for broker {id} to come back after its restart"),
                )
            };
        }
    }
    if ready < desired || (serving.len() as i32) < desired {
        return Plan {
            steps,
            ..plan(
                Vec::new(),
                Phase::Starting,
                format!(
                    "{ready} of {desired} pods ready, {} of {desired} brokers registered",
                    serving.len()
                ),
            )
        };
    }
    if !steps.is_empty() {
        return Plan {
            steps,
            ..plan(Vec::new(), Phase::Balancing, "undraining brokers")
        };
    }
    // The brokers' own dry run decides when they give one: it weighs measured traffic,
    // and a plan it cannot improve moves nothing, so no rebalance is repeated in vain.
    let uneven = match view.rebalance_moves {
        Some(moves) => moves > 0,
        None => unbalanced(&serving),
    };
    if o.auto_rebalance && uneven {
        steps.push(Step::Rebalance);
        return Plan {
            steps,
            ..plan(Vec::new(), Phase::Balancing, "spreading partitions evenly")
        };
    }
    if view.unassigned > 0 {
        return plan(
            steps,
            Phase::Balancing,
            format!("{} partitions have no owner yet", view.unassigned),
        );
    }
    // Roll: every pod not on the update revision, one at a time, the controller last.
    let mut outdated: Vec<&PodState> = o
        .pods
        .iter()
        .filter(|p| p.revision.is_some() && p.revision != o.update_revision)
        .collect();
    outdated.sort_by_key(|p| (p.ordinal == view.controller, p.ordinal));
    if let Some(p) = outdated.first() {
        steps.push(Step::Restart(p.ordinal));
        let incarnation = view
            .brokers
            .iter()
            .find(|b| b.id == p.ordinal)
            .map_or(0, |b| b.incarnation);
        return Plan {
            restarting: Some((p.ordinal, incarnation)),
            ..plan(
                steps,
                Phase::Rolling,
                format!(
                    "restarting broker {} ({} left on the old revision)",
                    p.ordinal,
                    outdated.len()
                ),
            )
        };
    }
    plan(steps, Phase::Ready, format!("{desired} brokers ready"))
}

fn scale_down(desired: i32, current: i32, view: &View) -> Plan {
    let leaving: Vec<i32> = (desired..current).collect();
    let mut steps = Vec::new();
    let mut remaining = 0u32;
    for id in &leaving {
        if let Some(b) = view.brokers.iter().find(|b| b.id == *id) {
            if !b.draining {
                steps.push(Step::Drain(*id));
            }
            remaining += b.partitions + b.shards;
        }
    }
    let drained = steps.is_empty() && remaining == 0;
    if drained {
        steps.push(Step::Replicas(desired));
    }
    Plan {
        steps,
        phase: if drained {
            Phase::ScalingDown
        } else {
            Phase::Draining
        },
        message: if drained {
            format!("brokers {leaving:?} own nothing: removing their pods")
        } else {
            format!("draining brokers {leaving:?}: {remaining} partitions and shards left")
        },
        draining: leaving,
        restarting: None,
    }
}
