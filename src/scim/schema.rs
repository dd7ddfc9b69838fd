//! The attribute catalogue: every attribute scimd stores, with its RFC 7643 characteristics.
//!
//! This table is the single source for `/Schemas`, for decoding request bodies
//! (case-insensitive names, type coercion, read-only attributes dropped), for
//! `attributes`/`excludedAttributes` projection and for resolving filter paths. What is
//! advertised here is exactly what is stored and returned: strict clients (scim2-tester)
//! round-trip every advertised attribute.

pub use crate::model::{is_custom_key, AttrType, ResourceKind, ENTERPRISE_SCHEMA, GROUP_SCHEMA, SCIMD_SCHEMA, USER_SCHEMA};
pub mod custom;

pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutability {
    ReadWrite,
    ReadOnly,
    Immutable,
    WriteOnly,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returned {
    Default,
    Always,
    Never,
    Request,
}

#[derive(Debug)]
pub struct AttrDef {
    pub name: &'static str,
    pub ty: AttrType,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub unique_server: bool,
    pub canonical: &'static [&'static str],
    pub ref_types: &'static [&'static str],
    pub sub: &'static [AttrDef],
    pub description: &'static str,
}

impl AttrDef {
    pub(super) const fn new(name: &'static str, ty: AttrType, description: &'static str) -> AttrDef {
        AttrDef {
            name,
            ty,
            multi: false,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            unique_server: false,
            canonical: &[],
            ref_types: &[],
            sub: &[],
            description,
        }
    }
    pub(super) const fn multi(mut self) -> Self {
        self.multi = true;
        self
    }
    pub(super) const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub(super) const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    const fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    const fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    pub(super) const fn unique(mut self) -> Self {
        self.unique_server = true;
        self
    }
    const fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical = values;
        self
    }
    pub(super) const fn refs(mut self, types: &'static [&'static str]) -> Self {
        self.ref_types = types;
        self
    }
    const fn sub(mut self, sub: &'static [AttrDef]) -> Self {
        self.sub = sub;
        self
    }

    pub fn is_read_only(&self) -> bool {
        self.mutability == Mutability::ReadOnly
    }

    /// Finds a sub-attribute by name, case-insensitively.
    pub fn sub_attr(&self, name: &str) -> Option<&'static AttrDef> {
        self.sub.iter().find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

const fn string(name: &'static str, description: &'static str) -> AttrDef {
    AttrDef::new(name, AttrType::String, description)
}
const fn boolean(name: &'static str, description: &'static str) -> AttrDef {
    AttrDef::new(name, AttrType::Boolean, description)
}
const fn reference(name: &'static str, description: &'static str) -> AttrDef {
    AttrDef::new(name, AttrType::Reference, description)
}
const fn complex(name: &'static str, description: &'static str) -> AttrDef {
    AttrDef::new(name, AttrType::Complex, description)
}

/// The value/display/type/primary shape shared by most multi-valued user attributes.
macro_rules! plural_sub {
    ($value:expr, [$($canonical:expr),*]) => {
        &[
            $value,
            string("display", "A human-readable name, primarily used for display purposes."),
            string("type", "A label indicating the attribute's function.").canonical(&[$($canonical),*]),
            boolean("primary", "Indicates the 'primary' or preferred attribute value."),
        ]
    };
}

