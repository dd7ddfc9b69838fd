//! The domain both `scim` and `store` depend on (lldap's shape, inside one crate): a
//! resource as stored, the schema URNs that name its parts, and what the userName = email
//! rules read, and the closed value sets (licence, role, ...) as enums that know their
//! stored TEXT (rusqlite's ToSql/FromSql, no queries). No HTTP, no SCIM wire format:
//! `store` imports this, never `scim` or `ops`. A list query crosses between them as a
//! `Predicate`: scim resolves the filter text against its attribute catalogue and checks
//! every literal's type; the store turns the result into SQL.

use serde_json::{Map, Value};

/// A resource's attributes as a canonical JSON document (the catalogue in
/// `scim::schema` says what may be in it).
pub type Attrs = Map<String, Value>;

/// A resource as the store returns it.
#[derive(Clone, Debug)]
pub struct StoredResource {
    pub id: String,
    pub attrs: Attrs,
    pub created: String,
    pub last_modified: String,
    pub version: i64,
}

impl StoredResource {
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }
}

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// scimd's own, read-only user attributes: licence and origin.
pub const SCIMD_SCHEMA: &str = "urn:scimd:params:scim:schemas:extension:2.0:User";

/// Whether a top-level key of a user's document holds custom attributes (tenant.toml's
/// `[[extension]]`): an extension URN that is not one of scimd's built-in schemas. The
/// store keeps these keys in `users.custom`; decoding keeps no other `urn:` keys.
pub fn is_custom_key(key: &str) -> bool {
    key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) && key != ENTERPRISE_SCHEMA && key != SCIMD_SCHEMA
}

/// A user's custom attributes as the store keeps them (`users.custom`: a JSON object of
/// extension objects), not parsed: a GET renders them from the text instead of building a
/// value per attribute and dropping it again.
#[derive(Clone, Debug)]
pub struct CustomText(pub String);

/// A JSON object's entries borrowed from its text, in order: nothing is allocated per
/// entry, a value stays text. `users.custom` holds objects that scimd wrote, so a lookup
/// is by exact key and no key repeats.
pub struct RawObject<'a>(Vec<(std::borrow::Cow<'a, str>, &'a serde_json::value::RawValue)>);

