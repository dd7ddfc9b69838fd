//! SQL for `tenant_files`: the copy inside the tenant's database of the files a tenant
//! needs beside it (its token-signing key pair), so that whatever replicates the database
//! (Litestream) carries them too. The files stay the truth on the running server; this
//! table follows them, and `scimd replication restore` writes them back from it.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreResult;

/// Makes the stored copy of each named file match `content` (`None`: the file is absent,
/// so is its copy). Writes only what differs; returns whether anything did.
pub fn sync(conn: &Connection, files: &[(&str, Option<String>)], at: &str) -> StoreResult<bool> {
    let mut changed = false;
    for (name, content) in files {
        let stored: Option<String> =
            conn.prepare_cached("SELECT content FROM tenant_files WHERE name = ?")?.query_row([name], |r| r.get(0)).optional()?;
        match (content.as_deref(), stored.as_deref()) {
            (Some(new), Some(old)) if new == old => {}
            (Some(new), _) => {
                conn.prepare_cached("INSERT OR REPLACE INTO tenant_files (name, content, stored_at) VALUES (?, ?, ?)")?.execute(params![name, new, at])?;
                changed = true;
            }
            (None, Some(_)) => {
                conn.prepare_cached("DELETE FROM tenant_files WHERE name = ?")?.execute([name])?;
                changed = true;
            }
            (None, None) => {}
        }
    }
    Ok(changed)
}

/// Whether `sync` would change anything.
pub fn differs(conn: &Connection, files: &[(&str, Option<String>)]) -> StoreResult<bool> {
    for (name, content) in files {
        if get(conn, name)? != *content {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The stored copy of one file, if there is one.
pub fn get(conn: &Connection, name: &str) -> StoreResult<Option<String>> {
    Ok(conn.prepare_cached("SELECT content FROM tenant_files WHERE name = ?")?.query_row([name], |r| r.get(0)).optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_writes_only_what_differs() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::migrate::migrate(&mut conn).unwrap();
        let key = "token-signing.key.pem";
        assert!(!sync(&conn, &[(key, None)], "t0").unwrap(), "nothing to remove");
        assert!(differs(&conn, &[(key, Some("A".into()))]).unwrap());
        assert!(sync(&conn, &[(key, Some("A".into()))], "t1").unwrap());
        assert!(!sync(&conn, &[(key, Some("A".into()))], "t2").unwrap(), "the same content is not rewritten");
        assert!(!differs(&conn, &[(key, Some("A".into()))]).unwrap());
        assert_eq!(get(&conn, key).unwrap().as_deref(), Some("A"));
        assert!(sync(&conn, &[(key, Some("B".into()))], "t3").unwrap());
        assert_eq!(get(&conn, key).unwrap().as_deref(), Some("B"));
        assert!(sync(&conn, &[(key, None)], "t4").unwrap());
        assert_eq!(get(&conn, key).unwrap(), None);
        assert!(conn.execute("INSERT INTO tenant_files VALUES ('other', 'x', 't')", []).is_err(), "only the known files");
    }
}
