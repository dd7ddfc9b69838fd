//! `CommandError`: why a command failed, in words for the operator at the terminal (main
//! prints it after `scimd: ` and exits 1). Each layer's error keeps its type up to here;
//! only the text is chosen here, so a cause is never flattened with `{:?}`.

use std::fmt;

use crate::auth::token::TokenError;
use crate::ops::maintenance::MaintenanceError;
use crate::store::StoreError;
use crate::tenant::keys::KeyError;
use crate::tenant::TenantId;

#[derive(Debug)]
pub enum CommandError {
    /// The tenant id on the command line is not a valid id.
    BadTenantId,
    /// A well-formed tenant id with no tenant directory (a typo is not silently created).
    NoSuchTenant(TenantId),
    Token(TokenError),
    Store(StoreError),
    /// A backup or restore that failed (`ops::maintenance`).
    Maintenance(MaintenanceError),
    Io(std::io::Error),
    /// A refusal or failure already worded for the operator (bad flag values, findings).
    Failed(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::BadTenantId => write!(f, "invalid tenant id"),
            CommandError::NoSuchTenant(id) => write!(f, "tenant {id} does not exist"),
            CommandError::Token(e) => match e {
                TokenError::NoKey => write!(f, "this tenant has no token signing key: run `scimd token keygen` first"),
                TokenError::LiveTokenExists { expires_at } => write!(
                    f,
                    "the account already has a live token (expires {expires_at}); use `scimd token rotate` or --revoke-existing"
                ),
                TokenError::NoLiveToken => write!(f, "the account has no live token"),
                TokenError::UnknownAccount(id) => write!(f, "account {id} not found"),
                TokenError::Key(why) => write!(f, "{why}"),
                TokenError::Store(e) => write!(f, "{e}"),
            },
            CommandError::Store(e) => write!(f, "{e}"),
            CommandError::Maintenance(e) => write!(f, "{e}"),
            CommandError::Io(e) => write!(f, "{e}"),
            CommandError::Failed(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for CommandError {}

impl From<TokenError> for CommandError {
    fn from(e: TokenError) -> Self {
        CommandError::Token(e)
    }
}
impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        CommandError::Store(e)
    }
}
impl From<MaintenanceError> for CommandError {
    fn from(e: MaintenanceError) -> Self {
        CommandError::Maintenance(e)
    }
}
/// A signing-key failure is a token failure: the key exists to sign tokens.
impl From<KeyError> for CommandError {
    fn from(e: KeyError) -> Self {
        CommandError::Token(TokenError::Key(e))
    }
}
impl From<std::io::Error> for CommandError {
    fn from(e: std::io::Error) -> Self {
        CommandError::Io(e)
    }
}
impl From<String> for CommandError {
    fn from(why: String) -> Self {
        CommandError::Failed(why)
    }
}
impl From<&str> for CommandError {
    fn from(why: &str) -> Self {
        CommandError::Failed(why.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each cause reads as a sentence, never as a Debug dump of an enum.
    #[test]
    fn causes_read_as_sentences() {
        let cases = [
            (CommandError::from(TokenError::NoKey), "this tenant has no token signing key: run `scimd token keygen` first"),
            (CommandError::from(TokenError::UnknownAccount("u1".into())), "account u1 not found"),
            (CommandError::NoSuchTenant(TenantId::parse("acme").unwrap()), "tenant acme does not exist"),
            (CommandError::from(StoreError::NotFound("user x".into())), "not found: user x"),
            (CommandError::from(MaintenanceError::NewerSchema(9)), "the backup is of schema version 9, newer than this scimd"),
            (CommandError::from(KeyError::NotPem), "not a PKCS#8 PEM private key"),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
            assert!(!e.to_string().contains('{') && !e.to_string().contains("Error"), "{e}");
        }
    }
}
