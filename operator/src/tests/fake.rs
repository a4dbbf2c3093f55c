//! Unit-test doubles: an in-memory API server behind a `tower-test` mock (GET, LIST,
//! server-side apply, merge and JSON patches, DELETE, Event POSTs), and an admin API that
//! records calls. Reconciles run against them without a cluster.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{json, Value};

use crate::admin::{AclSpec, Admin, AdminError, Scram, Target, TopicState, UserState};
use crate::cluster::plan::View;
use crate::context::{Context, Settings};
use crate::metrics::Metrics;

/// Objects by path (`/api/v1/namespaces/kafka/pods/x`), and every write, in order.
#[derive(Default)]
pub struct FakeApi {
    /// Stored objects.
    pub objects: Mutex<BTreeMap<String, Value>>,
    /// `METHOD path` of every write.
    pub writes: Mutex<Vec<String>>,
    version: Mutex<u64>,
}

fn status(code: StatusCode, reason: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "reason": reason, "code": code.as_u16(), "message": reason});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap_or_default()))
        .unwrap()
}

fn ok(v: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(v).unwrap_or_default()))
        .unwrap()
}

fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    a.remove(k);
                } else {
                    merge(a.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (a, b) => *a = b.clone(),
    }
}

fn json_patch(obj: &mut Value, ops: &Value) {
    for op in ops.as_array().into_iter().flatten() {
        let path = op["path"].as_str().unwrap_or_default();
        let (parent, last) = path.rsplit_once('/').unwrap_or(("", path));
        match op["op"].as_str() {
            Some("add") => match obj.pointer_mut(parent) {
                Some(Value::Array(a)) if last == "-" => a.push(op["value"].clone()),
                Some(Value::Object(m)) => {
                    m.insert(last.to_string(), op["value"].clone());
                }
                _ => {}
            },
            Some("remove") => match obj.pointer_mut(parent) {
                Some(Value::Array(a)) => {
                    if let Ok(i) = last.parse::<usize>() {
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                }
                Some(Value::Object(m)) => {
                    m.remove(last);
                }
                _ => {}
            },
            _ => {}
        }
    }
}

impl FakeApi {
    /// Stores `obj` at `path` (as a test's starting state).
    pub fn put(&self, path: &str, obj: Value) {
        self.objects.lock().unwrap().insert(path.to_string(), obj);
    }

    /// The object at `path`.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    /// Writes whose `METHOD path` contains `what`.
    pub fn wrote(&self, what: &str) -> Vec<String> {
        self.writes
            .lock()
            .unwrap()
            .iter()
            .filter(|w| w.contains(what))
            .cloned()
            .collect()
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let kind = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return status(StatusCode::BAD_REQUEST, "BadRequest"),
        };
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if method != Method::GET {
            self.writes.lock().unwrap().push(format!("{method} {path}"));
        }
        let mut objects = self.objects.lock().unwrap();
        match method {
            Method::GET if path.ends_with("/pods") || path.ends_with("/events") => {
                let items: Vec<Value> = objects
                    .iter()
                    .filter(|(k, _)| k.starts_with(&format!("{path}/")) && !k.ends_with("/status"))
                    .map(|(_, v)| v.clone())
                    .collect();
                ok(
                    &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
                )
            }
            Method::GET => match objects.get(&path) {
                Some(v) => ok(v),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            Method::PATCH => {
                let (target, status_only) = match path.strip_suffix("/status") {
                    Some(p) => (p.to_string(), true),
                    None => (path.clone(), false),
                };
                let mut version = self.version.lock().unwrap();
                *version += 1;
                let obj = objects.entry(target.clone()).or_insert_with(
                    || json!({"metadata": {"uid": format!("uid-{}", *version), "generation": 1}}),
                );
                if status_only {
                    merge(obj, &json!({"status": body["status"].clone()}));
                } else if kind.contains("json-patch") {
                    json_patch(obj, &body);
                } else {
                    let mut b = body.clone();
                    if let Some(m) = b.as_object_mut() {
                        m.remove("status");
                    }
                    merge(obj, &b);
                }
                obj["metadata"]["resourceVersion"] = json!(version.to_string());
                ok(obj)
            }
            Method::DELETE => match objects.remove(&path) {
                Some(v) => ok(&v),
                None => status(StatusCode::NOT_FOUND, "NotFound"),
            },
            Method::POST => ok(&body),
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
        }
    }
}

/// A client of `api`, served by a background task.
pub fn client(api: Arc<FakeApi>) -> kube::Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            send.send_response(api.handle(req).await);
        }
    });
    kube::Client::new(service, "default")
}

