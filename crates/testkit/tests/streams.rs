//! `pods/exec` through a real in-process API server with the kube-rs client (WebSocket,
//! `v5.channel.k8s.io`), the command run as a local process as simulated nodes do with
//! `--exec-local`; and kube-apiserver's refusals before any stream opens.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, PostParams};
use serde_json::json;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vkube_apiserver::endpoints::streams::{StreamRequest, StreamSource};
use vkube_core::ApiError;
use vkube_kubelet_sim::streams::LocalExec;
use vkube_testkit::TestServer;

struct Local(LocalExec);

#[async_trait::async_trait]
impl StreamSource for Local {
    async fn stream(&self, r: StreamRequest) -> Result<http::Response<bytes::Bytes>, ApiError> {
        Ok(self.0.exec(&r.pod, r.container.as_deref().unwrap_or_default(), &r.query, &r.headers, r.upgrade))
    }
}

async fn server_with_local_exec() -> anyhow::Result<(TestServer, kube::Client)> {
    let server = TestServer::start().await?;
    let root = server.data_dir().join("exec");
    if let Ok(mut s) = server.server().state.streams.write() {
        *s = Some(Arc::new(Local(LocalExec { root })));
    }
    let client = server.client().await?;
    Ok((server, client))
}

fn pod(name: &str, node: Option<&str>) -> anyhow::Result<Pod> {
    let mut p = json!({"metadata": {"name": name}, "spec": {"containers": [
        {"name": "main", "image": "busybox", "env": [{"name": "GREETING", "value": "hello"}]},
        {"name": "side", "image": "busybox"}]}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    Ok(serde_json::from_value(p)?)
}

async fn read_all(r: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    let mut s = String::new();
    if let Some(mut r) = r {
        let _ = r.read_to_string(&mut s).await;
    }
    s
}

#[tokio::test]
async fn exec_carries_stdout_stderr_stdin_and_the_exit_code() -> anyhow::Result<()> {
    let (server, client) = server_with_local_exec().await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod("box", Some("node-1"))?).await?;

    let ap = AttachParams::default().container("main").stderr(true);
    let mut p = pods.exec("box", ["sh", "-c", "echo \"$GREETING from $HOSTNAME\"; echo oops >&2; exit 3"], &ap).await?;
    let status = p.take_status().expect("status");
    let (out, err) = tokio::join!(read_all(p.stdout()), read_all(p.stderr()));
    let status = status.await.expect("a closing status");
    assert_eq!(out, "hello from box\n");
    assert_eq!(err, "oops\n");
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"), "{status:?}");
    let code = status.details.and_then(|d| d.causes).and_then(|c| c.into_iter().next()).and_then(|c| c.message);
    assert_eq!(code.as_deref(), Some("3"));

    // stdin reaches the command, and closing it ends `cat` (v5's close signal).
    let ap = AttachParams::default().container("main").stdin(true).stderr(false);
    let mut p = pods.exec("box", ["cat"], &ap).await?;
    let status = p.take_status().expect("status");
    let mut stdin = p.stdin().expect("stdin");
    stdin.write_all(b"line one\nline two\n").await?;
    stdin.shutdown().await?;
    drop(stdin);
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), read_all(p.stdout())).await?;
    assert_eq!(out, "line one\nline two\n");
    assert_eq!(status.await.and_then(|s| s.status).as_deref(), Some("Success"));

    // Each container has its own work directory; a file written stays for the next exec.
    let ap = AttachParams::default().container("side").stderr(false);
    let mut p = pods.exec("box", ["sh", "-c", "echo kept > f"], &ap).await?;
    assert_eq!(p.take_status().expect("status").await.and_then(|s| s.status).as_deref(), Some("Success"));
    let mut p = pods.exec("box", ["cat", "f"], &ap).await?;
    assert_eq!(read_all(p.stdout()).await, "kept\n");
    server.stop().await;
    Ok(())
}

/// `exec -it`: the command has a terminal (stdin is one, its size the client's).
#[tokio::test]
async fn exec_with_a_tty_gets_a_terminal_sized_as_the_clients() -> anyhow::Result<()> {
    use futures::SinkExt;
    let (server, client) = server_with_local_exec().await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod("term", Some("node-1"))?).await?;
    let ap = AttachParams::interactive_tty().container("main");
    // Each line in asks for the size again: the resize travels apart from stdin, so it
    // may land after the first line.
    let script = "test -t 0 && echo terminal; while read go; do [ \"$go\" = end ] && exit 0; stty size; done";
    let mut p = pods.exec("term", ["sh", "-c", script], &ap).await?;
    let status = p.take_status().expect("status");
    let mut size = p.terminal_size().expect("a terminal size channel");
    size.send(kube::api::TerminalSize { width: 120, height: 40 }).await?;
    let mut stdin = p.stdin().expect("stdin");
    let mut stdout = p.stdout().expect("stdout");
    let mut out = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !out.contains("40 120") {
        stdin.write_all(b"go\n").await?;
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout_at(deadline, stdout.read(&mut buf)).await??;
        assert!(n > 0, "output ended before the size: {out:?}");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    stdin.write_all(b"end\n").await?;
    assert!(out.contains("terminal"), "stdin is a terminal: {out:?}");
    assert_eq!(status.await.and_then(|s| s.status).as_deref(), Some("Success"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn exec_is_refused_as_kube_apiserver_refuses_it() -> anyhow::Result<()> {
    let (server, client) = server_with_local_exec().await?;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod("pending", None)?).await?;
    pods.create(&PostParams::default(), &pod("placed", Some("node-1"))?).await?;
    let refusal = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => (0, other.to_string()),
    };
    let ap = AttachParams::default().container("main").stderr(false);
    let e = pods.exec("missing", ["true"], &ap).await.err().map(refusal);
    assert_eq!(e, Some((404, "pods \"missing\" not found".to_string())));
    let e = pods.exec("pending", ["true"], &ap).await.err().map(refusal);
    assert_eq!(e, Some((400, "pod pending does not have a host assigned".to_string())));
    let other = AttachParams::default().container("nope").stderr(false);
    let e = pods.exec("placed", ["true"], &other).await.err().map(refusal);
    assert_eq!(e, Some((400, "container nope is not valid for pod placed".to_string())));
    let unnamed = AttachParams { container: None, stderr: false, ..Default::default() };
    let e = pods.exec("placed", ["true"], &unnamed).await.err().map(refusal);
    assert_eq!(
        e,
        Some((400, "a container name must be specified for pod placed, choose one of: [main side]".to_string()))
    );
    server.stop().await;
    Ok(())
}
