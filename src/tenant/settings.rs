//! A tenant's settings: `tenant.toml` as parsed and validated (`TenantSettings`), the
//! policies and mapping rules it declares, and the text a new tenant's file starts with.
//! Only `tenant.rs` reads or writes the file; this is what it means.

use std::path::Path;

pub use super::extensions::*;

/// What `DELETE /Users/{id}` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteMode {
    /// Deactivate and hide; keep the row, its history and memberships.
    Soft,
    /// Remove the row (the events table still records what was deleted).
    Hard,
}

/// What POST /Groups does when the displayName names an existing org-level group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupConflict {
    /// Link to it: the IdP manages it from now on, it keeps its members (201, existing id).
    Link,
    /// RFC 7644's answer: 409 uniqueness.
    Reject,
}

/// How closely the tenant holds requests to RFC 7643/7644 (`scim::dialect` lists each
/// tolerance and what the strict profile answers instead).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// What Okta and Entra send is accepted (the default).
    #[default]
    Idp,
    /// Every tolerance refused as the RFCs say: for developers testing their own client.
    Strict,
}

/// `[mapping]`: what scimd does to a user's values before it stores them, in this order:
/// copy, trim, lower-case, derive `displayName`. Attribute paths as in a SCIM filter
/// (`userName`, `name.givenName`, `emails.value`, `urn:…:employeeNumber`); `scim::mapping`
/// resolves them against the catalogue (`scimd check` names one that resolves to nothing).
/// Declarative only: no rule runs code.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MappingConfig {
    /// Attributes whose string values lose surrounding whitespace (`"*"`: every string).
    pub trim: Vec<String>,
    /// Attributes whose string values are lower-cased.
    pub lowercase: Vec<String>,
    /// Values copied from one attribute to another.
    pub copy: Vec<CopyRule>,
    /// `displayName` from `name.formatted`, else `name.givenName name.familyName`, when the
    /// IdP sends none.
    pub display_name_from_name: bool,
}

/// `[[mapping.copy]]`: `to` gets `from`'s value (of a multi-valued attribute, the primary
/// one, else the first); `when = "absent"` (the default) only when `to` has none.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyRule {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub when: CopyWhen,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyWhen {
    #[default]
    Absent,
    Always,
}

impl MappingConfig {
    fn checked(self) -> Result<MappingConfig, String> {
        let paths = self.trim.iter().chain(&self.lowercase).chain(self.copy.iter().flat_map(|c| [&c.from, &c.to]));
        if let Some(bad) = paths.into_iter().find(|p| p.is_empty() || p.len() > 200 || p.chars().any(|c| c.is_whitespace() || c.is_control())) {
            return Err(format!("mapping: {bad:?} is not an attribute path"));
        }
        if self.trim.len() + self.lowercase.len() + self.copy.len() > 64 {
            return Err("mapping: at most 64 rules".into());
        }
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        *self == MappingConfig::default()
    }
}

/// Group-membership policies: regular expressions on group names (`always_assign` holds
/// plain group names).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub only_assign: Vec<String>,
    pub never_assign: Vec<String>,
    /// A user the IdP manages who leaves every group matching these is deactivated (and
    /// reactivated when they join one again): re:solution's "required groups".
    pub required_groups: Vec<String>,
    pub always_assign: Vec<String>,
    pub never_remove: Vec<String>,
}

/// Compiled policies.
#[derive(Clone, Debug, Default)]
pub struct Policies {
    only_assign: Vec<regex::Regex>,
    never_assign: Vec<regex::Regex>,
    pub always_assign: Vec<String>,
    never_remove: Vec<regex::Regex>,
    required_groups: Vec<regex::Regex>,
}

fn full_match(patterns: &[String], key: &str) -> Result<Vec<regex::Regex>, String> {
    patterns
        .iter()
        .map(|p| regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| format!("policies.{key}: invalid pattern {p:?}: {e}")))
        .collect()
}

impl Policies {
    fn compile(c: &PolicyConfig) -> Result<Policies, String> {
        Ok(Policies {
            only_assign: full_match(&c.only_assign, "only_assign")?,
            never_assign: full_match(&c.never_assign, "never_assign")?,
            always_assign: c.always_assign.clone(),
            never_remove: full_match(&c.never_remove, "never_remove")?,
            // Group names compare case-insensitively everywhere else ("sales" is "Sales"):
            // a rename that only changes case must not take everyone's access away.
            required_groups: full_match(&c.required_groups.iter().map(|p| format!("(?i:{p})")).collect::<Vec<_>>(), "required_groups")?,
        })
    }

    /// Whether the tenant has a `required_groups` policy.
    pub fn requires_groups(&self) -> bool {
        !self.required_groups.is_empty()
    }

    /// Whether membership of the group named `group_name` keeps a user's access.
    pub fn grants_access(&self, group_name: &str) -> bool {
        let name = group_name.split_whitespace().collect::<Vec<_>>().join(" ");
        self.required_groups.iter().any(|r| r.is_match(&name))
    }

    /// Why a group with this name does not take effect, if it does not.
    pub fn ignore_reason(&self, group_name: &str) -> Option<String> {
        if !self.only_assign.is_empty() && !self.only_assign.iter().any(|r| r.is_match(group_name)) {
            return Some("matches no only_assign policy".into());
        }
        self.never_assign
            .iter()
            .find(|r| r.is_match(group_name))
            .map(|r| format!("matches never_assign policy {}", r.as_str()))
    }

    pub fn never_remove(&self, group_name: &str) -> bool {
        self.never_remove.iter().any(|r| r.is_match(group_name))
    }
}

