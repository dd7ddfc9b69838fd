//! `/Bulk` (RFC 7644 §3.7): many operations in one request, each run through the same
//! handlers as its single-request twin, with `bulkId:` references resolved across
//! operations (a group created with members that are users created in the same request).
//!
//! Operations are not one transaction (the RFC does not ask it): each is atomic and
//! durable on its own, and `failOnErrors` stops processing after that many failures.
//! Up to `PIPELINE` operations that do not wait on each other are in the writer's queue at
//! once, so they share its group commits.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use hyper::StatusCode;
use serde_json::{json, Value};

use super::handlers::{self, Done, WriteOp};
use super::response::{json_response, ApiError, HttpResponse};
use super::context::Ctx;
use super::route::{segments, ScimEndpoint};
use crate::scim::schema::ResourceKind;
use crate::scim::{IfMatch, ScimError};

pub const MAX_OPERATIONS: usize = 1000;
const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

struct BulkOp {
    method: String,
    path: String,
    bulk_id: Option<String>,
    version: Option<String>,
    data: Option<Value>,
}

fn field<'a>(obj: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

fn parse(body: &Value, max: usize) -> Result<(Vec<BulkOp>, Option<u64>), ApiError> {
    let obj = body.as_object().ok_or_else(|| ApiError::BadJson("a BulkRequest must be a JSON object".into()))?;
    let ops = field(obj, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::BadJson("a BulkRequest needs an 'Operations' array".into()))?;
    if ops.len() > max {
        return Err(ApiError::TooManyOperations(max));
    }
    let fail_on_errors = match field(obj, "failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|n| *n > 0).ok_or_else(|| ApiError::BadRequest("failOnErrors must be a positive integer".into()))?),
    };
    let text = |o: &serde_json::Map<String, Value>, k: &str| field(o, k).and_then(Value::as_str).map(str::to_string);
    let parsed = ops
        .iter()
        .map(|op| {
            let o = op.as_object().cloned().unwrap_or_default();
            BulkOp {
                method: text(&o, "method").unwrap_or_default().to_ascii_uppercase(),
                path: text(&o, "path").unwrap_or_default(),
                bulk_id: text(&o, "bulkId"),
                version: text(&o, "version"),
                data: field(&o, "data").cloned(),
            }
        })
        .collect();
    Ok((parsed, fail_on_errors))
}

enum Resolution {
    Ready,
    /// Refers to an operation not run yet.
    Waiting,
    Failed(ApiError),
}

/// What is known of every `bulkId` while the request runs. Each lookup is a hash probe,
/// so resolving a request costs O(operations + references).
struct BulkIds {
    /// bulkId → the id of the resource its (successful) operation made or named.
    done: HashMap<String, String>,
    /// bulkId → how many operations declaring it have not run yet.
    unfinished: HashMap<String, usize>,
    failed: HashSet<String>,
}

impl BulkIds {
    /// Whether `reference` names an operation other than `own` (the asking operation's
    /// bulkId) that has not run yet.
    fn pending(&self, reference: &str, own: Option<&str>) -> bool {
        let others = self.unfinished.get(reference).copied().unwrap_or(0).saturating_sub(usize::from(own == Some(reference)));
        others > 0
    }
}

/// Replaces `bulkId:X` strings (in `value` and in the path) with the ids they name.
fn substitute(value: &mut Value, ids: &BulkIds, own: Option<&str>) -> Resolution {
    match value {
        Value::String(s) => {
            let Some(reference) = s.strip_prefix("bulkId:") else { return Resolution::Ready };
            if let Some(id) = ids.done.get(reference) {
                *s = id.clone();
                Resolution::Ready
            } else if ids.pending(reference, own) {
                Resolution::Waiting
            } else if ids.failed.contains(reference) {
                Resolution::Failed(ApiError::Scim(ScimError::new(crate::scim::ScimErrorKind::InvalidValue, format!("bulkId {reference} names an operation that failed"))))
            } else {
                Resolution::Failed(ApiError::Scim(ScimError::invalid_value(format!("unknown bulkId {reference}"))))
            }
        }
        Value::Array(items) => fold(items.iter_mut(), ids, own),
        Value::Object(obj) => fold(obj.values_mut(), ids, own),
        _ => Resolution::Ready,
    }
}