impl<'a> RawObject<'a> {
    /// `None` unless `text` is a JSON object.
    pub fn parse(text: &'a str) -> Option<RawObject<'a>> {
        serde_json::from_str(text).ok()
    }

    pub fn get(&self, key: &str) -> Option<&'a serde_json::value::RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

impl<'de> serde::Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A key borrowed from the text unless it has escapes.
        #[derive(serde::Deserialize)]
        struct Key<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RawObject<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((Key(k), v)) = map.next_entry::<Key<'de>, &'de serde_json::value::RawValue>()? {
                    entries.push((k, v));
                }
                Ok(RawObject(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// A user as the userName = email rules (`ops::sanitize`) see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub user_name: String,
    pub email: Option<String>,
    pub active: bool,
    pub auth_type: AuthType,
}

// ---- The typed domain: the closed value sets schema.sql's CHECKs allow. ----
// Each stores as the exact TEXT it always had (no migration). ToSql/FromSql live here,
// beside the type, so every layer shares one spelling; a stored value outside the set
// (only possible if the file was edited by hand) is a FromSql error, never a panic.

/// Defines a string-backed enum with `as_str`, `FromStr`, `Display`, serde and rusqlite
/// (`plain`: without rusqlite, for a value set that is never stored).
macro_rules! text_enum {
    (plain $(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant, in the order the schema lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored in the database and shown on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            // `pad`, not `write_str`: a table's `{:<14}` lines up a value as it did a String.
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { kind: stringify!($name), value: s.to_owned() }),
                }
            }
        }
    };
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        text_enum!(plain $(#[$doc])* $name { $($(#[$vdoc])* $variant => $text),+ });

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                v.as_str()?
                    .parse()
                    .map_err(|e: UnknownValue| rusqlite::types::FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

/// A string that is not one of an enum's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

impl std::fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} is not a valid {}", self.value, self.kind)
    }
}

impl std::error::Error for UnknownValue {}

text_enum! {
    /// A user's licence (`users.license`).
    License { Creator => "creator", CreatorFloat => "creator_float", None => "none" }
}

text_enum! {
    /// A user's role in the organisation (`users.role`).
    Role { User => "user", OrgAdmin => "org_admin" }
}

text_enum! {
    /// How a user signs in (`users.auth_type`).
    AuthType { Basic => "basic", Idp => "idp" }
}

text_enum! {
    /// Who owns a user or group (`users.managed_by`, `groups.managed_by`): the IdP over
    /// SCIM, or the operator locally.
    ManagedBy { Idp => "idp", Local => "local" }
}

text_enum! {
    /// A group's scope (`groups.scope`).
    GroupScope { Org => "org", Project => "project" }
}

text_enum! {
    /// Where a group membership came from (`group_members.source`).
    MembershipSource { Idp => "idp", Local => "local" }
}

text_enum! {
    plain
    /// How a tenant's users sign in, as the userName = email rules (`ops::sanitize`) read
    /// it: the operator says so (`scimd sanitize --auth-mode`); it is not stored.
    AuthMode {
        /// Local Basic-auth logins only: every active user is checked.
        Basic => "basic",
        /// IdP logins only.
        Idp => "idp",
        /// Both: only users who sign in through the IdP are checked.
        Multi => "multi",
    }
}

/// What a user is beyond its SCIM attributes (`store::users::origin_of`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub license: License,
    pub role: Role,
    pub auth_type: AuthType,
    pub managed_by: ManagedBy,
}

// ---- Queries: a filter resolved against the catalogue, for the store to compile. ----

/// The resource types scimd serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    User,
    Group,
}

/// What an attribute holds (RFC 7643 §2.3), as the catalogue in `scim::schema` declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Integer,
    DateTime,
    Reference,
    Binary,
    Complex,
}

/// A filter's comparison operators (RFC 7644 §3.4.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    /// `co`, `sw`, `ew`: a test on part of a string.
    pub fn is_substring(self) -> bool {
        matches!(self, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
    }
    /// `gt`, `ge`, `lt`, `le`.
    pub fn is_ordering(self) -> bool {
        matches!(self, CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le)
    }
}

/// An attribute path resolved against the catalogue, in its canonical spelling: the store
/// finds its column by these names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttrRef {
    /// `None` for core and common attributes, else the extension URN.
    pub extension: Option<&'static str>,
    pub attr: &'static str,
    pub sub: Option<&'static str>,
    /// The type of what is compared: the sub-attribute's when there is one.
    pub ty: AttrType,
    pub case_exact: bool,
    /// `attr` is multi-valued: a test on it holds when some value passes.
    pub multi: bool,
}

/// A comparison's right-hand side, already checked against the attribute's type by scim
/// (a dateTime arrives as canonical RFC 3339 text).
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    Text(String),
    Bool(bool),
    /// For an integer attribute (a custom one): compared as a number, not as text.
    Integer(i64),
    /// `eq null` / `ne null`: only those two operators reach the store with it.
    Null,
}

/// A filter, resolved and type-checked.
#[derive(Clone, Debug, PartialEq)]
pub enum Predicate {
    And(Box<Predicate>, Box<Predicate>),
    Or(Box<Predicate>, Box<Predicate>),
    Not(Box<Predicate>),
    Present(AttrRef),
    Compare(AttrRef, CompareOp, Operand),
    /// `attr[inner]`: some value of the multi-valued `attr` passes `inner`, whose
    /// attributes are `attr`'s sub-attributes.
    Any(AttrRef, Box<Predicate>),
}

