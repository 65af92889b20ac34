//! SQLite durability: reopen keeps everything, and every acknowledged write survives a
//! `kill -9` of the writing process in the middle of a concurrent load.

use bytes::Bytes;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use vkube_store::{ListOptions, SqliteStore, Store, StoreError};

#[tokio::test]
async fn reopen_keeps_state_and_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let (rev, deleted_rev) = {
        let s = SqliteStore::open(&path).expect("open");
        let r1 = s.create("/a", Bytes::from_static(b"1")).await.expect("create");
        s.update("/a", Bytes::from_static(b"2"), r1).await.expect("update");
        s.create("/b", Bytes::from_static(b"x")).await.expect("create");
        let d = s.delete("/b", None).await.expect("delete");
        (s.current_revision().await.expect("rev"), d.mod_revision)
    };
    assert_eq!(rev, deleted_rev, "a trailing delete advances the revision");
    let s = SqliteStore::open(&path).expect("reopen");
    assert_eq!(s.current_revision().await.expect("rev"), rev);
    let a = s.get("/a").await.expect("get").expect("present");
    assert_eq!(a.value, Bytes::from_static(b"2"));
    assert!(s.get("/b").await.expect("get").is_none());
    // History before the restart is gone: resuming a watch there asks for a relist.
    assert!(matches!(s.watch("/", rev - 1).await, Err(StoreError::Compacted { .. })));
    // New writes continue the revision sequence.
    assert!(s.create("/c", Bytes::from_static(b"3")).await.expect("create") > rev);
}

/// Not a test on its own: the child process of `kill_9_loses_no_acknowledged_write`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(path) = std::env::var("VKUBE_CRASH_DB") else {
        return;
    };
    let store = Arc::new(SqliteStore::open(std::path::Path::new(&path)).expect("open"));
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("/crash/{t}/{i}");
                store.create(&key, Bytes::from(key.clone())).await.expect("create");
                println!("ACK {key}");
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

#[tokio::test]
async fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("VKUBE_CRASH_DB", &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(key) = line.strip_prefix("ACK ") {
            acked.push(key.to_string());
            if acked.len() >= 2000 {
                break;
            }
        }
    }
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert!(acked.len() >= 2000, "child acknowledged only {} writes", acked.len());
    let store = SqliteStore::open(&path).expect("reopen after crash");
    let present = store.list("/crash/", ListOptions::default()).await.expect("list");
    let keys: std::collections::HashSet<_> = present.items.iter().map(|kv| kv.key.as_str()).collect();
    let lost: Vec<_> = acked.iter().filter(|k| !keys.contains(k.as_str())).collect();
    assert!(lost.is_empty(), "{} acknowledged writes lost, e.g. {:?}", lost.len(), lost.first());
}
