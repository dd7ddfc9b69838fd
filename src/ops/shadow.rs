//! `scimd shadow report`: what the IdP would do to the live data, read from what it did to
//! the rehearsal's copy. Every change the SCIM layer makes records an event (in the same
//! transaction), so the copy's events after the rehearsal started are the whole story;
//! the refusals the router kept say what the IdP was told no. Pure classification over
//! those two lists, with the names looked up in the copy (and the live database, for the
//! members a linked group keeps).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::store::events::EventRecord;
use crate::store::shadow::Snapshot;
use crate::tenant::shadow::{Files, Refusal, ShadowError, ShadowInfo};
use crate::tenant::{DataDir, TenantId};

/// At most this many names per row; `count` says how many there are in all.
pub const MAX_NAMES: usize = 100;

/// Where the report looks names up: the rehearsal's copy, and the live database.
pub trait Lookup {
    fn user_name(&self, id: &str) -> Option<String>;
    fn group_name(&self, id: &str) -> Option<String>;
    /// The members a group has in the live database (what a linked group keeps).
    fn live_members(&self, group_id: &str) -> Vec<String>;
    /// A live user of another userName with this email (the person the IdP would duplicate).
    fn live_user_with_email(&self, email: &str) -> Option<String>;
}

/// A counted set of names (sorted; at most `MAX_NAMES` of them listed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Names {
    pub count: usize,
    pub names: Vec<String>,
}

