//! Kafka's ACL model and its decision, with Kafka's numeric codes: a binding allows or
//! denies one principal, from one host, one operation on a resource pattern (a literal name,
//! `*`, or a prefix). Deny wins; ALL covers every operation; READ, WRITE, DELETE and ALTER
//! imply DESCRIBE, and ALTER_CONFIGS implies DESCRIBE_CONFIGS; super users may do anything;
//! with no binding at all for a resource, `allow.everyone.if.no.acl.found` decides.

/// A resource type (Kafka's codes; 1 is ANY in filters).
pub mod resource {
    /// Any (filters only).
    pub const ANY: i8 = 1;
    /// A topic.
    pub const TOPIC: i8 = 2;
    /// A consumer group.
    pub const GROUP: i8 = 3;
    /// The cluster (its one name is `kafka-cluster`).
    pub const CLUSTER: i8 = 4;
    /// A transactional id.
    pub const TRANSACTIONAL_ID: i8 = 5;
    /// A delegation token.
    pub const DELEGATION_TOKEN: i8 = 6;
    /// A user.
    pub const USER: i8 = 7;
    /// The name of the cluster resource.
    pub const CLUSTER_NAME: &str = "kafka-cluster";
}

/// A pattern type (3 literal, 4 prefixed; 1 ANY and 2 MATCH in filters).
pub mod pattern {
    /// Any pattern (filters).
    pub const ANY: i8 = 1;
    /// Every binding that applies to the filter's name (filters).
    pub const MATCH: i8 = 2;
    /// The name exactly (or `*`: every name).
    pub const LITERAL: i8 = 3;
    /// Every name starting with it.
    pub const PREFIXED: i8 = 4;
}

/// An operation (Kafka's codes).
pub mod op {
    /// Any (filters only).
    pub const ANY: i8 = 1;
    /// Every operation.
    pub const ALL: i8 = 2;
    /// Read.
    pub const READ: i8 = 3;
    /// Write.
    pub const WRITE: i8 = 4;
    /// Create.
    pub const CREATE: i8 = 5;
    /// Delete.
    pub const DELETE: i8 = 6;
    /// Alter.
    pub const ALTER: i8 = 7;
    /// Describe.
    pub const DESCRIBE: i8 = 8;
    /// Cluster action (brokers among themselves).
    pub const CLUSTER_ACTION: i8 = 9;
    /// Describe configs.
    pub const DESCRIBE_CONFIGS: i8 = 10;
    /// Alter configs.
    pub const ALTER_CONFIGS: i8 = 11;
    /// Idempotent write.
    pub const IDEMPOTENT_WRITE: i8 = 12;
    /// Create delegation tokens.
    pub const CREATE_TOKENS: i8 = 13;
    /// Describe delegation tokens.
    pub const DESCRIBE_TOKENS: i8 = 14;
}

/// The operations Kafka reports in an `authorized_operations` bitfield for a resource type
/// (AclEntry.supportedOperations).
pub fn supported_operations(resource_type: i8) -> &'static [i8] {
    use op::*;
    match resource_type {
        resource::TOPIC => &[
            READ,
            WRITE,
            CREATE,
            DESCRIBE,
            DELETE,
            ALTER,
            DESCRIBE_CONFIGS,
            ALTER_CONFIGS,
        ],
        resource::GROUP => &[READ, DESCRIBE, DELETE],
        resource::CLUSTER => &[
            CREATE,
            CLUSTER_ACTION,
            DESCRIBE_CONFIGS,
            ALTER_CONFIGS,
            IDEMPOTENT_WRITE,
            ALTER,
            DESCRIBE,
        ],
        resource::TRANSACTIONAL_ID => &[DESCRIBE, WRITE],
        resource::DELEGATION_TOKEN => &[DESCRIBE],
        resource::USER => &[CREATE_TOKENS, DESCRIBE_TOKENS],
        _ => &[],
    }
}

/// Deny or allow (1 is ANY in filters).
pub mod permission {
    /// Any (filters only).
    pub const ANY: i8 = 1;
    /// Deny.
    pub const DENY: i8 = 2;
    /// Allow.
    pub const ALLOW: i8 = 3;
}