pub static USER_ATTRS: &[AttrDef] = &[
    string("userName", "Unique identifier for the User, typically used to authenticate. Equals the email in most tenants.")
        .required()
        .unique(),
    complex("name", "The components of the user's real name.").sub(&[
        string("formatted", "The full name, formatted for display."),
        string("familyName", "The family name of the User."),
        string("givenName", "The given name of the User."),
        string("middleName", "The middle name(s) of the User."),
        string("honorificPrefix", "The honorific prefix(es) of the User."),
        string("honorificSuffix", "The honorific suffix(es) of the User."),
    ]),
    string("displayName", "The name of the User, suitable for display to end-users."),
    string("nickName", "The casual way to address the user."),
    reference("profileUrl", "A fully qualified URL pointing to a page representing the User's online profile.").refs(&["external"]),
    string("title", "The user's title, such as \"Vice President\"."),
    string("userType", "Used to identify the relationship between the organization and the user."),
    string("preferredLanguage", "The User's preferred written or spoken language."),
    string("locale", "Used to indicate the User's default location."),
    string("timezone", "The User's time zone in the Olson database format."),
    boolean("active", "A Boolean value indicating the User's administrative status."),
    string("password", "The User's cleartext password. Accepted and never stored nor returned.")
        .mutability(Mutability::WriteOnly)
        .returned(Returned::Never),
    complex("emails", "Email addresses for the user.")
        .multi()
        .sub(plural_sub!(string("value", "Email address for the user."), ["work", "home", "other"])),
    complex("phoneNumbers", "Phone numbers for the User.")
        .multi()
        .sub(plural_sub!(string("value", "Phone number of the User."), ["work", "home", "mobile", "fax", "pager", "other"])),
    complex("ims", "Instant messaging addresses for the User.")
        .multi()
        .sub(plural_sub!(string("value", "Instant messaging address for the User."), ["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"])),
    complex("photos", "URLs of photos of the User.")
        .multi()
        .sub(plural_sub!(reference("value", "URL of a photo of the User.").refs(&["external"]), ["photo", "thumbnail"])),
    complex("addresses", "A physical mailing address for this User.").multi().sub(&[
        string("formatted", "The full mailing address, formatted for display."),
        string("streetAddress", "The full street address component."),
        string("locality", "The city or locality component."),
        string("region", "The state or region component."),
        string("postalCode", "The zip code or postal code component."),
        string("country", "The country name component."),
        string("type", "A label indicating the attribute's function.").canonical(&["work", "home", "other"]),
        boolean("primary", "Indicates the 'primary' or preferred attribute value."),
    ]),
    complex("groups", "A list of groups to which the user belongs (read-only, computed).")
        .multi()
        .mutability(Mutability::ReadOnly)
        .sub(&[
            string("value", "The identifier of the User's group.").mutability(Mutability::ReadOnly),
            reference("$ref", "The URI of the corresponding 'Group' resource.")
                .refs(&["Group"])
                .mutability(Mutability::ReadOnly),
            string("display", "A human-readable name of the group.").mutability(Mutability::ReadOnly),
            string("type", "How the membership was derived.")
                .canonical(&["direct", "indirect"])
                .mutability(Mutability::ReadOnly),
        ]),
    complex("entitlements", "A list of entitlements for the User.")
        .multi()
        .sub(plural_sub!(string("value", "The value of an entitlement."), [])),
    complex("roles", "A list of roles for the User.")
        .multi()
        .sub(plural_sub!(string("value", "The value of a role."), [])),
    complex("x509Certificates", "A list of certificates issued to the User.")
        .multi()
        .sub(plural_sub!(AttrDef::new("value", AttrType::Binary, "The value of an X.509 certificate."), [])),
];

pub static ENTERPRISE_ATTRS: &[AttrDef] = &[
    string("employeeNumber", "Numeric or alphanumeric identifier assigned to a person."),
    string("costCenter", "Identifies the name of a cost center."),
    string("organization", "Identifies the name of an organization."),
    string("division", "Identifies the name of a division."),
    string("department", "Identifies the name of a department."),
    complex("manager", "The User's manager.").sub(&[
        string("value", "The id of the SCIM resource representing the User's manager."),
        reference("$ref", "The URI of the SCIM resource representing the User's manager.").refs(&["User"]),
        string("displayName", "The displayName of the User's manager (read-only).").mutability(Mutability::ReadOnly),
    ]),
];

pub static SCIMD_ATTRS: &[AttrDef] = &[
    string("license", "The user's licence: creator, creator_float or none. Set by scimd (seat availability) and the operator.")
        .mutability(Mutability::ReadOnly)
        .canonical(&["creator", "creator_float", "none"]),
    string("authenticationType", "How the user signs in: idp (through the identity provider) or basic (a local password).")
        .mutability(Mutability::ReadOnly)
        .canonical(&["idp", "basic"]),
    string("managedBy", "Who manages the user: idp, or local (made by the operator and not yet adopted by the IdP).")
        .mutability(Mutability::ReadOnly)
        .canonical(&["idp", "local"]),
];

pub static GROUP_ATTRS: &[AttrDef] = &[
    string("displayName", "A human-readable name for the Group.").required().unique(),
    complex("members", "A list of members of the Group.").multi().sub(&[
        string("value", "Identifier of the member of this Group.").mutability(Mutability::Immutable),
        reference("$ref", "The URI corresponding to a SCIM resource that is a member of this Group.")
            .refs(&["User", "Group"])
            .mutability(Mutability::Immutable),
        string("type", "A label indicating the type of resource, e.g., 'User' or 'Group'.")
            .canonical(&["User", "Group"])
            .mutability(Mutability::Immutable),
    ]),
];