impl Names {
    fn of(mut all: Vec<String>) -> Names {
        all.sort();
        all.dedup();
        let count = all.len();
        all.truncate(MAX_NAMES);
        Names { count, names: all }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rename {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Default, PartialEq, Serialize)]
pub struct UserRows {
    pub created: Names,
    /// Attribute → the users whose attribute the IdP would change.
    pub updated: BTreeMap<String, Names>,
    pub deactivated: Names,
    pub reactivated: Names,
    pub restored: Names,
    pub deleted: Names,
    /// Local users the IdP would take over.
    pub adopted: Names,
    /// userName changes: what username-based integrations would lose.
    pub renamed: Vec<Rename>,
    /// Users the IdP would create whose userName is the email of a live user of another
    /// userName: the same person twice (`scimd sanitize` first).
    pub duplicates: Vec<Duplicate>,
    /// Mapping rule (`[mapping]` in tenant.toml) → the users whose values it changed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub mapped: BTreeMap<String, Names>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    pub created: String,
    pub existing: String,
}

#[derive(Debug, Default, PartialEq, Serialize)]
pub struct LicenceRows {
    pub creator: Names,
    pub creator_float: Names,
    /// Users the IdP would create or activate with no seat free for them.
    pub no_seat_free: Names,
    /// Users whose seat would be freed (deactivated or deleted).
    pub freed: Names,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct Linked {
    pub group: String,
    /// The members the application's group has, which it keeps once linked.
    pub members_kept: Names,
}

#[derive(Debug, Default, PartialEq, Serialize)]
pub struct GroupRows {
    pub created: Names,
    /// Pushed groups whose name matched an existing org-level group.
    pub linked_by_name: Vec<Linked>,
    pub renamed: Vec<Rename>,
    pub deleted: Names,
    /// Linked groups the IdP deleted: they return to the application.
    pub unlinked: Names,
}

#[derive(Debug, Default, PartialEq, Serialize)]
pub struct MembershipRows {
    /// Group → members the IdP would add.
    pub added: BTreeMap<String, Names>,
    pub removed: BTreeMap<String, Names>,
    /// Group → inactive Basic-auth members that would leave it at its first sync.
    pub inactive_basic_removed: BTreeMap<String, Names>,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct Refused {
    pub status: u16,
    #[serde(rename = "scimType")]
    pub scim_type: Option<String>,
    /// The refusal's detail with the names in it replaced by '…', so one row holds all alike.
    pub reason: String,
    pub requests: usize,
    pub names: Names,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct PolicyEffect {
    pub reason: String,
    pub names: Names,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct Report {
    pub tenant: String,
    pub started_at: String,
    pub users: UserRows,
    pub licences: LicenceRows,
    pub groups: GroupRows,
    pub memberships: MembershipRows,
    pub refused: Vec<Refused>,
    pub policy_effects: Vec<PolicyEffect>,
}

fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(*k)).and_then(Value::as_str)
}

/// Collects names under string keys, then turns them into `Names`.
#[derive(Default)]
struct Buckets(BTreeMap<String, Vec<String>>);

impl Buckets {
    fn add(&mut self, key: &str, name: String) {
        self.0.entry(key.to_string()).or_default().push(name);
    }
    fn done(self) -> BTreeMap<String, Names> {
        self.0.into_iter().map(|(k, v)| (k, Names::of(v))).collect()
    }
}

/// The report of a rehearsal from its events (after `info.start_seq`) and refusals.
pub fn report(tenant: &str, info: &ShadowInfo, events: &[EventRecord], refusals: &[Refusal], look: &dyn Lookup) -> Report {
    let user = |id: &str| look.user_name(id).unwrap_or_else(|| id.to_string());
    let group = |id: &str| look.group_name(id).unwrap_or_else(|| id.to_string());
    let mut u: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut updated = Buckets::default();
    let mut renamed = Vec::new();
    let mut group_renamed = Vec::new();
    let mut linked = Vec::new();
    let (mut added, mut removed, mut inactive) = (Buckets::default(), Buckets::default(), Buckets::default());
    let mut policy = Buckets::default();
    let mut mapped = Buckets::default();
    // Per user: the licence before the first change, after the last, and whether no seat was free.
    let mut licences: BTreeMap<&str, (String, String, bool)> = BTreeMap::new();
    for e in events.iter().filter(|e| e.seq > info.start_seq) {
        let d = &e.detail;
        if e.resource_type == "User" {
            for rule in d.get("mapped").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                mapped.add(rule, text(d, &["after", "userName"]).map(str::to_string).unwrap_or_else(|| user(&e.resource_id)));
            }
        }
        match (e.resource_type.as_str(), e.action.as_str()) {
            ("User", "create") => u.entry("created").or_default().push(text(d, &["after", "userName"]).map(str::to_string).unwrap_or_else(|| user(&e.resource_id))),
            ("User", action @ ("update" | "deactivate" | "reactivate")) => {
                let name = user(&e.resource_id);
                if let (Some(from), Some(to)) = (text(d, &["before", "userName"]), text(d, &["after", "userName"])) {
                    renamed.push(Rename { from: from.into(), to: to.into() });
                }
                for field in changed_fields(d) {
                    updated.add(&field, name.clone());
                }
                match action {
                    "deactivate" => u.entry("deactivated").or_default().push(name),
                    "reactivate" => u.entry("reactivated").or_default().push(name),
                    _ => {}
                }
            }
            ("User", "restore") => u.entry("restored").or_default().push(user(&e.resource_id)),
            ("User", "delete") => u.entry("deleted").or_default().push(text(d, &["before", "userName"]).map(str::to_string).unwrap_or_else(|| user(&e.resource_id))),
            ("User", "adopt") => u.entry("adopted").or_default().push(user(&e.resource_id)),
            ("User", "license") => {
                let entry = licences.entry(&e.resource_id).or_insert_with(|| (text(d, &["before"]).unwrap_or("none").to_string(), String::new(), false));
                if let Some(after) = text(d, &["after"]) {
                    entry.1 = after.to_string();
                }
                if d.get("warning").is_some() {
                    entry.2 = true;
                }
            }
            ("Group", "create") => u.entry("groups_created").or_default().push(text(d, &["after", "displayName"]).map(str::to_string).unwrap_or_else(|| group(&e.resource_id))),
            ("Group", "link") => linked.push(Linked {
                group: text(d, &["displayName"]).map(str::to_string).unwrap_or_else(|| group(&e.resource_id)),
                members_kept: Names::of(look.live_members(&e.resource_id)),
            }),
            ("Group", "update") => {
                if let (Some(from), Some(to)) = (text(d, &["before", "displayName"]), text(d, &["after", "displayName"])) {
                    if from != to {
                        group_renamed.push(Rename { from: from.into(), to: to.into() });
                    }
                }
            }
            ("Group", "delete") => u.entry("groups_deleted").or_default().push(text(d, &["before", "displayName"]).map(str::to_string).unwrap_or_else(|| group(&e.resource_id))),
            ("Group", "unlink") => u.entry("groups_unlinked").or_default().push(group(&e.resource_id)),
            ("Group", "ignore") => {
                if let Some(reason) = text(d, &["reason"]) {
                    policy.add(reason, text(d, &["group"]).map(str::to_string).unwrap_or_else(|| group(&e.resource_id)));
                }
            }
            ("Membership", action @ ("create" | "delete")) => {
                let (Some(g), Some(m)) = (text(d, &["group"]), text(d, &["member"])) else { continue };
                let (g, m) = (group(g), user(m));
                match (action, text(d, &["reason"])) {
                    ("create", Some(reason)) => {
                        policy.add(reason, m.clone());
                        added.add(&g, m);
                    }
                    ("create", None) => added.add(&g, m),
                    (_, Some("inactive Basic-auth user")) => inactive.add(&g, m),
                    _ => removed.add(&g, m),
                }
            }
            ("Membership", "ignore") => {
                if let Some(reason) = text(d, &["reason"]) {
                    let who = text(d, &["member"]).unwrap_or(&e.resource_id);
                    policy.add(reason, user(who));
                }
            }
            _ => {}
        }
    }
    let mut duplicates: Vec<Duplicate> = u
        .get("created")
        .into_iter()
        .flatten()
        .filter_map(|name| look.live_user_with_email(name).map(|existing| Duplicate { created: name.clone(), existing }))
        .collect();
    duplicates.sort_by(|a, b| a.created.cmp(&b.created));
    duplicates.dedup();
    let mut take = |k: &str| Names::of(u.remove(k).unwrap_or_default());
    let mut lic = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, (before, after, no_seat)) in &licences {
        let name = user(id);
        match (after.as_str(), *no_seat) {
            (_, true) => lic.2.push(name),
            ("creator", _) => lic.0.push(name),
            ("creator_float", _) => lic.1.push(name),
            _ if before != "none" => lic.3.push(name),
            _ => {}
        }
    }
    linked.sort_by(|a, b| a.group.cmp(&b.group));
    renamed.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
    group_renamed.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
    Report {
        tenant: tenant.to_string(),
        started_at: info.started_at.clone(),
        users: UserRows {
            created: take("created"),
            updated: updated.done(),
            deactivated: take("deactivated"),
            reactivated: take("reactivated"),
            restored: take("restored"),
            deleted: take("deleted"),
            adopted: take("adopted"),
            renamed,
            duplicates,
            mapped: mapped.done(),
        },
        licences: LicenceRows { creator: Names::of(lic.0), creator_float: Names::of(lic.1), no_seat_free: Names::of(lic.2), freed: Names::of(lic.3) },
        groups: GroupRows {
            created: take("groups_created"),
            linked_by_name: linked,
            renamed: group_renamed,
            deleted: take("groups_deleted"),
            unlinked: take("groups_unlinked"),
        },
        memberships: MembershipRows { added: added.done(), removed: removed.done(), inactive_basic_removed: inactive.done() },
        refused: refused(refusals, &user),
        policy_effects: policy.done().into_iter().map(|(reason, names)| PolicyEffect { reason, names }).collect(),
    }
}

/// The attributes an update event's before/after changed, a complex one (`name`) by its
/// sub-attributes (`name.givenName`); userName and active have rows of their own.
fn changed_fields(detail: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let before = detail.get("before").and_then(Value::as_object).unwrap_or(&empty);
    let mut fields = Vec::new();
    for (key, after) in detail.get("after").and_then(Value::as_object).into_iter().flatten() {
        if key == "userName" || key == "active" {
            continue;
        }
        match (before.get(key).and_then(Value::as_object), after.as_object()) {
            (Some(old), Some(new)) => {
                let mut subs: Vec<&String> = old.keys().chain(new.keys()).filter(|k| old.get(*k) != new.get(*k)).collect();
                subs.sort();
                subs.dedup();
                fields.extend(subs.into_iter().map(|sub| format!("{key}.{sub}")));
            }
            _ => fields.push(key.clone()),
        }
    }
    fields
}

/// Names from the rehearsal's copy; the members a linked group keeps from the live database.
struct Databases {
    copy: Snapshot,
    live: Snapshot,
}

impl Lookup for Databases {
    fn user_name(&self, id: &str) -> Option<String> {
        self.copy.user_name(id).ok().flatten()
    }
    fn group_name(&self, id: &str) -> Option<String> {
        self.copy.group_name(id).ok().flatten()
    }
    fn live_members(&self, group_id: &str) -> Vec<String> {
        self.live.member_names(group_id).unwrap_or_default()
    }
    fn live_user_with_email(&self, email: &str) -> Option<String> {
        self.live.other_user_with_email(email).ok().flatten()
    }
}

/// The report of a tenant's rehearsal from its files (`None` when it is not in shadow
/// mode): read-only, whether a server runs or not (the command and the console).
pub fn build(data: &DataDir, id: &TenantId) -> Result<Option<Report>, ShadowError> {
    let files = Files::of(data, id);
    let Some(info) = files.info()? else { return Ok(None) };
    let names = Databases { copy: Snapshot::open(files.database())?, live: Snapshot::open(files.live_database())? };
    let events = names.copy.events_after(info.start_seq)?;
    let refusals = files.refusals()?;
    Ok(Some(report(id.as_str(), &info, &events, &refusals, &names)))
}

/// Refusals grouped by what they say, names masked: "userName 'a@x' must equal …" and
/// "userName 'b@x' must equal …" are one row naming a@x and b@x.
fn refused(refusals: &[Refusal], user: &dyn Fn(&str) -> String) -> Vec<Refused> {
    /// (status, scimType, reason) → (requests, names).
    type Rows = BTreeMap<(u16, Option<String>, String), (usize, Vec<String>)>;
    let mut rows = Rows::new();
    for r in refusals {
        let (reason, first) = mask_quoted(&r.detail);
        let name = first.unwrap_or_else(|| match r.path.rsplit_once("/Users/") {
            Some((_, id)) if !id.contains('/') => user(id),
            _ => format!("{} {}", r.method, r.path),
        });
        let row = rows.entry((r.status, r.scim_type.clone(), reason)).or_default();
        row.0 += 1;
        row.1.push(name);
    }
    rows.into_iter()
        .map(|((status, scim_type, reason), (requests, names))| Refused { status, scim_type, reason, requests, names: Names::of(names) })
        .collect()
}

/// The text with every quoted value ('…' opened at the start or after a space, closed
/// before the end, a space or punctuation, so "user's" is no quote) replaced by '…', and
/// the first such value.
fn mask_quoted(detail: &str) -> (String, Option<String>) {
    let chars: Vec<char> = detail.chars().collect();
    let mut out = String::with_capacity(detail.len());
    let mut first = None;
    let mut i = 0;
    while i < chars.len() {
        let opens = chars[i] == '\'' && (i == 0 || chars[i - 1].is_whitespace() || chars[i - 1] == '(');
        let close = opens
            .then(|| (i + 1..chars.len()).find(|&j| chars[j] == '\'' && chars.get(j + 1).is_none_or(|c| c.is_whitespace() || ",.;:)".contains(*c))))
            .flatten();
        match close {
            Some(j) => {
                out.push_str("'…'");
                first.get_or_insert_with(|| chars[i + 1..j].iter().collect::<String>());
                i = j + 1;
            }
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    (out, first)
}

/// The report as an operator reads it on a terminal.
pub fn render_text(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let list = |n: &Names| {
        let more = if n.count > n.names.len() { format!(", and {} more", n.count - n.names.len()) } else { String::new() };
        format!("{}{}{more}", n.count, if n.names.is_empty() { String::new() } else { format!(": {}", n.names.join(", ")) })
    };
    let _ = writeln!(s, "Shadow report for tenant {} (rehearsal started {})", r.tenant, r.started_at);
    let _ = writeln!(s, "What the IdP would do to the live data:\n\nUsers");
    for (label, n) in [
        ("created", &r.users.created),
        ("deactivated", &r.users.deactivated),
        ("reactivated", &r.users.reactivated),
        ("restored", &r.users.restored),
        ("deleted", &r.users.deleted),
        ("adopted (local users the IdP takes over)", &r.users.adopted),
    ] {
        let _ = writeln!(s, "  {label}: {}", list(n));
    }
    for (field, n) in &r.users.updated {
        let _ = writeln!(s, "  updated {field}: {}", list(n));
    }
    for (rule, n) in &r.users.mapped {
        let _ = writeln!(s, "  changed by the mapping rule {rule:?}: {}", list(n));
    }
    let _ = writeln!(s, "  renamed (username-based integrations break): {}", r.users.renamed.len());
    for rn in &r.users.renamed {
        let _ = writeln!(s, "    {} -> {}", rn.from, rn.to);
    }
    let _ = writeln!(s, "  duplicates of live users (their email is the new userName; scimd sanitize first): {}", r.users.duplicates.len());
    for d in &r.users.duplicates {
        let _ = writeln!(s, "    {} would duplicate {}", d.created, d.existing);
    }
    let _ = writeln!(s, "\nLicences\n  Creator: {}\n  Creator Float: {}\n  no seat free: {}\n  freed: {}", list(&r.licences.creator), list(&r.licences.creator_float), list(&r.licences.no_seat_free), list(&r.licences.freed));
    let _ = writeln!(s, "\nGroups\n  created: {}\n  linked by name: {}", list(&r.groups.created), r.groups.linked_by_name.len());
    for l in &r.groups.linked_by_name {
        let _ = writeln!(s, "    {} keeps {}", l.group, list(&l.members_kept));
    }
    for rn in &r.groups.renamed {
        let _ = writeln!(s, "  renamed {} -> {}", rn.from, rn.to);
    }
    let _ = writeln!(s, "  deleted: {}\n  unlinked: {}", list(&r.groups.deleted), list(&r.groups.unlinked));
    let _ = writeln!(s, "\nMemberships");
    for (label, rows) in [("added to", &r.memberships.added), ("removed from", &r.memberships.removed), ("inactive Basic-auth members leaving", &r.memberships.inactive_basic_removed)] {
        for (g, n) in rows {
            let _ = writeln!(s, "  {label} {g}: {}", list(n));
        }
    }
    let _ = writeln!(s, "\nRefused ({} kinds)", r.refused.len());
    for f in &r.refused {
        let _ = writeln!(s, "  {} {}: {} — {} request(s): {}", f.status, f.scim_type.as_deref().unwrap_or("-"), f.reason, f.requests, list(&f.names));
    }
    let _ = writeln!(s, "\nPolicy effects");
    for p in &r.policy_effects {
        let _ = writeln!(s, "  {}: {}", p.reason, list(&p.names));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::mask_quoted;

    struct NoNames;
    impl super::Lookup for NoNames {
        fn user_name(&self, _: &str) -> Option<String> {
            None
        }
        fn group_name(&self, _: &str) -> Option<String> {
            None
        }
        fn live_members(&self, _: &str) -> Vec<String> {
            Vec::new()
        }
        fn live_user_with_email(&self, _: &str) -> Option<String> {
            None
        }
    }

    /// The mapping rules that changed values are counted per rule, and printed.
    #[test]
    fn mapping_rules_are_shown() {
        let event = |seq: i64, action: &str, detail: serde_json::Value| crate::store::events::EventRecord {
            seq,
            at: "t".into(),
            principal: "okta".into(),
            action: action.into(),
            resource_type: "User".into(),
            resource_id: format!("u{seq}"),
            detail,
        };
        let events = [
            event(2, "create", serde_json::json!({"after": {"userName": "ann@x.com"}, "mapped": ["lowercase userName", "trim *"]})),
            event(3, "update", serde_json::json!({"before": {"userName": "BO@X.COM"}, "after": {"userName": "bo@x.com"}, "mapped": ["lowercase userName"]})),
            event(4, "create", serde_json::json!({"after": {"userName": "cy@x.com"}})),
        ];
        let info = crate::tenant::shadow::ShadowInfo { started_at: "t0".into(), start_seq: 1, marker: String::new() };
        let report = super::report("acme", &info, &events, &[], &NoNames);
        assert_eq!(report.users.mapped["lowercase userName"].names, ["ann@x.com", "bo@x.com"]);
        assert_eq!(report.users.mapped["trim *"].count, 1);
        assert!(super::render_text(&report).contains("changed by the mapping rule \"lowercase userName\": 2: ann@x.com, bo@x.com"), "{}", super::render_text(&report));
    }

    #[test]
    fn quoted_names_are_masked_and_the_first_kept() {
        let (m, first) = mask_quoted("userName 'bob' must equal the user's email 'bob@x.test'");
        assert_eq!(m, "userName '…' must equal the user's email '…'");
        assert_eq!(first.as_deref(), Some("bob"));
        assert_eq!(mask_quoted("no quotes"), ("no quotes".to_string(), None));
        assert_eq!(mask_quoted("one ' open"), ("one ' open".to_string(), None));
    }
}