/// One ACL binding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Binding {
    /// Resource type.
    pub resource_type: i8,
    /// Resource name (or prefix; `*` for every name of a literal binding).
    pub name: String,
    /// LITERAL or PREFIXED.
    pub pattern_type: i8,
    /// `User:alice`, or `User:*`.
    pub principal: String,
    /// A client address, or `*`.
    pub host: String,
    /// The operation.
    pub operation: i8,
    /// ALLOW or DENY.
    pub permission: i8,
}

/// A filter over bindings (DescribeAcls, DeleteAcls); `None` fields match anything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Resource type, or ANY.
    pub resource_type: i8,
    /// Name (exact, or with MATCH a name the binding applies to).
    pub name: Option<String>,
    /// Pattern type, ANY or MATCH.
    pub pattern_type: i8,
    /// Principal.
    pub principal: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// Operation, or ANY.
    pub operation: i8,
    /// Permission, or ANY.
    pub permission: i8,
}

impl Binding {
    /// Why a binding cannot be created, as Kafka says it.
    pub fn invalid(&self) -> Option<&'static str> {
        if !(resource::TOPIC..=resource::USER).contains(&self.resource_type) {
            return Some("Invalid resource type");
        }
        if !matches!(self.pattern_type, pattern::LITERAL | pattern::PREFIXED) {
            return Some("Invalid pattern type");
        }
        if !(op::ALL..=op::DESCRIBE_TOKENS).contains(&self.operation) {
            return Some("Invalid operation");
        }
        if !matches!(self.permission, permission::ALLOW | permission::DENY) {
            return Some("Invalid permission type");
        }
        if self.name.is_empty() {
            return Some("Resource name must not be empty");
        }
        if self.resource_type == resource::CLUSTER && self.name != resource::CLUSTER_NAME {
            return Some("The only valid name for the CLUSTER resource is kafka-cluster");
        }
        if self.pattern_type == pattern::PREFIXED && self.name == "*" {
            return Some("A prefixed pattern must not be '*'");
        }
        if !self.principal.contains(':') {
            return Some("Principal must be of the form Type:Name");
        }
        None
    }

    /// A stable id of the binding (the same binding created twice is one binding).
    pub fn id(&self) -> String {
        let canonical = format!(
            "{}\0{}\0{}\0{}\0{}\0{}\0{}",
            self.resource_type,
            self.name,
            self.pattern_type,
            self.principal,
            self.host,
            self.operation,
            self.permission
        );
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes())
            .as_ref()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether the binding's pattern covers the resource `name`.
    fn covers(&self, name: &str) -> bool {
        match self.pattern_type {
            pattern::LITERAL => self.name == "*" || self.name == name,
            pattern::PREFIXED => name.starts_with(&self.name),
            _ => false,
        }
    }
}

impl Filter {
    /// Whether `b` matches the filter.
    pub fn matches(&self, b: &Binding) -> bool {
        let name_ok = match (&self.name, self.pattern_type) {
            (None, _) => true,
            (Some(n), pattern::MATCH) => b.covers(n),
            (Some(n), _) => &b.name == n,
        };
        let pattern_ok = matches!(self.pattern_type, pattern::ANY | pattern::MATCH)
            || self.pattern_type == b.pattern_type;
        (self.resource_type == resource::ANY || self.resource_type == b.resource_type)
            && name_ok
            && pattern_ok
            && self.principal.as_ref().is_none_or(|p| p == &b.principal)
            && self.host.as_ref().is_none_or(|h| h == &b.host)
            && (self.operation == op::ANY || self.operation == b.operation)
            && (self.permission == permission::ANY || self.permission == b.permission)
    }
}

/// Who asks, and from where.
pub struct Requester<'a> {
    /// `User:alice`.
    pub principal: &'a str,
    /// The client's address.
    pub host: &'a str,
}