fn fold<'a>(values: impl Iterator<Item = &'a mut Value>, ids: &BulkIds, own: Option<&str>) -> Resolution {
    let mut outcome = Resolution::Ready;
    for v in values {
        match substitute(v, ids, own) {
            Resolution::Ready => {}
            Resolution::Waiting => outcome = Resolution::Waiting,
            failed @ Resolution::Failed(_) => return failed,
        }
    }
    outcome
}

/// Every `bulkId:X` a value mentions, each once, in the order met.
fn references(value: &Value, out: &mut Vec<String>, seen: &mut HashSet<String>) {
    match value {
        Value::String(s) => {
            if let Some(reference) = s.strip_prefix("bulkId:") {
                if seen.insert(reference.to_string()) {
                    out.push(reference.to_string());
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| references(v, out, seen)),
        Value::Object(obj) => obj.values().for_each(|v| references(v, out, seen)),
        _ => {}
    }
}

/// The order to run operations in (Kahn's algorithm over bulkId references, ties in
/// request order, so a request without backward references runs as sent), and the
/// operations that can never run because their references form a cycle.
///
/// An operation waits for every other operation declaring a bulkId it references. A
/// bulkId is a node between its declarers and its referrers, so duplicate bulkIds cost
/// O(declarers + referrers), not their product. An operation whose body names a bulkId
/// no other operation declares fails without waiting (as a resolution of its body
/// would): it is ready at once.
struct Schedule {
    ready: BinaryHeap<Reverse<usize>>,
    /// Per operation: how many of its references still wait for declarers.
    waiting_on: Vec<usize>,
    /// Per bulkId: operations referencing it that do / do not declare it themselves.
    referrers: HashMap<String, (Vec<usize>, Vec<usize>)>,
}

impl Schedule {
    fn new(ops: &[BulkOp]) -> Schedule {
        let mut declarers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, op) in ops.iter().enumerate() {
            if let Some(b) = &op.bulk_id {
                declarers.entry(b.as_str()).or_default().push(i);
            }
        }
        let mut schedule = Schedule { ready: BinaryHeap::new(), waiting_on: vec![0; ops.len()], referrers: HashMap::new() };
        for (i, op) in ops.iter().enumerate() {
            let own = op.bulk_id.as_deref();
            let others = |reference: &str| declarers.get(reference).map_or(0, Vec::len).saturating_sub(usize::from(own == Some(reference)));
            let (mut in_data, mut seen) = (Vec::new(), HashSet::new());
            if let Some(data) = &op.data {
                references(data, &mut in_data, &mut seen);
            }
            let in_path = op.path.split('/').filter_map(|seg| seg.strip_prefix("bulkId:")).filter(|r| seen.insert(r.to_string())).map(str::to_string).collect::<Vec<_>>();
            if in_data.iter().any(|r| others(r) == 0) {
                schedule.ready.push(Reverse(i));
                continue;
            }
            for reference in in_data.into_iter().chain(in_path).filter(|r| others(r) > 0) {
                schedule.waiting_on[i] += 1;
                let entry = schedule.referrers.entry(reference.clone()).or_default();
                if own == Some(reference.as_str()) { entry.0.push(i) } else { entry.1.push(i) }
            }
            if schedule.waiting_on[i] == 0 {
                schedule.ready.push(Reverse(i));
            }
        }
        schedule
    }

    /// Whether the operation declaring `bulk_id`, once run, may release one that comes
    /// before `index` (referrers are listed in request order: the first is the lowest).
    fn may_release_before(&self, bulk_id: &str, index: usize) -> bool {
        self.referrers.get(bulk_id).is_some_and(|(declaring, others)| [declaring, others].iter().any(|v| v.first().is_some_and(|&i| i < index)))
    }

    /// An operation declaring `bulk_id` has run and `unfinished` of them remain: release
    /// the referrers that no longer wait for any of them.
    fn finished(&mut self, bulk_id: &str, unfinished: usize) {
        let Some((declaring, others)) = self.referrers.get_mut(bulk_id) else { return };
        // A referrer that declares the bulkId itself waits only for the others.
        let released = match unfinished {
            1 => std::mem::take(declaring),
            0 => std::mem::take(others),
            _ => return,
        };
        for i in released {
            self.waiting_on[i] -= 1;
            if self.waiting_on[i] == 0 {
                self.ready.push(Reverse(i));
            }
        }
    }
}

/// `/Users`, `/Users/{id}`, `/Groups`, `/Groups/{id}`, parsed by the router's own SCIM
/// endpoint parser. The segments are taken as written (Bulk ids were never
/// percent-decoded), and `Users/.search` is the id `.search`, as it always was.
fn target(path: &str) -> Option<(ResourceKind, Option<String>)> {
    match ScimEndpoint::parse(&segments(path)) {
        ScimEndpoint::Collection(kind) => Some((kind, None)),
        ScimEndpoint::CollectionSearch(kind) => Some((kind, Some(".search".to_string()))),
        ScimEndpoint::Resource(kind, id) => Some((kind, Some(id))),
        _ => None,
    }
}

/// How many operations may wait in the tenant's writer queue at once. They commit together
/// (one fsync for many, each in its own savepoint, so each is still atomic on its own),
/// in the order they were started; a 1,000-create request no longer costs 1,000 fsyncs.
const PIPELINE: usize = 64;

type Outcome = Result<(StatusCode, Option<String>, Option<String>), ApiError>;

/// Runs one operation. Its write reaches the writer's queue on the future's first poll
/// (every service queues its job before it first waits), so operations polled in the
/// order they were started are applied in that order.
async fn run_one(ctx: &Ctx, op: BulkOp) -> Outcome {
    let (kind, id) = target(&op.path).ok_or_else(|| ApiError::BadRequest(format!("unsupported bulk path '{}'", op.path)))?;
    let verb = op.method.as_str();
    // An HTTP method is a token (RFC 9110 §9.1); anything else is not a method at all.
    if verb.is_empty() || !verb.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
        return Err(ApiError::BadRequest(format!("unsupported bulk method '{}'", op.method)));
    }
    if (verb == "POST") != id.is_none() || verb == "GET" {
        return Err(ApiError::BadRequest(format!("{} is not a valid bulk operation on {}", op.method, op.path)));
    }
    let if_match = op.version.as_deref().map(IfMatch::parse);
    let body = op.data.as_ref();
    let write = match (verb, id.as_deref()) {
        ("POST", None) => WriteOp::Create { kind, body },
        ("PUT", Some(id)) => WriteOp::Replace { kind, id, body, if_match },
        ("PATCH", Some(id)) => WriteOp::Patch { kind, id, body, if_match },
        ("DELETE", Some(id)) => WriteOp::Delete { kind, id, if_match },
        _ => return Err(ApiError::MethodNotAllowed),
    };
    let location = |id: &str| format!("{}/{}/{id}", ctx.base_url, kind.endpoint());
    match handlers::execute(ctx, write).await? {
        Done::Resource(status, res) => Ok((status, Some(location(&res.id)), Some(res.etag()))),
        Done::GroupPatched(id, etag) => Ok((StatusCode::OK, Some(location(&id)), Some(etag))),
        Done::Deleted => Ok((StatusCode::NO_CONTENT, id.as_deref().map(location), None)),
    }
}

