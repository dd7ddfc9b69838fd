//! `/Bulk` (RFC 7644 §3.7): many operations in one request, each run through the same
//! handlers as its single-request twin, with `bulkId:` references resolved across
//! operations (a group created with members that are users created in the same request).
//!
//! Operations are not one transaction (the RFC does not ask it): each is atomic and
//! durable on its own, and `failOnErrors` stops processing after that many failures.

use std::collections::HashMap;

use hyper::{Method, StatusCode};
use serde_json::{json, Value};

use super::handlers::{self, Done};
use super::response::{json_response, ApiError, HttpResponse};
use super::router::Ctx;
use crate::scim::schema::ResourceKind;
use crate::scim::{groups, IfMatch, ScimError};

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

/// Replaces `bulkId:X` strings (in `value` and in the path) with the ids they name.
fn substitute(value: &mut Value, ids: &HashMap<String, String>, pending: &[String], failed: &[String]) -> Resolution {
    match value {
        Value::String(s) => {
            let Some(reference) = s.strip_prefix("bulkId:") else { return Resolution::Ready };
            if let Some(id) = ids.get(reference) {
                *s = id.clone();
                Resolution::Ready
            } else if pending.iter().any(|p| p == reference) {
                Resolution::Waiting
            } else if failed.iter().any(|f| f == reference) {
                Resolution::Failed(ApiError::Scim(ScimError::new(crate::scim::ScimErrorKind::InvalidValue, format!("bulkId {reference} names an operation that failed"))))
            } else {
                Resolution::Failed(ApiError::Scim(ScimError::invalid_value(format!("unknown bulkId {reference}"))))
            }
        }
        Value::Array(items) => fold(items.iter_mut(), ids, pending, failed),
        Value::Object(obj) => fold(obj.values_mut(), ids, pending, failed),
        _ => Resolution::Ready,
    }
}

fn fold<'a>(values: impl Iterator<Item = &'a mut Value>, ids: &HashMap<String, String>, pending: &[String], failed: &[String]) -> Resolution {
    let mut outcome = Resolution::Ready;
    for v in values {
        match substitute(v, ids, pending, failed) {
            Resolution::Ready => {}
            Resolution::Waiting => outcome = Resolution::Waiting,
            failed @ Resolution::Failed(_) => return failed,
        }
    }
    outcome
}

/// `/Users`, `/Users/{id}`, `/Groups`, `/Groups/{id}`.
fn target(path: &str) -> Option<(ResourceKind, Option<String>)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let kind = match *segs.first()? {
        "Users" => ResourceKind::User,
        "Groups" => ResourceKind::Group,
        _ => return None,
    };
    match segs.as_slice() {
        [_] => Some((kind, None)),
        [_, id] if !id.is_empty() => Some((kind, Some((*id).to_string()))),
        _ => None,
    }
}

async fn run_one(ctx: &Ctx, op: &BulkOp) -> Result<(StatusCode, Option<String>, Option<String>), ApiError> {
    let (kind, id) = target(&op.path).ok_or_else(|| ApiError::BadRequest(format!("unsupported bulk path '{}'", op.path)))?;
    let method = Method::from_bytes(op.method.as_bytes()).map_err(|_| ApiError::BadRequest(format!("unsupported bulk method '{}'", op.method)))?;
    if (method == Method::POST) != id.is_none() || method == Method::GET {
        return Err(ApiError::BadRequest(format!("{} is not a valid bulk operation on {}", op.method, op.path)));
    }
    let if_match = op.version.as_deref().map(IfMatch::parse);
    let location = |id: &str| format!("{}/{}/{id}", ctx.base_url, kind.endpoint());
    match handlers::execute(ctx, kind, &method, id.as_deref(), op.data.as_ref(), if_match).await? {
        Done::Resource(status, res) => Ok((status, Some(location(&res.id)), Some(res.etag()))),
        Done::GroupPatched(id) => {
            let res = groups::get(&ctx.tenant, &id, false).await?;
            Ok((StatusCode::OK, Some(location(&id)), Some(res.etag())))
        }
        Done::Deleted => Ok((StatusCode::NO_CONTENT, id.as_deref().map(location), None)),
    }
}

pub async fn run(ctx: &Ctx, body: &Value) -> Result<HttpResponse, ApiError> {
    let (mut ops, fail_on_errors) = parse(body, ctx.bulk_max_operations)?;
    let mut results: Vec<Option<Value>> = (0..ops.len()).map(|_| None).collect();
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut failed_ids: Vec<String> = Vec::new();
    let mut errors = 0u64;
    let mut pending: Vec<usize> = (0..ops.len()).collect();
    'passes: while !pending.is_empty() {
        let mut progressed = false;
        let mut waiting = Vec::new();
        for &i in &pending {
            let pending_ids: Vec<String> =
                pending.iter().filter(|&&j| j != i && results[j].is_none()).filter_map(|&j| ops[j].bulk_id.clone()).collect();
            let mut data = ops[i].data.take().unwrap_or(Value::Null);
            // A path names its target as `/Users/bulkId:x`: resolve segment by segment.
            let mut path = Value::Array(ops[i].path.split('/').map(|seg| Value::String(seg.to_string())).collect());
            let resolution = match substitute(&mut data, &ids, &pending_ids, &failed_ids) {
                Resolution::Ready => substitute(&mut path, &ids, &pending_ids, &failed_ids),
                other => other,
            };
            ops[i].data = (!data.is_null()).then_some(data);
            let outcome = match resolution {
                Resolution::Waiting => {
                    waiting.push(i);
                    continue;
                }
                Resolution::Failed(e) => Err(e),
                Resolution::Ready => {
                    let segments: Vec<&str> = path.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    ops[i].path = segments.join("/");
                    run_one(ctx, &ops[i]).await
                }
            };
            progressed = true;
            let op = &ops[i];
            let mut entry = json!({"method": op.method});
            if let Some(b) = &op.bulk_id {
                entry["bulkId"] = b.clone().into();
            }
            match outcome {
                Ok((status, location, version)) => {
                    if let (Some(b), Some(loc)) = (&op.bulk_id, &location) {
                        ids.insert(b.clone(), loc.rsplit('/').next().unwrap_or_default().to_string());
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
                        failed_ids.push(b.clone());
                    }
                    errors += 1;
                }
            }
            results[i] = Some(entry);
            if fail_on_errors.is_some_and(|limit| errors >= limit) {
                break 'passes;
            }
        }
        if !progressed {
            // Every remaining operation waits on another: a cycle of bulkId references.
            for &i in &waiting {
                let err = ApiError::Scim(ScimError::invalid_value("circular bulkId references"));
                let (status, body) = err.to_status_and_body();
                let mut entry = json!({"method": ops[i].method, "status": status.as_u16().to_string(), "response": body});
                if let Some(b) = &ops[i].bulk_id {
                    entry["bulkId"] = b.clone().into();
                }
                results[i] = Some(entry);
            }
            break;
        }
        pending = waiting;
    }
    let operations: Vec<Value> = results.into_iter().flatten().collect();
    Ok(json_response(StatusCode::OK, &json!({"schemas": [BULK_RESPONSE], "Operations": operations})))
}
