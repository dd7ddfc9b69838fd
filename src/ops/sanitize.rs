//! Sanitisation before SCIM is enabled: userName must equal the email. Finds the users
//! that need `userName := email`, and the pairs whose update would clash, so a person
//! decides those. Pure logic over a snapshot; `apply` is the caller's one transaction.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

pub use crate::model::{AuthMode, Candidate};
use crate::model::AuthType;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NeedsUpdate {
    pub username: String,
    pub email: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Clash {
    pub usernames: [String; 2],
    pub rule: String,
}

/// The report, in the exact JSON shape operators script against.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub needs_update: Vec<NeedsUpdate>,
    pub clashes: Vec<Clash>,
    pub applied: Vec<String>,
}

fn needs(c: &Candidate, mode: AuthMode) -> bool {
    let Some(email) = &c.email else { return false };
    let checked = match mode {
        AuthMode::Basic => true,
        AuthMode::Idp | AuthMode::Multi => c.auth_type == AuthType::Idp,
    };
    c.active && checked && !email.eq_ignore_ascii_case(&c.user_name)
}

/// The users to update, the clashing pairs, and (in `plan`) the ids safe to update.
pub struct Analysis {
    pub report: Report,
    /// (id, old userName, new userName) for every user that needs it and clashes with nobody.
    pub plan: Vec<(String, String, String)>,
}

pub fn analyse(users: &[Candidate], mode: AuthMode) -> Analysis {
    let needy: Vec<bool> = users.iter().map(|u| needs(u, mode)).collect();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut by_email: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, u) in users.iter().enumerate() {
        by_name.insert(crate::names::key(&u.user_name), i);
        if let Some(e) = &u.email {
            by_email.entry(crate::names::key(e)).or_default().push(i);
        }
    }
    let mut pairs: BTreeSet<(usize, usize, &'static str)> = BTreeSet::new();
    for (a, u) in users.iter().enumerate() {
        let Some(email) = &u.email else { continue };
        // Rule 1: one of the two needs the update and the first's email is the second's userName.
        // Names compare as userName uniqueness compares them (`crate::names::key`).
        if let Some(&b) = by_name.get(&crate::names::key(email)) {
            if b != a && (needy[a] || needy[b]) {
                pairs.insert((a, b, "email_equals_username"));
            }
        }
        // Rule 2: both need it and their emails are equal.
        if needy[a] {
            for &b in by_email.get(&crate::names::key(email)).into_iter().flatten() {
                if b > a && needy[b] {
                    pairs.insert((a, b, "same_email"));
                }
            }
        }
    }
    let mut clashing = vec![false; users.len()];
    let clashes = pairs
        .iter()
        .map(|&(a, b, rule)| {
            clashing[a] = true;
            clashing[b] = true;
            Clash { usernames: [users[a].user_name.clone(), users[b].user_name.clone()], rule: rule.into() }
        })
        .collect();
    let mut needs_update = Vec::new();
    let mut plan = Vec::new();
    for (i, u) in users.iter().enumerate().filter(|(i, _)| needy[*i]) {
        let email = u.email.clone().unwrap_or_default();
        let reason = match mode {
            AuthMode::Basic => "active user whose email differs from the username",
            _ => "active IdP-login user whose email differs from the username",
        };
        needs_update.push(NeedsUpdate { username: u.user_name.clone(), email: email.clone(), reason: reason.into() });
        if !clashing[i] {
            plan.push((u.id.clone(), u.user_name.clone(), email));
        }
    }
    Analysis { report: Report { needs_update, clashes, applied: Vec::new() }, plan }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, email: Option<&str>, active: bool, auth_type: AuthType) -> Candidate {
        Candidate { id: format!("id-{name}"), user_name: name.into(), email: email.map(String::from), active, auth_type }
    }

    fn names(a: &Analysis) -> Vec<String> {
        a.report.needs_update.iter().map(|n| n.username.clone()).collect()
    }

    #[test]
    fn which_users_need_the_update_per_mode() {
        let users = [
            user("alice", Some("alice@x.com"), true, AuthType::Idp),
            user("bob", Some("bob@x.com"), true, AuthType::Basic),
            user("carol@x.com", Some("CAROL@x.com"), true, AuthType::Idp),
            user("dave", Some("dave@x.com"), false, AuthType::Idp),
            user("erin", None, true, AuthType::Idp),
        ];
        assert_eq!(names(&analyse(&users, AuthMode::Basic)), ["alice", "bob"]);
        assert_eq!(names(&analyse(&users, AuthMode::Idp)), ["alice"]);
        assert_eq!(names(&analyse(&users, AuthMode::Multi)), ["alice"]);
    }

    #[test]
    fn each_clash_shape() {
        let users = [
            // Rule 1: frank would become george's username.
            user("frank", Some("george"), true, AuthType::Idp),
            user("george", Some("george@x.com"), true, AuthType::Basic),
            // Rule 1 with only the second needing it: ivan's email is hank's username.
            user("hank", Some("hank@x.com"), true, AuthType::Idp),
            user("ivan", Some("hank"), false, AuthType::Idp),
            // Rule 2: both need it and share an email.
            user("jill", Some("shared@x.com"), true, AuthType::Idp),
            user("kate", Some("Shared@x.com"), true, AuthType::Idp),
            // No clash: an inactive user's matching email does not matter if neither changes.
            user("lena@x.com", Some("lena@x.com"), true, AuthType::Idp),
            user("mike", Some("mike@x.com"), true, AuthType::Idp),
        ];
        let a = analyse(&users, AuthMode::Multi);
        let clashes: Vec<(String, String, String)> =
            a.report.clashes.iter().map(|c| (c.usernames[0].clone(), c.usernames[1].clone(), c.rule.clone())).collect();
        assert_eq!(
            clashes,
            [
                ("frank".into(), "george".into(), "email_equals_username".into()),
                ("ivan".into(), "hank".into(), "email_equals_username".into()),
                ("jill".into(), "kate".into(), "same_email".into()),
            ]
        );
        let planned: Vec<&str> = a.plan.iter().map(|(_, old, _)| old.as_str()).collect();
        assert_eq!(planned, ["mike"], "only users in no clashing pair are applied");
    }

    #[test]
    fn report_json_shape() {
        let a = analyse(&[user("a", Some("a@x.com"), true, AuthType::Idp)], AuthMode::Idp);
        let json = serde_json::to_value(&a.report).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"needs_update": [{"username": "a", "email": "a@x.com", "reason": "active IdP-login user whose email differs from the username"}], "clashes": [], "applied": []})
        );
    }
}