/// The operation `i` with its `bulkId:` references replaced, ready to run, or why it
/// cannot run.
fn prepare(op: &mut BulkOp, ids: &BulkIds) -> Result<BulkOp, ApiError> {
    let own = op.bulk_id.clone();
    let mut data = op.data.take().unwrap_or(Value::Null);
    // A path names its target as `/Users/bulkId:x`: resolve segment by segment.
    let mut path = Value::Array(op.path.split('/').map(|seg| Value::String(seg.to_string())).collect());
    let resolution = match substitute(&mut data, ids, own.as_deref()) {
        Resolution::Ready => substitute(&mut path, ids, own.as_deref()),
        other => other,
    };
    match resolution {
        // The schedule runs an operation only once what it references has run.
        Resolution::Waiting => Err(ApiError::Scim(ScimError::invalid_value("circular bulkId references"))),
        Resolution::Failed(e) => Err(e),
        Resolution::Ready => {
            let segments: Vec<&str> = path.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let path = segments.join("/");
            Ok(BulkOp { method: op.method.clone(), path, bulk_id: own, version: op.version.clone(), data: (!data.is_null()).then_some(data) })
        }
    }
}

/// What the request has done so far.
struct Progress {
    results: Vec<Option<Value>>,
    ids: BulkIds,
    schedule: Schedule,
    errors: u64,
}