/// Attributes every resource has (RFC 7643 §3.1); they are not part of any schema's list.
pub static COMMON_ID: AttrDef = string("id", "Unique identifier for the SCIM resource.")
    .case_exact()
    .mutability(Mutability::ReadOnly)
    .returned(Returned::Always)
    .unique();
pub static COMMON_EXTERNAL_ID: AttrDef = string("externalId", "Identifier as defined by the provisioning client.").case_exact();

/// What the catalogue says about each resource type (the type itself is the model's).
impl ResourceKind {
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }
    pub fn core_schema(self) -> &'static str {
        match self {
            ResourceKind::User => USER_SCHEMA,
            ResourceKind::Group => GROUP_SCHEMA,
        }
    }
    pub fn core_attrs(self) -> &'static [AttrDef] {
        match self {
            ResourceKind::User => USER_ATTRS,
            ResourceKind::Group => GROUP_ATTRS,
        }
    }
    /// Extension schemas: (urn, attributes, required).
    pub fn extensions(self) -> &'static [(&'static str, &'static [AttrDef])] {
        static USER_EXTENSIONS: &[(&str, &[AttrDef])] = &[(ENTERPRISE_SCHEMA, ENTERPRISE_ATTRS), (SCIMD_SCHEMA, SCIMD_ATTRS)];
        match self {
            ResourceKind::User => USER_EXTENSIONS,
            ResourceKind::Group => &[],
        }
    }
}

/// An attribute path resolved against the catalogue, in canonical spelling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedPath {
    /// `None` for core attributes (and `id`, `externalId`, `meta`), else the extension URN.
    pub extension: Option<&'static str>,
    pub attr: &'static AttrDef,
    pub sub: Option<&'static AttrDef>,
}

impl ResolvedPath {
    /// The path as the store sees it.
    pub fn to_ref(&self) -> crate::model::AttrRef {
        let leaf = self.sub.unwrap_or(self.attr);
        crate::model::AttrRef {
            extension: self.extension,
            attr: self.attr.name,
            sub: self.sub.map(|s| s.name),
            ty: leaf.ty,
            case_exact: leaf.case_exact,
            multi: self.attr.multi,
        }
    }
}

impl PartialEq for AttrDef {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}
impl Eq for AttrDef {}

pub static META: AttrDef = complex("meta", "Resource metadata.").mutability(Mutability::ReadOnly).sub(&[
    string("resourceType", "The name of the resource type.").mutability(Mutability::ReadOnly),
    AttrDef::new("created", AttrType::DateTime, "When the resource was added.").mutability(Mutability::ReadOnly),
    AttrDef::new("lastModified", AttrType::DateTime, "When the resource was last updated.").mutability(Mutability::ReadOnly),
    reference("location", "The URI of the resource.").mutability(Mutability::ReadOnly),
    string("version", "The version (weak ETag) of the resource.").mutability(Mutability::ReadOnly).case_exact(),
]);

/// What a tenant's requests are resolved against: a resource type's attributes, its
/// built-in extensions and, for users, the tenant's custom extensions (`[[extension]]` in
/// tenant.toml). Copy: the custom entries are interned (`custom::intern`), so a catalogue
/// is two words and its paths are `'static` like the built-in ones.
#[derive(Clone, Copy, Debug)]
pub struct Catalogue {
    pub kind: ResourceKind,
    custom: &'static [custom::Extension],
}

impl Catalogue {
    /// The built-in attributes only (groups, commands that do not serve a tenant's IdP).
    pub const fn plain(kind: ResourceKind) -> Catalogue {
        Catalogue { kind, custom: &[] }
    }

    /// `kind` as this tenant's settings declare it.
    pub fn of(kind: ResourceKind, settings: &crate::tenant::TenantSettings) -> Catalogue {
        match kind {
            ResourceKind::User if !settings.extensions.is_empty() => {
                // Interned once per settings object (a load or reload), then kept with it.
                let custom = settings.catalogue.get_or_init(|| custom::intern(&settings.extensions)).unwrap_or_default();
                Catalogue { kind, custom }
            }
            _ => Catalogue::plain(kind),
        }
    }

    /// Every extension schema: (urn, attributes), the built-in ones first.
    pub fn extensions(self) -> impl Iterator<Item = (&'static str, &'static [AttrDef])> {
        self.kind.extensions().iter().copied().chain(self.custom.iter().map(|e| (e.urn, e.attrs)))
    }

    /// The tenant's custom extensions.
    pub fn custom(self) -> &'static [custom::Extension] {
        self.custom
    }

    /// Whether `urn` is one of the tenant's custom extensions (exact, canonical spelling).
    pub fn is_custom(self, urn: &str) -> bool {
        self.custom.iter().any(|e| e.urn == urn)
    }
}