/// An admin API that records calls and answers from `view`.
#[derive(Default)]
pub struct FakeAdmin {
    /// What ClusterStatus answers; `None`: the call fails.
    pub view: Mutex<Option<View>>,
    /// Calls, as `name(args)`.
    pub calls: Mutex<Vec<String>>,
    /// Make DrainBroker fail.
    pub fail_drain: Mutex<bool>,
}

impl FakeAdmin {
    fn call(&self, c: String) {
        self.calls.lock().unwrap().push(c);
    }

    /// Calls recorded so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

fn unavailable(what: &'static str) -> AdminError {
    AdminError::Call(what, tonic::Status::unavailable("down"))
}

#[async_trait::async_trait]
impl Admin for FakeAdmin {
    async fn status(&self) -> Result<View, AdminError> {
        self.view
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| unavailable("ClusterStatus"))
    }
    async fn drain(&self, id: i32) -> Result<(), AdminError> {
        self.call(format!("drain({id})"));
        if *self.fail_drain.lock().unwrap() {
            return Err(unavailable("DrainBroker"));
        }
        Ok(())
    }
    async fn undrain(&self, id: i32) -> Result<(), AdminError> {
        self.call(format!("undrain({id})"));
        Ok(())
    }
    async fn rebalance(&self) -> Result<(u32, u32), AdminError> {
        self.call("rebalance()".into());
        Ok((1, 0))
    }
    async fn propose(&self) -> Result<(u32, u32, Vec<(i32, u32, u32)>), AdminError> {
        self.call("propose()".into());
        Ok((0, 0, vec![]))
    }
    async fn ensure_topic(
        &self,
        name: &str,
        partitions: i32,
        _rf: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<TopicState, AdminError> {
        self.call(format!("ensure_topic({name}, {partitions}, {configs:?})"));
        Ok(TopicState {
            id: "id-1".into(),
            partitions,
            created: true,
            changed_configs: vec![],
            added_partitions: 0,
        })
    }
    async fn delete_topic(&self, name: &str) -> Result<bool, AdminError> {
        self.call(format!("delete_topic({name})"));
        Ok(true)
    }
    async fn ensure_user(
        &self,
        name: &str,
        scram: Option<Scram>,
        acls: &[AclSpec],
    ) -> Result<UserState, AdminError> {
        let pw = scram.map(|s| format!("{}:{}", s.mechanism, s.password));
        self.call(format!("ensure_user({name}, {pw:?}, {} acls)", acls.len()));
        Ok(UserState {
            acls: acls.len() as u32,
            acls_added: acls.len() as u32,
            acls_removed: 0,
            scram_changed: vec![],
        })
    }
    async fn delete_user(&self, name: &str) -> Result<(), AdminError> {
        self.call(format!("delete_user({name})"));
        Ok(())
    }
}

/// A context over `api` whose admin clients are `admin`.
pub fn context(api: Arc<FakeApi>, admin: Arc<FakeAdmin>) -> Arc<Context> {
    let settings = Settings {
        image: "stratus:test".into(),
        resync: Duration::from_secs(60),
    };
    let mut ctx = Context::new(
        client(api),
        settings,
        Arc::new(Metrics::default()),
        "test".into(),
    );
    ctx.connect = Arc::new(move |_: &Target| Ok(admin.clone() as Arc<dyn Admin>));
    Arc::new(ctx)
}