impl Progress {
    /// Records operation `i`'s outcome and releases the operations waiting for it.
    fn finish(&mut self, op: &BulkOp, i: usize, outcome: Outcome) {
        let mut entry = json!({"method": op.method});
        if let Some(b) = &op.bulk_id {
            entry["bulkId"] = b.clone().into();
        }
        match outcome {
            Ok((status, location, version)) => {
                if let (Some(b), Some(loc)) = (&op.bulk_id, &location) {
                    self.ids.done.insert(b.clone(), loc.rsplit('/').next().unwrap_or_default().to_string());
                }
                if let Some(l) = location {
                    entry["location"] = l.into();
                }
                if let Some(v) = version {
                    entry["version"] = v.into();
                }
                entry["status"] = status.as_u16().to_string().into();
            }
            Err(e) => {
                let (status, body) = e.to_status_and_body();
                entry["status"] = status.as_u16().to_string().into();
                entry["response"] = body;
                if let Some(b) = &op.bulk_id {
                    self.ids.failed.insert(b.clone());
                }
                self.errors += 1;
            }
        }
        self.results[i] = Some(entry);
        if let Some(b) = &op.bulk_id {
            let left = self.ids.unfinished.get_mut(b).map(|n| {
                *n -= 1;
                *n
            });
            self.schedule.finished(b, left.unwrap_or(0));
        }
    }
}

enum Slot<'a> {
    Running(Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>),
    Done(Option<Outcome>),
}

