//! `kubectl exec` on a simulated node, opted into (`vkube host --exec-local`): the
//! command runs as a local process, as KWOK's ClusterExec does, in a work directory of
//! its own per pod and container. It speaks the kubelet's WebSocket stream protocols
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`): each binary message starts with its
//! channel — 0 stdin, 1 stdout, 2 stderr, 3 the closing `Status`, 4 terminal resize,
//! and in v5 255 to close a channel (stdin's end).
//!
//! # Caveats
//! The process runs with the privileges of the `vkube` process on this machine: the
//! work directory is its starting point, not a sandbox (an absolute path reaches the
//! whole file system). `tty=true` merges stderr into stdout but allocates no terminal.
//! SPDY (clients older than kubectl 1.30, and port-forward) is not spoken yet.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

/// The channel protocols served, best first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const CLOSE: u8 = 255;

/// Runs `exec` commands of pods on simulated nodes as local processes.
#[derive(Debug, Clone)]
pub struct LocalExec {
    /// Where the pods' work directories are made (`<root>/<namespace>/<pod>-<uid>/<container>`).
    pub root: PathBuf,
}

/// What an exec request asks for (the kubelet's `remotecommand` options).
#[derive(Debug, Default, PartialEq)]
struct ExecOptions {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn truthy(v: &str) -> bool {
    matches!(v, "1" | "true" | "True")
}

fn exec_options(query: &str) -> ExecOptions {
    let mut o = ExecOptions::default();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "command" => o.command.push(v.into_owned()),
            "stdin" => o.stdin = truthy(&v),
            "stdout" => o.stdout = truthy(&v),
            "stderr" => o.stderr = truthy(&v),
            "tty" => o.tty = truthy(&v),
            _ => {}
        }
    }
    o
}

fn text(code: StatusCode, body: impl Into<String>) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(body.into()));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// The WebSocket protocol to answer with, from the client's offer.
fn negotiate(headers: &HeaderMap) -> Result<&'static str, Response<Bytes>> {
    let upgrade = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(text(
            StatusCode::BAD_REQUEST,
            format!(
                "simulated nodes serve exec over WebSocket ({}), not {upgrade:?}: use kubectl 1.30 or later",
                PROTOCOLS.join(", ")
            ),
        ));
    }
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    PROTOCOLS.into_iter().find(|p| offered.iter().any(|o| o == p)).ok_or_else(|| {
        text(
            StatusCode::BAD_REQUEST,
            format!("requested protocol(s) are not supported: {offered:?}; supports {PROTOCOLS:?}"),
        )
    })
}

/// The `Status` a kubelet ends an exec stream with.
fn exit_status(code: Option<i32>, command: &[String]) -> Value {
    match code {
        Some(0) => json!({"metadata": {}, "status": "Success"}),
        Some(rc) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {rc}", command.join(" ")),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": rc.to_string()}]},
        }),
        None => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated by a signal: error executing command [{}]", command.join(" ")),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "137"}]},
        }),
    }
}

fn internal(message: String) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500})
}

impl LocalExec {
    /// The work directory of a pod's container.
    pub fn work_dir(&self, pod: &Value, container: &str) -> PathBuf {
        let meta = |k: &str| pod.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).unwrap_or_default();
        let uid: String = meta("uid").chars().take(8).collect();
        self.root.join(meta("namespace")).join(format!("{}-{uid}", meta("name"))).join(container)
    }

    /// Answer an exec request for `container` of `pod`: `101 Switching Protocols` and a
    /// task that runs the command over the upgraded connection, or the kubelet's error.
    pub fn exec(
        &self,
        pod: &Value,
        container: &str,
        query: &str,
        headers: &HeaderMap,
        upgrade: hyper::upgrade::OnUpgrade,
    ) -> Response<Bytes> {
        let options = exec_options(query);
        if !(options.stdin || options.stdout || options.stderr) {
            return text(StatusCode::BAD_REQUEST, "you must specify at least 1 of stdin, stdout, stderr");
        }
        if options.command.is_empty() {
            return text(StatusCode::BAD_REQUEST, "you must specify at least one command for the container");
        }
        let protocol = match negotiate(headers) {
            Ok(p) => p,
            Err(r) => return r,
        };
        let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
            return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
        };
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let dir = self.work_dir(pod, container);
        let env = container_env(pod, container);
        let v5 = protocol.starts_with("v5");
        tokio::spawn(async move {
            let io = match upgrade.await {
                Ok(io) => io,
                Err(e) => return tracing::debug!("exec: the client's connection was not upgraded: {e}"),
            };
            let ws = WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
            if let Err(e) = run(ws, options, dir, env, v5).await {
                tracing::debug!("exec stream ended: {e}");
            }
        });
        let mut r = Response::new(Bytes::new());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
        r
    }
}

/// The container's literal environment (`value`, not `valueFrom`) and `HOSTNAME` (the
/// pod's `spec.hostname`, else its name, as a container's host name is).
fn container_env(pod: &Value, container: &str) -> Vec<(String, String)> {
    let hostname = pod
        .pointer("/spec/hostname")
        .or_else(|| pod.pointer("/metadata/name"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut env = vec![("HOSTNAME".to_string(), hostname.to_string())];
    let containers = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array).into_iter().flatten());
    for c in containers.filter(|c| c["name"] == container) {
        for e in c["env"].as_array().into_iter().flatten() {
            if let (Some(k), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
                env.push((k.to_string(), v.to_string()));
            }
        }
    }
    env
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Run the command and carry its streams until it exits and its output is sent.
async fn run(ws: Ws, o: ExecOptions, dir: PathBuf, env: Vec<(String, String)>, v5: bool) -> anyhow::Result<()> {
    let (mut sink, mut incoming) = ws.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(16);
    let send = |channel: u8, data: &[u8]| {
        let mut frame = Vec::with_capacity(data.len() + 1);
        frame.push(channel);
        frame.extend_from_slice(data);
        Message::Binary(frame.into())
    };
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        let status = internal(format!("error executing command in container: creating {}: {e}", dir.display()));
        sink.send(send(ERROR, status.to_string().as_bytes())).await?;
        return close(sink).await;
    }
    let mut cmd = tokio::process::Command::new(&o.command[0]);
    cmd.args(&o.command[1..])
        .current_dir(&dir)
        .envs(env)
        .stdin(if o.stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(if o.stdout { Stdio::piped() } else { Stdio::null() })
        .stderr(if o.stderr || o.tty { Stdio::piped() } else { Stdio::null() })
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let status = internal(format!(
                "error executing command in container: failed to exec in container: exec: {:?}: {e}",
                o.command[0]
            ));
            sink.send(send(ERROR, status.to_string().as_bytes())).await?;
            return close(sink).await;
        }
    };
    let mut readers = Vec::new();
    // With a terminal there is one output stream, as a terminal has.
    let stderr_channel = if o.tty { STDOUT } else { STDERR };
    for (channel, pipe) in [
        (STDOUT, child.stdout.take().map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>)),
        (stderr_channel, child.stderr.take().map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>)),
    ] {
        let Some(mut pipe) = pipe else { continue };
        let tx = out_tx.clone();
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(send(channel, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }));
    }
    drop(out_tx);
    let mut stdin = child.stdin.take();
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(m).await.is_err() {
                return None;
            }
        }
        Some(sink)
    });
    // The client's side: stdin, resize, close; until the process has exited.
    let status = loop {
        tokio::select! {
            exit = child.wait() => break exit,
            message = incoming.next() => match message {
                Some(Ok(Message::Binary(data))) => match data.first().copied() {
                    Some(STDIN) => {
                        if let Some(s) = stdin.as_mut()
                            && s.write_all(&data[1..]).await.is_err()
                        {
                            stdin = None;
                        }
                    }
                    Some(CLOSE) if v5 && data.get(1) == Some(&STDIN) => stdin = None,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    // The client went away: the command goes with it.
                    let _ = child.start_kill();
                    break child.wait().await;
                }
                Some(Ok(_)) => {}
            }
        }
    };
    drop(stdin);
    for r in readers {
        let _ = r.await;
    }
    let Ok(Some(mut sink)) = writer.await else { return Ok(()) };
    let status = match status {
        Ok(s) => exit_status(s.code(), &o.command),
        Err(e) => internal(format!("error executing command in container: {e}")),
    };
    sink.send(send(ERROR, status.to_string().as_bytes())).await?;
    close(sink).await
}

/// End the connection with a normal closure (1000): client-go reads the streams to
/// their end only then, and takes any other close as an error.
async fn close(mut sink: futures::stream::SplitSink<Ws, Message>) -> anyhow::Result<()> {
    let frame = CloseFrame { code: CloseCode::Normal, reason: "".into() };
    sink.send(Message::Close(Some(frame))).await?;
    sink.close().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_from_repeated_query_parameters() {
        let o = exec_options("command=sh&command=-c&command=echo%20hi&stdin=true&stdout=1&tty=false&container=c");
        assert_eq!(
            o,
            ExecOptions {
                command: vec!["sh".into(), "-c".into(), "echo hi".into()],
                stdin: true,
                stdout: true,
                stderr: false,
                tty: false
            }
        );
    }

    #[test]
    fn the_best_offered_protocol_is_chosen_and_spdy_is_refused_clearly() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("v4.channel.k8s.io, v5.channel.k8s.io"));
        assert_eq!(negotiate(&h).ok(), Some("v5.channel.k8s.io"));
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("base64.channel.k8s.io"));
        assert_eq!(negotiate(&h).err().map(|r| r.status()), Some(StatusCode::BAD_REQUEST));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        let refused = negotiate(&h).err().map(|r| String::from_utf8_lossy(r.body()).into_owned()).unwrap_or_default();
        assert!(refused.contains("WebSocket"), "{refused}");
    }

    #[test]
    fn exit_codes_become_the_kubelets_status() {
        assert_eq!(exit_status(Some(0), &[])["status"], "Success");
        let failed = exit_status(Some(3), &["sh".into(), "-c".into(), "exit 3".into()]);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
    }
}
