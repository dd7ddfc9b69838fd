//! Seeds a running scimd for `benches/run.sh`, through the SCIM API as an IdP would:
//! `--users N` users (`user{i}@bench.example`, each with a work email and a name) plus
//! `--spare S` more, created by concurrent `POST /Users` on keep-alive TLS connections;
//! then one group holding the first `--members M` users, filled by `PATCH add members`
//! in chunks. Writes what the wrk phases need into `--out DIR`:
//! `sample-ids.txt` (20,000 random ids of the N users), `spare-ids.txt` (the S users
//! outside the group, for member adds), `member-ids.txt` (the M members, shuffled, for
//! member removes), `group-id.txt`, and `seed.json` (how long each step took).
//!
//! `target/release/examples/bench-seed --base URL --ca FILE --token T --users N --spare S
//!  --members M --out DIR [--connections 16]`

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

#[path = "client.rs"]
mod client;
use client::{connector, Args, Conn};

/// A connection to the server of `opts`, with its bearer token.
async fn open(opts: &Options, tls: &tokio_rustls::TlsConnector) -> Result<Conn, String> {
    let authority = opts.base.split('/').nth(2).ok_or("base URL has no host")?;
    Conn::open(authority, tls, format!("Bearer {}", opts.token)).await
}

struct Options {
    base: String,
    ca: PathBuf,
    token: String,
    users: usize,
    spare: usize,
    members: usize,
    out: PathBuf,
    connections: usize,
}

fn options() -> Result<Options, String> {
    let args = Args::from_env();
    Ok(Options {
        base: args.get("--base")?,
        ca: args.get("--ca")?.into(),
        token: args.get("--token")?,
        users: args.num("--users")?,
        spare: args.num("--spare")?,
        members: args.num("--members")?,
        out: args.get("--out")?.into(),
        connections: args.num_or("--connections", 16)?,
    })
}

fn path_of(base: &str) -> String {
    base.splitn(4, '/').nth(3).map_or("/".to_string(), |p| format!("/{p}"))
}

fn user(i: usize) -> Value {
    let name = format!("user{i}@bench.example");
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": "Bench", "familyName": format!("User {i}")},
        "emails": [{"value": name, "type": "work", "primary": true}],
        "active": true
    })
}

/// A fixed-seed xorshift: the same run picks the same sample.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

async fn create_users(opts: &Arc<Options>, tls: &tokio_rustls::TlsConnector) -> Result<Vec<String>, String> {
    let total = opts.users + opts.spare;
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..opts.connections {
        let mut conn = open(opts, tls).await?;
        let (next, opts) = (Arc::clone(&next), Arc::clone(opts));
        workers.push(tokio::spawn(async move {
            let url = format!("{}/Users", path_of(&opts.base));
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, String>(made);
                }
                let (status, body) = conn.send("POST", &url, Some(&user(i))).await?;
                let id = body["id"].as_str().filter(|_| status == 201).ok_or(format!("create {i}: {status} {body}"))?;
                made.push((i, id.to_string()));
                if i % 100_000 == 0 && i > 0 {
                    eprintln!("bench-seed: {i} users");
                }
            }
        }));
    }
    let mut ids = vec![String::new(); total];
    for w in workers {
        for (i, id) in w.await.map_err(|e| e.to_string())?? {
            ids[i] = id;
        }
    }
    Ok(ids)
}

async fn fill_group(opts: &Options, tls: &tokio_rustls::TlsConnector, members: &[String]) -> Result<String, String> {
    let mut conn = open(opts, tls).await?;
    let base = path_of(&opts.base);
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Bench Everyone"});
    let (status, body) = conn.send("POST", &format!("{base}/Groups"), Some(&group)).await?;
    let id = body["id"].as_str().filter(|_| status == 201).ok_or(format!("create group: {status} {body}"))?.to_string();
    for chunk in members.chunks(5_000) {
        let value: Vec<Value> = chunk.iter().map(|m| json!({"value": m})).collect();
        let patch = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": value}]
        });
        let url = format!("{base}/Groups/{id}");
        let (status, body) = conn.send("PATCH", &url, Some(&patch)).await?;
        if !(200..300).contains(&status) {
            return Err(format!("add members: {status} {body}"));
        }
    }
    Ok(id)
}

fn write_lines(path: PathBuf, lines: &[String]) -> Result<(), String> {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
}

async fn run(opts: Options) -> Result<(), String> {
    let opts = Arc::new(opts);
    let tls = connector(&opts.ca)?;
    std::fs::create_dir_all(&opts.out).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let ids = create_users(&opts, &tls).await?;
    let users_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let members = &ids[..opts.members.min(opts.users)];
    let group = fill_group(&opts, &tls, members).await?;
    let group_secs = started.elapsed().as_secs_f64();

    let mut sample: Vec<String> = ids[..opts.users].to_vec();
    shuffle(&mut sample, 0x5eed);
    sample.truncate(20_000);
    let mut removable = members.to_vec();
    shuffle(&mut removable, 0xbee);
    write_lines(opts.out.join("sample-ids.txt"), &sample)?;
    write_lines(opts.out.join("spare-ids.txt"), &ids[opts.users..])?;
    write_lines(opts.out.join("member-ids.txt"), &removable)?;
    write_lines(opts.out.join("group-id.txt"), &[group])?;
    let report = json!({
        "users": opts.users + opts.spare,
        "users_seconds": (users_secs * 10.0).round() / 10.0,
        "creates_per_second": ((opts.users + opts.spare) as f64 / users_secs).round(),
        "group_members": members.len(),
        "group_seconds": (group_secs * 10.0).round() / 10.0,
    });
    std::fs::write(opts.out.join("seed.json"), report.to_string()).map_err(|e| e.to_string())?;
    println!("{report}");
    Ok(())
}

fn main() -> Result<(), String> {
    let opts = options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(run(opts))
}