pub async fn run(ctx: &Ctx, body: &Value) -> Result<HttpResponse, ApiError> {
    let (mut ops, fail_on_errors) = parse(body, ctx.bulk_max_operations)?;
    let mut ids = BulkIds { done: HashMap::new(), unfinished: HashMap::new(), failed: HashSet::new() };
    for b in ops.iter().filter_map(|op| op.bulk_id.clone()) {
        *ids.unfinished.entry(b).or_default() += 1;
    }
    let schedule = Schedule::new(&ops);
    let mut p = Progress { results: (0..ops.len()).map(|_| None).collect(), ids, schedule, errors: 0 };
    let mut in_flight: VecDeque<(usize, Slot<'_>)> = VecDeque::new();
    loop {
        // Start what is ready, lowest index first. With `failOnErrors`, never more than the
        // errors it still allows: an operation is started only if processing one at a time
        // would have reached it (each one in flight can add one error at most).
        loop {
            let allowed = fail_on_errors.map_or(usize::MAX, |limit| limit.saturating_sub(p.errors) as usize);
            if in_flight.len() >= PIPELINE.min(allowed) {
                break;
            }
            let Some(&Reverse(i)) = p.schedule.ready.peek() else { break };
            // The order stays the one-at-a-time order: not while an operation in flight may
            // release one that comes before `i` (it would have run first).
            if in_flight.iter().any(|(k, _)| ops[*k].bulk_id.as_deref().is_some_and(|b| p.schedule.may_release_before(b, i))) {
                break;
            }
            p.schedule.ready.pop();
            match prepare(&mut ops[i], &p.ids) {
                Ok(op) => in_flight.push_back((i, Slot::Running(Box::pin(run_one(ctx, op))))),
                Err(e) => p.finish(&ops[i], i, Err(e)),
            }
        }
        if in_flight.is_empty() {
            if fail_on_errors.is_some_and(|limit| p.errors >= limit) || p.schedule.ready.is_empty() {
                break;
            }
            continue;
        }
        // Drive every operation in flight (their writes share the writer's batches), and
        // take their outcomes in the order they were started.
        let (i, outcome) = std::future::poll_fn(|cx| {
            for (_, slot) in in_flight.iter_mut() {
                if let Slot::Running(fut) = slot {
                    if let Poll::Ready(outcome) = fut.as_mut().poll(cx) {
                        *slot = Slot::Done(Some(outcome));
                    }
                }
            }
            match in_flight.front_mut() {
                Some((i, Slot::Done(outcome))) => Poll::Ready((*i, outcome.take())),
                _ => Poll::Pending,
            }
        })
        .await;
        in_flight.pop_front();
        let outcome = outcome.unwrap_or_else(|| Err(ApiError::Scim(ScimError::invalid_value("operation lost"))));
        p.finish(&ops[i], i, outcome);
        if fail_on_errors.is_some_and(|limit| p.errors >= limit) && in_flight.is_empty() {
            let operations: Vec<Value> = p.results.into_iter().flatten().collect();
            return Ok(json_response(StatusCode::OK, &json!({"schemas": [BULK_RESPONSE], "Operations": operations})));
        }
    }
    if fail_on_errors.is_some_and(|limit| p.errors >= limit) {
        let operations: Vec<Value> = p.results.into_iter().flatten().collect();
        return Ok(json_response(StatusCode::OK, &json!({"schemas": [BULK_RESPONSE], "Operations": operations})));
    }
    // What never became ready waits on a cycle of bulkId references.
    for (i, result) in p.results.iter_mut().enumerate().filter(|(_, r)| r.is_none()) {
        let err = ApiError::Scim(ScimError::invalid_value("circular bulkId references"));
        let (status, body) = err.to_status_and_body();
        let mut entry = json!({"method": ops[i].method, "status": status.as_u16().to_string(), "response": body});
        if let Some(b) = &ops[i].bulk_id {
            entry["bulkId"] = b.clone().into();
        }
        *result = Some(entry);
    }
    let operations: Vec<Value> = p.results.into_iter().flatten().collect();
    Ok(json_response(StatusCode::OK, &json!({"schemas": [BULK_RESPONSE], "Operations": operations})))
}

#[cfg(test)]
mod tests {
    use super::target;
    use crate::scim::schema::ResourceKind::{Group, User};

    #[test]
    fn bulk_paths_name_a_collection_or_one_resource() {
        assert_eq!(target("/Users"), Some((User, None)));
        assert_eq!(target("Groups/"), Some((Group, None)));
        assert_eq!(target("/Users/123"), Some((User, Some("123".into()))));
        assert_eq!(target("/Groups/a%20b"), Some((Group, Some("a%20b".into()))), "ids are taken as written");
        assert_eq!(target("/Users/.search"), Some((User, Some(".search".into()))));
        for bad in ["", "/", "/Bulk", "/Me", "/Schemas", "/Users/1/2", "/Users//1", "/users/1", "/Foo"] {
            assert_eq!(target(bad), None, "{bad}");
        }
    }
}
