//! THE URL table: a request path parsed once into a `Route`. The router matches on the
//! route (and the method), metrics take their label from it, and Bulk parses its
//! operation paths with the same SCIM endpoint parser, so no second table can drift.
//!
//! Parsing never fails: what is not an endpoint is `Unknown` (404 after authentication
//! where a tenant is named, so unauthenticated callers cannot probe which paths exist).

use super::request::percent_decode;
use crate::scim::schema::ResourceKind;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/healthz`
    Healthz,
    /// `/t/{tenant}/…`: every such route is authenticated for its tenant first, in one
    /// place (the router's preamble), before its endpoint is looked at.
    Tenant { tenant: &'a str, endpoint: TenantEndpoint },
    /// No endpoint at all: 404 before any tenant is looked up.
    Unknown,
}

/// What a route under `/t/{tenant}` reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TenantEndpoint {
    /// `/t/{tenant}/events`
    Events,
    /// `/t/{tenant}/rest/token[/…]`
    Token(TokenEndpoint),
    /// `/t/{tenant}/scim/v2[/…]`
    Scim(ScimEndpoint),
}

impl TenantEndpoint {
    /// Which credentials the endpoint takes: the token API never a bearer token.
    pub fn api(&self) -> crate::auth::Api {
        match self {
            TenantEndpoint::Token(_) => crate::auth::Api::TokenApi,
            TenantEndpoint::Events | TenantEndpoint::Scim(_) => crate::auth::Api::Scim,
        }
    }
}

/// Under `/t/{tenant}/rest/token`. Segments are matched as sent (not percent-decoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenEndpoint {
    /// `/rest/token`
    Token,
    /// `/rest/token/current`
    Current,
    /// `/rest/token/apiKeygen`
    ApiKeygen,
    /// `/rest/token/deleteKey`
    DeleteKey,
    Unknown,
}

/// Under `/t/{tenant}/scim/v2`, after percent-decoding each segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScimEndpoint {
    /// `/scim/v2` itself: no endpoint, but its own metrics label.
    Root,
    ServiceProviderConfig,
    ResourceTypes,
    ResourceType(String),
    Schemas,
    Schema(String),
    /// A discovery endpoint with more segments than it has (`/Schemas/a/b`): 405, as
    /// discovery is read-only whatever follows.
    DiscoveryDeeper,
    /// `/.search` across resource types.
    Search,
    Bulk,
    /// The authenticated account's own User (RFC 7644 §3.11).
    Me,
    /// `/Users`, `/Groups`
    Collection(ResourceKind),
    /// `/Users/.search`, `/Groups/.search` (only POST searches; other methods treat
    /// `.search` as a resource id, as they always have).
    CollectionSearch(ResourceKind),
    /// `/Users/{id}`, `/Groups/{id}`
    Resource(ResourceKind, String),
    /// A segment whose percent-encoding is malformed: 404.
    Malformed,
    Unknown,
}

/// The non-empty path segments between the leading and trailing slashes.
pub fn segments(path: &str) -> Vec<&str> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    }
}

fn kind_of(segment: &str) -> Option<ResourceKind> {
    match segment {
        "Users" => Some(ResourceKind::User),
        "Groups" => Some(ResourceKind::Group),
        _ => None,
    }
}

impl<'a> Route<'a> {
    pub fn parse(path: &'a str) -> Route<'a> {
        match segments(path).as_slice() {
            ["healthz"] => Route::Healthz,
            ["t", tenant, "events"] => Route::Tenant { tenant, endpoint: TenantEndpoint::Events },
            ["t", tenant, "rest", "token", rest @ ..] => Route::Tenant { tenant, endpoint: TenantEndpoint::Token(TokenEndpoint::parse(rest)) },
            ["t", tenant, "scim", "v2", rest @ ..] => Route::Tenant { tenant, endpoint: TenantEndpoint::Scim(ScimEndpoint::parse_encoded(rest)) },
            _ => Route::Unknown,
        }
    }

    /// The route without ids or tenant names, so label values stay bounded.
    pub fn metrics_label(&self) -> &'static str {
        match self {
            Route::Healthz => "/healthz",
            Route::Tenant { endpoint: TenantEndpoint::Events, .. } => "/events",
            Route::Tenant { endpoint: TenantEndpoint::Token(endpoint), .. } => match endpoint {
                TokenEndpoint::Token => "/rest/token",
                TokenEndpoint::Current => "/rest/token/current",
                TokenEndpoint::ApiKeygen => "/rest/token/apiKeygen",
                TokenEndpoint::DeleteKey => "/rest/token/deleteKey",
                TokenEndpoint::Unknown => "other",
            },
            Route::Tenant { endpoint: TenantEndpoint::Scim(endpoint), .. } => endpoint.metrics_label(),
            Route::Unknown => "other",
        }
    }
}

impl TokenEndpoint {
    fn parse(rest: &[&str]) -> TokenEndpoint {
        match rest {
            [] => TokenEndpoint::Token,
            ["current"] => TokenEndpoint::Current,
            ["apiKeygen"] => TokenEndpoint::ApiKeygen,
            ["deleteKey"] => TokenEndpoint::DeleteKey,
            _ => TokenEndpoint::Unknown,
        }
    }
}

impl ScimEndpoint {
    /// Segments as they came in the URL: each is percent-decoded first.
    pub fn parse_encoded(rest: &[&str]) -> ScimEndpoint {
        let Some(decoded) = rest.iter().map(|s| percent_decode(s)).collect::<Option<Vec<String>>>() else {
            return ScimEndpoint::Malformed;
        };
        let decoded: Vec<&str> = decoded.iter().map(String::as_str).collect();
        ScimEndpoint::parse(&decoded)
    }

    /// Segments already decoded.
    pub fn parse(rest: &[&str]) -> ScimEndpoint {
        match rest {
            [] => ScimEndpoint::Root,
            ["ServiceProviderConfig"] => ScimEndpoint::ServiceProviderConfig,
            ["ResourceTypes"] => ScimEndpoint::ResourceTypes,
            ["ResourceTypes", name] => ScimEndpoint::ResourceType((*name).to_string()),
            ["Schemas"] => ScimEndpoint::Schemas,
            ["Schemas", urn] => ScimEndpoint::Schema((*urn).to_string()),
            ["ServiceProviderConfig" | "ResourceTypes" | "Schemas", ..] => ScimEndpoint::DiscoveryDeeper,
            [".search"] => ScimEndpoint::Search,
            ["Bulk"] => ScimEndpoint::Bulk,
            ["Me"] => ScimEndpoint::Me,
            [collection, tail @ ..] => match (kind_of(collection), tail) {
                (Some(kind), []) => ScimEndpoint::Collection(kind),
                (Some(kind), [".search"]) => ScimEndpoint::CollectionSearch(kind),
                (Some(kind), [id]) => ScimEndpoint::Resource(kind, (*id).to_string()),
                _ => ScimEndpoint::Unknown,
            },
        }
    }

    fn metrics_label(&self) -> &'static str {
        use ResourceKind::{Group, User};
        match self {
            ScimEndpoint::Root => "/scim/v2",
            ScimEndpoint::ServiceProviderConfig => "/scim/v2/ServiceProviderConfig",
            ScimEndpoint::ResourceTypes => "/scim/v2/ResourceTypes",
            ScimEndpoint::ResourceType(_) => "/scim/v2/ResourceTypes/{id}",
            ScimEndpoint::Schemas => "/scim/v2/Schemas",
            ScimEndpoint::Schema(_) => "/scim/v2/Schemas/{id}",
            ScimEndpoint::Search => "/scim/v2/.search",
            ScimEndpoint::Bulk => "/scim/v2/Bulk",
            ScimEndpoint::Me => "/scim/v2/Me",
            ScimEndpoint::Collection(User) => "/scim/v2/Users",
            ScimEndpoint::Collection(Group) => "/scim/v2/Groups",
            ScimEndpoint::CollectionSearch(User) => "/scim/v2/Users/.search",
            ScimEndpoint::CollectionSearch(Group) => "/scim/v2/Groups/.search",
            ScimEndpoint::Resource(User, _) => "/scim/v2/Users/{id}",
            ScimEndpoint::Resource(Group, _) => "/scim/v2/Groups/{id}",
            ScimEndpoint::DiscoveryDeeper | ScimEndpoint::Malformed | ScimEndpoint::Unknown => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ResourceKind::{Group, User};

    fn scim(endpoint: ScimEndpoint) -> Route<'static> {
        Route::Tenant { tenant: "acme", endpoint: TenantEndpoint::Scim(endpoint) }
    }

    #[test]
    fn every_path_parses_to_its_route_and_label() {
        let token = |endpoint| Route::Tenant { tenant: "acme", endpoint: TenantEndpoint::Token(endpoint) };
        let table: Vec<(&str, Route, &str)> = vec![
            ("/healthz", Route::Healthz, "/healthz"),
            ("/healthz/", Route::Healthz, "/healthz"),
            ("/t/acme/events", Route::Tenant { tenant: "acme", endpoint: TenantEndpoint::Events }, "/events"),
            ("/t/acme/rest/token", token(TokenEndpoint::Token), "/rest/token"),
            ("/t/acme/rest/token/current", token(TokenEndpoint::Current), "/rest/token/current"),
            ("/t/acme/rest/token/apiKeygen", token(TokenEndpoint::ApiKeygen), "/rest/token/apiKeygen"),
            ("/t/acme/rest/token/deleteKey", token(TokenEndpoint::DeleteKey), "/rest/token/deleteKey"),
            ("/t/acme/rest/token/other", token(TokenEndpoint::Unknown), "other"),
            ("/t/acme/rest/token/current/x", token(TokenEndpoint::Unknown), "other"),
            ("/t/acme/scim/v2", scim(ScimEndpoint::Root), "/scim/v2"),
            ("/t/acme/scim/v2/ServiceProviderConfig", scim(ScimEndpoint::ServiceProviderConfig), "/scim/v2/ServiceProviderConfig"),
            ("/t/acme/scim/v2/ResourceTypes", scim(ScimEndpoint::ResourceTypes), "/scim/v2/ResourceTypes"),
            ("/t/acme/scim/v2/ResourceTypes/User", scim(ScimEndpoint::ResourceType("User".into())), "/scim/v2/ResourceTypes/{id}"),
            ("/t/acme/scim/v2/Schemas", scim(ScimEndpoint::Schemas), "/scim/v2/Schemas"),
            ("/t/acme/scim/v2/Schemas/urn:x", scim(ScimEndpoint::Schema("urn:x".into())), "/scim/v2/Schemas/{id}"),
            ("/t/acme/scim/v2/Schemas/a/b", scim(ScimEndpoint::DiscoveryDeeper), "other"),
            ("/t/acme/scim/v2/ServiceProviderConfig/x", scim(ScimEndpoint::DiscoveryDeeper), "other"),
            ("/t/acme/scim/v2/.search", scim(ScimEndpoint::Search), "/scim/v2/.search"),
            ("/t/acme/scim/v2/Bulk", scim(ScimEndpoint::Bulk), "/scim/v2/Bulk"),
            ("/t/acme/scim/v2/Me", scim(ScimEndpoint::Me), "/scim/v2/Me"),
            ("/t/acme/scim/v2/Users", scim(ScimEndpoint::Collection(User)), "/scim/v2/Users"),
            ("/t/acme/scim/v2/Groups/", scim(ScimEndpoint::Collection(Group)), "/scim/v2/Groups"),
            ("/t/acme/scim/v2/Users/.search", scim(ScimEndpoint::CollectionSearch(User)), "/scim/v2/Users/.search"),
            ("/t/acme/scim/v2/Groups/.search", scim(ScimEndpoint::CollectionSearch(Group)), "/scim/v2/Groups/.search"),
            ("/t/acme/scim/v2/Users/42", scim(ScimEndpoint::Resource(User, "42".into())), "/scim/v2/Users/{id}"),
            ("/t/acme/scim/v2/Groups/42", scim(ScimEndpoint::Resource(Group, "42".into())), "/scim/v2/Groups/{id}"),
        ];
        for (path, route, label) in table {
            let parsed = Route::parse(path);
            assert_eq!(parsed, route, "{path}");
            assert_eq!(parsed.metrics_label(), label, "{path}");
        }
    }

    #[test]
    fn unknown_paths_are_unknown_and_labelled_other() {
        for path in ["", "/", "/metrics", "/t", "/t/acme", "/t/acme/events/x", "/t/acme/scim", "/t/acme/scim/v1/Users", "/healthz/x", "/x/acme/scim/v2/Users"] {
            assert_eq!(Route::parse(path), Route::Unknown, "{path}");
            assert_eq!(Route::parse(path).metrics_label(), "other", "{path}");
        }
        for path in ["/t/acme/scim/v2/Foo", "/t/acme/scim/v2/Users/1/2", "/t/acme/scim/v2/Bulk/x", "/t/acme/scim/v2/Me/x", "/t/acme/scim/v2//Users", "/t/acme/scim/v2/users"] {
            assert_eq!(Route::parse(path), scim(ScimEndpoint::Unknown), "{path}");
            assert_eq!(Route::parse(path).metrics_label(), "other", "{path}");
        }
    }

    #[test]
    fn scim_segments_are_percent_decoded_and_others_are_not() {
        assert_eq!(Route::parse("/t/acme/scim/v2/Users/a%20b"), scim(ScimEndpoint::Resource(User, "a b".into())));
        assert_eq!(Route::parse("/t/acme/scim/v2/Users/a%2Fb"), scim(ScimEndpoint::Resource(User, "a/b".into())));
        assert_eq!(Route::parse("/t/acme/scim/v2/%55sers"), scim(ScimEndpoint::Collection(User)));
        assert_eq!(Route::parse("/t/acme/scim/v2/Users/a+b"), scim(ScimEndpoint::Resource(User, "a+b".into())), "+ is not a space in a path");
        for bad in ["/t/acme/scim/v2/Users/%zz", "/t/acme/scim/v2/Users/%4", "/t/acme/scim/v2/%ff"] {
            assert_eq!(Route::parse(bad), scim(ScimEndpoint::Malformed), "{bad}");
            assert_eq!(Route::parse(bad).metrics_label(), "other", "{bad}");
        }
        // The tenant and token segments are matched as sent: TenantId::parse refuses `%`.
        assert_eq!(Route::parse("/t/a%2Fb/events"), Route::Tenant { tenant: "a%2Fb", endpoint: TenantEndpoint::Events });
        assert_eq!(Route::parse("/t/acme/rest/token/%63urrent").metrics_label(), "other");
    }
}