/// The decision's settings.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// `super.users`: principals that may do anything.
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found`.
    pub allow_if_no_acl: bool,
}

impl Policy {
    /// Parses `super.users` (`User:a;User:b`).
    pub fn new(super_users: &str, allow_if_no_acl: bool) -> Self {
        Policy {
            super_users: super_users
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            allow_if_no_acl,
        }
    }

    /// Whether `who` may do `operation` on the resource (`resource_type`, `name`), given
    /// every binding.
    pub fn authorize(
        &self,
        bindings: &[Binding],
        who: &Requester<'_>,
        operation: i8,
        resource_type: i8,
        name: &str,
    ) -> bool {
        if self.super_users.iter().any(|s| s == who.principal) {
            return true;
        }
        let applying: Vec<&Binding> = bindings
            .iter()
            .filter(|b| b.resource_type == resource_type && b.covers(name))
            .collect();
        if applying.is_empty() {
            return self.allow_if_no_acl;
        }
        let mine = |b: &&&Binding| {
            (b.principal == who.principal || b.principal == "User:*")
                && (b.host == "*" || b.host == who.host)
        };
        let denied = applying.iter().filter(mine).any(|b| {
            b.permission == permission::DENY && (b.operation == op::ALL || b.operation == operation)
        });
        if denied {
            return false;
        }
        applying.iter().filter(mine).any(|b| {
            b.permission == permission::ALLOW
                && (b.operation == op::ALL || implies(b.operation, operation))
        })
    }

    /// Whether `who` may do `operation` on at least one resource of `resource_type` (an
    /// idempotent producer needs WRITE on some topic, KIP-679).
    pub fn authorize_any(
        &self,
        bindings: &[Binding],
        who: &Requester<'_>,
        operation: i8,
        resource_type: i8,
    ) -> bool {
        // As Kafka: a resource no ACL names decides first (allow.everyone.if.no.acl.found).
        if self.authorize(bindings, who, operation, resource_type, "hardcode") {
            return true;
        }
        bindings.iter().any(|b| {
            b.resource_type == resource_type
                && b.permission == permission::ALLOW
                && (b.principal == who.principal || b.principal == "User:*")
                && (b.host == "*" || b.host == who.host)
                && (b.operation == op::ALL || implies(b.operation, operation))
                && !self.denied_everywhere(bindings, who, operation, resource_type, b)
        })
    }

    /// Whether a DENY covers every name the allowing binding `allow` covers.
    fn denied_everywhere(
        &self,
        bindings: &[Binding],
        who: &Requester<'_>,
        operation: i8,
        resource_type: i8,
        allow: &Binding,
    ) -> bool {
        bindings.iter().any(|d| {
            d.resource_type == resource_type
                && d.permission == permission::DENY
                && (d.principal == who.principal || d.principal == "User:*")
                && (d.host == "*" || d.host == who.host)
                && (d.operation == op::ALL || d.operation == operation)
                && ((d.pattern_type == pattern::LITERAL && d.name == "*")
                    || (allow.pattern_type == pattern::LITERAL && d.covers(&allow.name))
                    || (allow.pattern_type == pattern::PREFIXED
                        && d.pattern_type == pattern::PREFIXED
                        && allow.name.starts_with(&d.name)))
        })
    }
}

/// Whether an allowed `granted` operation allows `wanted` (Kafka's implied operations).
fn implies(granted: i8, wanted: i8) -> bool {
    granted == wanted
        || (wanted == op::DESCRIBE
            && matches!(granted, op::READ | op::WRITE | op::DELETE | op::ALTER))
        || (wanted == op::DESCRIBE_CONFIGS && granted == op::ALTER_CONFIGS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(rt: i8, name: &str, pt: i8, principal: &str, operation: i8, perm: i8) -> Binding {
        Binding {
            resource_type: rt,
            name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: "*".into(),
            operation,
            permission: perm,
        }
    }

    const ALICE: Requester = Requester {
        principal: "User:alice",
        host: "10.0.0.1",
    };

    #[test]
    fn literal_prefixed_and_wildcard_bindings_allow_what_they_cover() {
        let p = Policy::default();
        let acls = vec![
            bind(
                resource::TOPIC,
                "orders",
                pattern::LITERAL,
                "User:alice",
                op::WRITE,
                permission::ALLOW,
            ),
            bind(
                resource::TOPIC,
                "logs-",
                pattern::PREFIXED,
                "User:alice",
                op::READ,
                permission::ALLOW,
            ),
            bind(
                resource::GROUP,
                "*",
                pattern::LITERAL,
                "User:*",
                op::READ,
                permission::ALLOW,
            ),
        ];
        assert!(p.authorize(&acls, &ALICE, op::WRITE, resource::TOPIC, "orders"));
        assert!(!p.authorize(&acls, &ALICE, op::READ, resource::TOPIC, "orders"));
        assert!(
            p.authorize(&acls, &ALICE, op::DESCRIBE, resource::TOPIC, "orders"),
            "WRITE implies DESCRIBE"
        );
        assert!(p.authorize(&acls, &ALICE, op::READ, resource::TOPIC, "logs-app"));
        assert!(!p.authorize(&acls, &ALICE, op::READ, resource::TOPIC, "log"));
        assert!(p.authorize(&acls, &ALICE, op::READ, resource::GROUP, "any-group"));
        assert!(!p.authorize(&acls, &ALICE, op::DELETE, resource::GROUP, "any-group"));
        assert!(
            !p.authorize(&acls, &ALICE, op::READ, resource::TOPIC, "nothing-about-it"),
            "no ACL: denied by default"
        );
        let open = Policy::new("", true);
        assert!(open.authorize(&acls, &ALICE, op::READ, resource::TOPIC, "nothing-about-it"));
        assert!(
            !open.authorize(&acls, &ALICE, op::READ, resource::TOPIC, "orders"),
            "an ACL exists for it"
        );
    }

    #[test]
    fn deny_wins_hosts_count_and_super_users_pass() {
        let mut acls = vec![
            bind(
                resource::TOPIC,
                "*",
                pattern::LITERAL,
                "User:alice",
                op::ALL,
                permission::ALLOW,
            ),
            bind(
                resource::TOPIC,
                "secret",
                pattern::LITERAL,
                "User:alice",
                op::READ,
                permission::DENY,
            ),
        ];
        let p = Policy::new("User:admin; User:ops", false);
        assert!(p.authorize(&acls, &ALICE, op::WRITE, resource::TOPIC, "secret"));
        assert!(!p.authorize(&acls, &ALICE, op::READ, resource::TOPIC, "secret"));
        let admin = Requester {
            principal: "User:admin",
            host: "1.2.3.4",
        };
        assert!(p.authorize(&acls, &admin, op::READ, resource::TOPIC, "secret"));
        acls[0].host = "10.0.0.2".into();
        assert!(
            !p.authorize(&acls, &ALICE, op::WRITE, resource::TOPIC, "t"),
            "another host's ACL"
        );
    }

    #[test]
    fn write_on_some_topic_counts_for_idempotence_unless_denied_everywhere() {
        let p = Policy::default();
        let mut acls = vec![bind(
            resource::TOPIC,
            "t-",
            pattern::PREFIXED,
            "User:alice",
            op::WRITE,
            permission::ALLOW,
        )];
        assert!(p.authorize_any(&acls, &ALICE, op::WRITE, resource::TOPIC));
        acls.push(bind(
            resource::TOPIC,
            "*",
            pattern::LITERAL,
            "User:*",
            op::WRITE,
            permission::DENY,
        ));
        assert!(!p.authorize_any(&acls, &ALICE, op::WRITE, resource::TOPIC));
    }

    #[test]
    fn filters_select_bindings_as_kafka_acls_lists_them() {
        let b = bind(
            resource::TOPIC,
            "logs-",
            pattern::PREFIXED,
            "User:alice",
            op::READ,
            permission::ALLOW,
        );
        let all = Filter {
            resource_type: resource::ANY,
            pattern_type: pattern::ANY,
            operation: op::ANY,
            permission: permission::ANY,
            ..Default::default()
        };
        assert!(all.matches(&b));
        let exact = Filter {
            name: Some("logs-".into()),
            ..all.clone()
        };
        assert!(exact.matches(&b));
        let applies = Filter {
            name: Some("logs-app".into()),
            pattern_type: pattern::MATCH,
            ..all.clone()
        };
        assert!(applies.matches(&b));
        let literal_only = Filter {
            pattern_type: pattern::LITERAL,
            ..all.clone()
        };
        assert!(!literal_only.matches(&b));
        let bob = Filter {
            principal: Some("User:bob".into()),
            ..all
        };
        assert!(!bob.matches(&b));
    }

    #[test]
    fn bindings_kafka_refuses_are_refused() {
        let ok = bind(
            resource::CLUSTER,
            "kafka-cluster",
            pattern::LITERAL,
            "User:a",
            op::ALTER,
            permission::ALLOW,
        );
        assert_eq!(ok.invalid(), None);
        let mut b = ok.clone();
        b.name = "other".into();
        assert!(b.invalid().is_some());
        let mut b = ok.clone();
        b.principal = "alice".into();
        assert!(b.invalid().is_some());
        let mut b = ok;
        b.operation = op::ANY;
        assert!(b.invalid().is_some());
    }
}
