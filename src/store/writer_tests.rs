//! The writer thread's own tests: a job that panics fails alone, a refusal comes back typed.

use super::*;

/// A job that panics fails with `Panicked`, its changes are rolled back, and the
/// writer serves the next job (before, the writer thread died with the panic and
/// every later write of the tenant answered `Closed`).
#[tokio::test]
async fn a_panicking_write_fails_alone() {
    let dir = std::env::temp_dir().join(format!("scimd-panic-{}-{}", std::process::id(), new_resource_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir.join("scim.db")).unwrap();
    let insert = |conn: &Connection, name: &str| -> StoreResult<()> {
        conn.execute(
            "INSERT INTO groups (id, display_name, display_name_key, created, last_modified) VALUES (?1, ?1, ?1, 'x', 'x')",
            [name],
        )?;
        Ok(())
    };
    let panicked = store
        .write(move |conn| -> StoreResult<()> {
            insert(conn, "written-then-panicked")?;
            panic!("a bug in a job");
        })
        .await;
    assert!(matches!(&panicked, Err(StoreError::Panicked(m)) if m.contains("a bug in a job")), "{panicked:?}");
    store.write(move |conn| insert(conn, "next")).await.expect("the writer still serves");
    let names: Vec<String> = store
        .read(|conn| Ok(conn.prepare("SELECT display_name FROM groups")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?))
        .await
        .unwrap();
    assert_eq!(names, vec!["next".to_string()]);
    let read_panic = store.read(|_| -> StoreResult<()> { panic!("a bug in a read") }).await;
    assert!(matches!(read_panic, Err(StoreError::Panicked(_))));
    store.close();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A job's own error (here a caller's enum) comes back as it was raised, not wrapped in
/// an `Ok`, and rolls back what the job wrote before it; the batch's other jobs commit.
#[tokio::test]
async fn a_refusal_comes_back_typed_and_rolls_back() {
    #[derive(Debug, PartialEq)]
    enum Refusal {
        No(&'static str),
        Store(String),
    }
    impl From<StoreError> for Refusal {
        fn from(e: StoreError) -> Self {
            Refusal::Store(e.to_string())
        }
    }
    let dir = std::env::temp_dir().join(format!("scimd-refusal-{}-{}", std::process::id(), new_resource_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::open(&dir.join("scim.db")).unwrap();
    let insert = |conn: &Connection, name: &str| -> StoreResult<()> {
        conn.execute(
            "INSERT INTO groups (id, display_name, display_name_key, created, last_modified) VALUES (?1, ?1, ?1, 'x', 'x')",
            [name],
        )?;
        Ok(())
    };
    let (refused, kept) = tokio::join!(
        store.try_write(move |conn| -> Result<(), Refusal> {
            insert(conn, "written-then-refused")?;
            Err(Refusal::No("a rule says no"))
        }),
        store.write(move |conn| insert(conn, "kept")),
    );
    assert_eq!(refused, Err(Refusal::No("a rule says no")));
    kept.expect("the other job commits");
    let failed = store.try_write(move |conn| -> Result<(), Refusal> { Ok(insert(conn, "kept")?) }).await;
    assert!(matches!(&failed, Err(Refusal::Store(m)) if m.contains("UNIQUE")), "{failed:?}");
    let names: Vec<String> = store
        .read(|conn| Ok(conn.prepare("SELECT display_name FROM groups")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?))
        .await
        .unwrap();
    assert_eq!(names, vec!["kept".to_string()]);
    store.close();
    let _ = std::fs::remove_dir_all(&dir);
}
