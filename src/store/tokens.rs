//! SQL for bearer-token records and API clients. Token text is never stored: a row says
//! which token id is the account's current one, until when, and whether it was revoked.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreResult;

#[derive(Clone, Debug)]
pub struct TokenRecord {
    pub token_id: String,
    pub user_id: String,
    pub user_name: String,
    pub issued_at: String,
    pub expires_at: String,
    pub last_warned: Option<String>,
}

const LIVE: &str = "SELECT t.token_id, t.user_id, coalesce(u.user_name, '(deleted account)'), t.issued_at, t.expires_at, t.last_warned
     FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id
     WHERE t.revoked_at IS NULL AND t.expires_at > ?";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        token_id: r.get(0)?,
        user_id: r.get(1)?,
        user_name: r.get(2)?,
        issued_at: r.get(3)?,
        expires_at: r.get(4)?,
        last_warned: r.get(5)?,
    })
}

/// The account's live (unrevoked, unexpired) token, if any.
pub fn live_for(conn: &Connection, user_id: &str, now: &str) -> StoreResult<Option<TokenRecord>> {
    Ok(conn.prepare_cached(&format!("{LIVE} AND t.user_id = ?"))?.query_row(params![now, user_id], record).optional()?)
}

/// Every live token of the tenant, soonest expiry first.
pub fn live(conn: &Connection, now: &str) -> StoreResult<Vec<TokenRecord>> {
    let mut stmt = conn.prepare_cached(&format!("{LIVE} ORDER BY t.expires_at"))?;
    let rows = stmt.query_map([now], record)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Whether `token_id` is `user_id`'s current token at `now`.
pub fn is_current(conn: &Connection, token_id: &str, user_id: &str, now: &str) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM api_tokens WHERE token_id = ? AND user_id = ? AND revoked_at IS NULL AND expires_at > ?")?
        .query_row(params![token_id, user_id, now], |_| Ok(()))
        .optional()?
        .is_some())
}

pub fn insert(conn: &Connection, token_id: &str, user_id: &str, issued_at: &str, expires_at: &str) -> StoreResult<()> {
    conn.prepare_cached("INSERT INTO api_tokens (token_id, user_id, issued_at, expires_at) VALUES (?, ?, ?, ?)")?
        .execute(params![token_id, user_id, issued_at, expires_at])?;
    Ok(())
}

/// Revokes the account's live tokens; returns how many.
pub fn revoke_for(conn: &Connection, user_id: &str, now: &str) -> StoreResult<usize> {
    Ok(conn
        .prepare_cached("UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")?
        .execute(params![now, user_id])?)
}

/// Revokes every token of the tenant (the signing key changed or went away).
pub fn revoke_all(conn: &Connection, now: &str) -> StoreResult<usize> {
    Ok(conn.prepare_cached("UPDATE api_tokens SET revoked_at = ? WHERE revoked_at IS NULL")?.execute([now])?)
}

pub fn mark_warned(conn: &Connection, token_id: &str, day: &str) -> StoreResult<()> {
    conn.prepare_cached("UPDATE api_tokens SET last_warned = ? WHERE token_id = ?")?.execute(params![day, token_id])?;
    Ok(())
}

pub fn insert_client(conn: &Connection, client_id: &str, secret_hash: &str, user_id: &str, now: &str) -> StoreResult<()> {
    conn.prepare_cached("INSERT INTO api_clients (client_id, secret_hash, user_id, created) VALUES (?, ?, ?, ?)")?
        .execute(params![client_id, secret_hash, user_id, now])?;
    Ok(())
}

/// (secret hash, acting account id) of an API client.
pub fn find_client(conn: &Connection, client_id: &str) -> StoreResult<Option<(String, String)>> {
    Ok(conn
        .prepare_cached("SELECT secret_hash, user_id FROM api_clients WHERE client_id = ?")?
        .query_row([client_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}