/// Resolves `attr`, `attr.sub`, `urn:…:attr` and `urn:…:attr.sub` case-insensitively.
pub fn resolve_path(cat: Catalogue, path: &str) -> Option<ResolvedPath> {
    let (extension, rest) = split_urn(cat, path)?;
    let (attr_name, sub_name) = match rest.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (rest, None),
    };
    let attr: &'static AttrDef = match extension {
        Some(urn) => {
            let attrs = cat.extensions().find(|(u, _)| *u == urn)?.1;
            attrs.iter().find(|a| a.name.eq_ignore_ascii_case(attr_name))?
        }
        None => find_core(cat.kind, attr_name)?,
    };
    let sub = match sub_name {
        Some(s) => Some(attr.sub_attr(s)?),
        None => None,
    };
    Some(ResolvedPath { extension, attr, sub })
}

/// `path` (`attr` or `attr.sub`) inside the extension `urn` (with its `attrs`) already
/// found: what `resolve_path(cat, "{urn}:{path}")` gives, without building that text or
/// finding the extension again (decoding does this for every attribute of an extension
/// object).
pub fn resolve_in_extension(urn: &'static str, attrs: &'static [AttrDef], path: &str) -> Option<ResolvedPath> {
    let (attr_name, sub_name) = match path.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (path, None),
    };
    let attr: &'static AttrDef = attrs.iter().find(|a| a.name.eq_ignore_ascii_case(attr_name))?;
    let sub = match sub_name {
        Some(s) => Some(attr.sub_attr(s)?),
        None => None,
    };
    Some(ResolvedPath { extension: Some(urn), attr, sub })
}

/// Core attribute lookup including the common attributes.
pub fn find_core(kind: ResourceKind, name: &str) -> Option<&'static AttrDef> {
    for common in [&COMMON_ID, &COMMON_EXTERNAL_ID, &META] {
        if common.name.eq_ignore_ascii_case(name) {
            return Some(common);
        }
    }
    kind.core_attrs().iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Splits a schema URN prefix off a path. Returns the canonical extension URN (or `None`
/// for the core schema) and the remainder. A path that names only an extension URN
/// yields an empty remainder.
fn split_urn(cat: Catalogue, path: &str) -> Option<(Option<&'static str>, &str)> {
    if !path.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) {
        return Some((None, path));
    }
    let core = cat.kind.core_schema();
    if let Some(rest) = strip_prefix_ci(path, core).and_then(|r| r.strip_prefix(':')) {
        return Some((None, rest));
    }
    for (urn, _) in cat.extensions() {
        if let Some(rest) = strip_prefix_ci(path, urn) {
            match rest.strip_prefix(':') {
                Some(r) => return Some((Some(urn), r)),
                None if rest.is_empty() => return Some((Some(urn), "")),
                // Another URN that starts with this one's text (tenant.toml refuses
                // overlapping URNs, so only a longer unrelated one): keep looking.
                None => {}
            }
        }
    }
    None
}

pub fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// The extension URN a top-level JSON key names, if any (case-insensitive).
pub fn extension_urn(cat: Catalogue, key: &str) -> Option<&'static str> {
    extension(cat, key).map(|(urn, _)| urn)
}

/// The extension a top-level JSON key names, with its attributes (case-insensitive).
pub fn extension(cat: Catalogue, key: &str) -> Option<(&'static str, &'static [AttrDef])> {
    cat.extensions().find(|(urn, _)| urn.eq_ignore_ascii_case(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AuthType, License, ManagedBy};

    /// The canonical values `/Schemas` advertises for scimd's attributes are the domain
    /// enums' stored values (as sets: the advertised order is the wire's own).
    #[test]
    fn scimd_canonical_values_are_the_domain_enums() {
        let advertised = |name: &str| {
            let mut values = SCIMD_ATTRS.iter().find(|a| a.name == name).map(|a| a.canonical.to_vec()).unwrap_or_default();
            values.sort_unstable();
            values
        };
        let stored = |mut values: Vec<&'static str>| {
            values.sort_unstable();
            values
        };
        assert_eq!(advertised("license"), stored(License::ALL.iter().map(|v| v.as_str()).collect()));
        assert_eq!(advertised("authenticationType"), stored(AuthType::ALL.iter().map(|v| v.as_str()).collect()));
        assert_eq!(advertised("managedBy"), stored(ManagedBy::ALL.iter().map(|v| v.as_str()).collect()));
    }
}