/// `sortBy` and `sortOrder`, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SortKey {
    pub attr: AttrRef,
    pub descending: bool,
}

/// Why a tenant cannot do what was asked, for a cause that is the operator's to fix and
/// not the client's: the disk, the files, the database. A client is told which (503 with
/// `Retry-After`, never the internal detail); the operator sees it on `/metrics`, the
/// operator's `/healthz`, one rate-limited ERROR line and `scimd check` (issue 22).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// The filesystem is full (SQLITE_FULL, ENOSPC): writes fail, reads go on.
    DiskFull,
    /// The database, its directory or the filesystem is read-only.
    ReadOnly,
    /// The database file is damaged, truncated or not a database.
    Corrupt,
    /// The database is of a newer schema version than this binary (a downgrade).
    NewerSchema,
    /// The database cannot be opened for another reason (permissions, a missing directory).
    Unopenable,
    /// `tenant.toml` is missing, unreadable or invalid.
    Settings,
    /// The token signing key files are missing, unreadable or corrupt.
    SigningKey,
}

impl Fault {
    pub const ALL: [Fault; 7] =
        [Fault::DiskFull, Fault::ReadOnly, Fault::Corrupt, Fault::NewerSchema, Fault::Unopenable, Fault::Settings, Fault::SigningKey];

    /// The metric label and the operator's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::DiskFull => "disk_full",
            Fault::ReadOnly => "read_only",
            Fault::Corrupt => "corrupt",
            Fault::NewerSchema => "newer_schema",
            Fault::Unopenable => "unopenable",
            Fault::Settings => "settings",
            Fault::SigningKey => "signing_key",
        }
    }

    /// What the client is told: what is wrong, in words that name no file and no cause
    /// inside the server, and that a retry is the right move.
    pub fn client_detail(self) -> &'static str {
        match self {
            Fault::DiskFull => "this tenant's storage is full; nothing was changed; the operator has been alerted; retry later",
            Fault::ReadOnly => "this tenant's storage is read-only; nothing was changed; the operator has been alerted; retry later",
            Fault::Corrupt | Fault::NewerSchema | Fault::Unopenable => {
                "this tenant's database cannot be used; nothing was changed; the operator has been alerted; retry later"
            }
            Fault::Settings => "this tenant's settings cannot be read; nothing was changed; the operator has been alerted; retry later",
            Fault::SigningKey => "this tenant's token signing key cannot be read; the operator has been alerted; retry later",
        }
    }

    /// Seconds a client should wait before retrying (`Retry-After`): a full disk is
    /// usually freed within minutes; a damaged database needs a restore.
    pub fn retry_after_secs(self) -> u32 {
        match self {
            Fault::DiskFull | Fault::ReadOnly | Fault::SigningKey | Fault::Settings => 60,
            Fault::Corrupt | Fault::NewerSchema | Fault::Unopenable => 300,
        }
    }

    /// A fault a successful write proves gone; the others go when the tenant opens (or
    /// its settings or key load) again.
    pub fn cleared_by_write(self) -> bool {
        matches!(self, Fault::DiskFull | Fault::ReadOnly | Fault::Unopenable)
    }

    /// What the operator should do, for the health detail and `scimd check`.
    pub fn hint(self) -> &'static str {
        match self {
            Fault::DiskFull => "free space on the data directory's filesystem; writes resume by themselves",
            Fault::ReadOnly => "make the data directory writable again (remount, permissions); writes resume by themselves",
            Fault::Corrupt => "restore the tenant from a backup (scimd restore) or its replica (scimd replication restore)",
            Fault::NewerSchema => "run the scimd that wrote this database, or restore it from a backup",
            Fault::Unopenable => "check the tenant directory's ownership and permissions (scimd check)",
            Fault::Settings => "restore tenant.toml (scimd check names the problem), then systemctl reload scimd",
            Fault::SigningKey => "restore the key files; tokens are verified with the database's copy meanwhile",
        }
    }
}
