//! CreateAcls, DescribeAcls and DeleteAcls (`kafka-acls`): ALTER on the cluster to change
//! ACLs, DESCRIBE to list them; SECURITY_DISABLED when no authorizer is configured, as
//! Kafka answers.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError as Code;
use stratus_auth::acl::{op, Binding, Filter};

use super::access::Access;
use crate::error::Error;

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// Why a request on ACLs is refused (no authorizer, or no `operation` on the cluster).
fn refusal(a: &Access<'_>, operation: i8) -> Option<(Code, &'static str)> {
    if !a.authz.enabled() {
        Some((Code::SecurityDisabled, "No Authorizer is configured."))
    } else if !a.cluster(operation) {
        Some((
            Code::ClusterAuthorizationFailed,
            "Cluster authorization failed.",
        ))
    } else {
        None
    }
}

/// CreateAcls.
pub async fn create(a: Access<'_>, req: CreateAclsRequest) -> CreateAclsResponse {
    let fail = |code: Code, msg: &str| {
        let r = AclCreationResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(text(msg)));
        CreateAclsResponse::default().with_results(vec![r; req.creations.len()])
    };
    if let Some((code, msg)) = refusal(&a, op::ALTER) {
        return fail(code, msg);
    }
    let mut results = Vec::new();
    let mut valid = Vec::new();
    for c in &req.creations {
        let b = Binding {
            resource_type: c.resource_type,
            name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission: c.permission_type,
        };
        match b.invalid() {
            Some(why) => results.push(
                AclCreationResult::default()
                    .with_error_code(Code::InvalidRequest.code())
                    .with_error_message(Some(text(why))),
            ),
            None => {
                valid.push(b);
                results.push(AclCreationResult::default());
            }
        }
    }
    if let Err(e) = a.authz.create(&valid).await {
        let e = Error::from(e);
        for r in results.iter_mut().filter(|r| r.error_code == 0) {
            r.error_code = e.code();
            r.error_message = Some(text(e.to_string()));
        }
    }
    CreateAclsResponse::default().with_results(results)
}

fn filter(
    resource_type: i8,
    name: &Option<StrBytes>,
    pattern_type: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> Filter {
    Filter {
        resource_type,
        name: name.as_ref().map(|s| s.to_string()),
        pattern_type,
        principal: principal.as_ref().map(|s| s.to_string()),
        host: host.as_ref().map(|s| s.to_string()),
        operation,
        permission,
    }
}

/// DescribeAcls.
pub fn describe(a: Access<'_>, req: DescribeAclsRequest) -> DescribeAclsResponse {
    if let Some((code, msg)) = refusal(&a, op::DESCRIBE) {
        return DescribeAclsResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(text(msg)));
    }
    let f = filter(
        req.resource_type_filter,
        &req.resource_name_filter,
        req.pattern_type_filter,
        &req.principal_filter,
        &req.host_filter,
        req.operation,
        req.permission_type,
    );
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for b in a.authz.bindings().iter().filter(|b| f.matches(b)) {
        by_resource
            .entry((b.resource_type, b.name.clone(), b.pattern_type))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(text(b.principal.clone()))
                    .with_host(text(b.host.clone()))
                    .with_operation(b.operation)
                    .with_permission_type(b.permission),
            );
    }
    DescribeAclsResponse::default().with_resources(
        by_resource
            .into_iter()
            .map(|((rt, name, pt), acls)| {
                DescribeAclsResource::default()
                    .with_resource_type(rt)
                    .with_resource_name(text(name))
                    .with_pattern_type(pt)
                    .with_acls(acls)
            })
            .collect(),
    )
}

/// DeleteAcls.
pub async fn delete(a: Access<'_>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    let fail = |code: Code, msg: &str| {
        let r = DeleteAclsFilterResult::default()
            .with_error_code(code.code())
            .with_error_message(Some(text(msg)));
        DeleteAclsResponse::default().with_filter_results(vec![r; req.filters.len()])
    };
    if let Some((code, msg)) = refusal(&a, op::ALTER) {
        return fail(code, msg);
    }
    let filters: Vec<Filter> = req
        .filters
        .iter()
        .map(|f| {
            filter(
                f.resource_type_filter,
                &f.resource_name_filter,
                f.pattern_type_filter,
                &f.principal_filter,
                &f.host_filter,
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    match a.authz.delete(&filters).await {
        Err(e) => {
            let e = Error::from(e);
            fail(
                Code::try_from_code(e.code()).unwrap_or(Code::UnknownServerError),
                &e.to_string(),
            )
        }
        Ok(matched) => DeleteAclsResponse::default().with_filter_results(
            matched
                .into_iter()
                .map(|bs| {
                    DeleteAclsFilterResult::default().with_matching_acls(
                        bs.into_iter()
                            .map(|b| {
                                DeleteAclsMatchingAcl::default()
                                    .with_resource_type(b.resource_type)
                                    .with_resource_name(text(b.name))
                                    .with_pattern_type(b.pattern_type)
                                    .with_principal(text(b.principal))
                                    .with_host(text(b.host))
                                    .with_operation(b.operation)
                                    .with_permission_type(b.permission)
                            })
                            .collect(),
                    )
                })
                .collect(),
        ),
    }
}