/// Per-tenant settings from `tenant.toml`; every key is optional.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTenantSettings {
    token_lifetime_days: u32,
    token_warn_days: u32,
    delete_mode: DeleteMode,
    require_username_is_email: bool,
    group_conflict: GroupConflict,
    creator: u32,
    creator_float: u32,
    dialect: Dialect,
    policies: PolicyConfig,
    mapping: MappingConfig,
    extension: Vec<ExtensionConfig>,
}

impl Default for RawTenantSettings {
    fn default() -> Self {
        RawTenantSettings {
            token_lifetime_days: 182,
            token_warn_days: 30,
            delete_mode: DeleteMode::Soft,
            require_username_is_email: true,
            group_conflict: GroupConflict::Link,
            creator: 50,
            creator_float: 500,
            dialect: Dialect::Idp,
            policies: PolicyConfig::default(),
            mapping: MappingConfig::default(),
            extension: Vec::new(),
        }
    }
}

/// Validated tenant settings.
#[derive(Clone, Debug)]
pub struct TenantSettings {
    /// How long a bearer token lives.
    pub token_lifetime_days: u32,
    /// From how many days before expiry the server warns.
    pub token_warn_days: u32,
    pub delete_mode: DeleteMode,
    pub require_username_is_email: bool,
    pub group_conflict: GroupConflict,
    /// Named Creator seats.
    pub creator: u32,
    /// Creator Float seats.
    pub creator_float: u32,
    pub dialect: Dialect,
    pub policies: Policies,
    /// Transformations of incoming user values before they are stored (`scim::mapping`).
    pub mapping: MappingConfig,
    /// Custom user attributes (`[[extension]]`), checked; `scim::schema` catalogues them.
    pub extensions: std::sync::Arc<[ExtensionConfig]>,
    /// `scim::schema`'s catalogue entries for `extensions`, made on first use.
    pub catalogue: CatalogueSlot,
}

impl Default for TenantSettings {
    fn default() -> Self {
        TenantSettings::from_raw(RawTenantSettings::default()).expect("defaults are valid")
    }
}

impl TenantSettings {
    fn from_raw(raw: RawTenantSettings) -> Result<TenantSettings, String> {
        if raw.token_lifetime_days == 0 {
            return Err("token_lifetime_days must be at least 1".into());
        }
        Ok(TenantSettings {
            token_lifetime_days: raw.token_lifetime_days,
            token_warn_days: raw.token_warn_days,
            delete_mode: raw.delete_mode,
            require_username_is_email: raw.require_username_is_email,
            group_conflict: raw.group_conflict,
            creator: raw.creator,
            creator_float: raw.creator_float,
            dialect: raw.dialect,
            policies: Policies::compile(&raw.policies)?,
            mapping: raw.mapping.checked()?,
            extensions: checked(raw.extension)?.into(),
            catalogue: CatalogueSlot::default(),
        })
    }

    pub fn parse(text: &str) -> Result<TenantSettings, String> {
        let raw: RawTenantSettings = toml::from_str(text).map_err(|e| e.to_string())?;
        TenantSettings::from_raw(raw)
    }

    pub fn load(path: &Path) -> Result<TenantSettings, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => TenantSettings::parse(&text).map_err(|e| format!("invalid {}: {e}", path.display())),
            // Every tenant scimd makes has one: a missing file was lost, and its defaults
            // (seats, delete mode, policies) are not what the operator chose.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!("{} is missing", path.display())),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}

/// The demo tenant's `tenant.toml`: the defaults with `require_username_is_email` off,
/// and a comment saying why.
pub(super) fn demo_settings_text() -> String {
    default_settings_text(50, 500).replace(
        "require_username_is_email = true",
        "# The demo relaxes this so generic SCIM test tools (random userNames) can run.\nrequire_username_is_email = false",
    )
}

/// The `tenant.toml` a new tenant starts with: every setting, its default, and why.
pub fn default_settings_text(creator: u32, creator_float: u32) -> String {
    format!(
        r#"# scimd tenant settings. Edit, then send the server SIGHUP (systemctl reload scimd).

# DELETE /Users/{{id}}: "soft" deactivates and hides the user but keeps the row, its history
# and memberships (a later POST of the same userName restores it); "hard" removes the row.
delete_mode = "soft"

# Refuse a user whose userName is not its primary (else work, else first) email.
require_username_is_email = true

# POST /Groups naming an existing org-level group: "link" to it (201, existing id, members
# kept) or "reject" with 409 as RFC 7644 does.
group_conflict = "link"

# Licence seats: SCIM-created users get Creator while one is free, then Creator Float.
creator = {creator}
creator_float = {creator_float}

# "idp" accepts what Okta and Entra send beyond RFC 7643/7644 (string booleans, capitalised
# PATCH ops, unknown group members skipped, …); "strict" refuses each as the RFCs say, for
# testing your own SCIM client. The README's "Dialects" table lists every difference.
dialect = "idp"

# Bearer tokens.
token_lifetime_days = 182
token_warn_days = 30

[policies]
# Regular expressions on group names (whole-name match).
only_assign = []     # e.g. ["app-.*"]: only these groups take effect
never_assign = []    # e.g. ["Domain Users"]: these never take effect
always_assign = []   # e.g. ["Everyone"]: every SCIM-provisioned user joins these groups
never_remove = []    # e.g. ["Auditors"]: SCIM never removes members from these
required_groups = [] # e.g. ["Tableau Users", "Sales-.*"]: a user the IdP manages who leaves
                     # every one of these is deactivated (seat freed), and reactivated on rejoining
"#
    )
}

