//! `kubectl exec` and `kubectl port-forward` on a simulated node, opted into
//! (`--exec-local`): the command runs as a local process, as KWOK's ClusterExec does, in
//! a work directory of its own per pod and container; a forwarded port connects to the
//! same port on this machine's loopback, for ports the pod declares.
//!
//! The kubelet's stream protocols, as clients and kube-apiserver speak them:
//! - exec over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`; kubectl ≥ 1.30): each
//!   binary message starts with its channel — 0 stdin, 1 stdout, 2 stderr, 3 the closing
//!   `Status`, 4 terminal resize, and in v5 255 to close a channel (stdin's end);
//! - exec over SPDY/3.1 (`X-Stream-Protocol-Version: v4.channel.k8s.io`; older clients,
//!   and kube-apiserver towards a kubelet): one SPDY stream per channel, named by its
//!   `streamtype` header ([`crate::spdy`]);
//! - port-forward over SPDY (`portforward.k8s.io`): a data and an error stream per
//!   connection, named by `port` and `requestid`; and the same SPDY session tunnelled in
//!   WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`, kubectl ≥ 1.31).
//!
//! # Caveats
//! The process runs with the privileges of the `vkube` process on this machine: the
//! work directory is its starting point, not a sandbox (an absolute path reaches the
//! whole file system), and a forwarded port is this machine's. With `tty=true` the
//! command gets a terminal of its own (resized as the client's is).

use crate::spdy;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

/// The WebSocket channel protocols served for exec, best first.
const WS_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// The SPDY stream protocol served for exec.
const SPDY_EXEC: &str = "v4.channel.k8s.io";
/// Port-forward over SPDY, and the same tunnelled through a WebSocket.
const SPDY_PORTFORWARD: &str = "portforward.k8s.io";
const WS_PORTFORWARD: &str = "SPDY/3.1+portforward.k8s.io";
/// How long a SPDY client has to open the streams it asked for (the kubelet's
/// `streamCreationTimeout`).
const STREAM_CREATION: Duration = Duration::from_secs(30);

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Runs `exec` commands and `port-forward`s of pods on simulated nodes, locally.
#[derive(Debug, Clone)]
pub struct LocalExec {
    /// Where the pods' work directories are made (`<root>/<namespace>/<pod>-<uid>/<container>`).
    pub root: PathBuf,
}

/// What an exec request asks for (kube-apiserver's `stdin`/`stdout`/`stderr`, or the
/// kubelet's `input`/`output`/`error` as kube-apiserver passes them on).
#[derive(Debug, Default, PartialEq, Clone)]
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
            "stdin" | "input" => o.stdin = truthy(&v),
            "stdout" | "output" => o.stdout = truthy(&v),
            "stderr" | "error" => o.stderr = truthy(&v),
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

/// How the client wants its streams carried.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    /// WebSocket channels (`v5` when true).
    WebSocket { v5: bool },
    /// SPDY/3.1 streams.
    Spdy,
    /// SPDY/3.1 inside WebSocket binary messages.
    TunnelledSpdy,
}

fn header_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect()
}

/// The transport and protocol to answer with, from the client's offer.
fn negotiate(headers: &HeaderMap, portforward: bool) -> Result<(Transport, &'static str), Response<Bytes>> {
    let upgrade = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        let offered = header_values(headers, "x-stream-protocol-version");
        let wanted = if portforward { SPDY_PORTFORWARD } else { SPDY_EXEC };
        // Port-forward clients may offer no version (the only one is implied).
        if offered.iter().any(|o| o == wanted) || (portforward && offered.is_empty()) {
            return Ok((Transport::Spdy, wanted));
        }
        return Err(text(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [{wanted:?}]"
            ),
        ));
    }
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(text(StatusCode::BAD_REQUEST, format!("unable to upgrade: unknown upgrade {upgrade:?}")));
    }
    let offered = header_values(headers, "sec-websocket-protocol");
    if portforward {
        return if offered.iter().any(|o| o == WS_PORTFORWARD) {
            Ok((Transport::TunnelledSpdy, WS_PORTFORWARD))
        } else {
            Err(text(
                StatusCode::BAD_REQUEST,
                format!("requested protocol(s) are not supported: {offered:?}; supports [{WS_PORTFORWARD:?}]"),
            ))
        };
    }
    WS_PROTOCOLS
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
        .map(|p| (Transport::WebSocket { v5: p.starts_with("v5") }, p))
        .ok_or_else(|| {
            text(
                StatusCode::BAD_REQUEST,
                format!("requested protocol(s) are not supported: {offered:?}; supports {WS_PROTOCOLS:?}"),
            )
        })
}

/// `101 Switching Protocols` for the transport chosen.
fn switching(
    headers: &HeaderMap,
    transport: Transport,
    protocol: &'static str,
) -> Result<Response<Bytes>, Response<Bytes>> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if transport == Transport::Spdy {
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        h.insert("x-stream-protocol-version", HeaderValue::from_static(protocol));
        return Ok(r);
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key"));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    Ok(r)
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

type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

async fn upgraded(upgrade: hyper::upgrade::OnUpgrade) -> Option<Upgraded> {
    match upgrade.await {
        Ok(io) => Some(TokioIo::new(io)),
        Err(e) => {
            tracing::debug!("the client's connection was not upgraded: {e}");
            None
        }
    }
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
        let (transport, protocol) = match negotiate(headers, false) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let answer = match switching(headers, transport, protocol) {
            Ok(r) => r,
            Err(r) => return r,
        };
        let process = Process { options, dir: self.work_dir(pod, container), env: container_env(pod, container) };
        tokio::spawn(async move {
            let Some(io) = upgraded(upgrade).await else { return };
            let ended = match transport {
                Transport::WebSocket { v5 } => {
                    exec_websocket(WebSocketStream::from_raw_socket(io, Role::Server, None).await, process, v5).await
                }
                _ => exec_spdy(spdy::accept(io), process).await,
            };
            if let Err(e) = ended {
                tracing::debug!("exec stream ended: {e}");
            }
        });
        answer
    }

    /// Answer a port-forward request for `pod`: each forwarded connection reaches the
    /// same port on this machine's loopback, if a container of the pod declares it.
    pub fn port_forward(
        &self,
        pod: &Value,
        headers: &HeaderMap,
        upgrade: hyper::upgrade::OnUpgrade,
    ) -> Response<Bytes> {
        let (transport, protocol) = match negotiate(headers, true) {
            Ok(t) => t,
            Err(r) => return r,
        };
        let answer = match switching(headers, transport, protocol) {
            Ok(r) => r,
            Err(r) => return r,
        };
        let declared = declared_ports(pod);
        let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        tokio::spawn(async move {
            let Some(io) = upgraded(upgrade).await else { return };
            let streams = if transport == Transport::TunnelledSpdy {
                let ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
                spdy::accept(tunnel(ws))
            } else {
                spdy::accept(io)
            };
            forward_ports(streams, &name, &declared).await;
        });
        answer
    }
}

fn declared_ports(pod: &Value) -> Vec<u16> {
    ["containers", "initContainers"]
        .iter()
        .flat_map(|k| pod.pointer(&format!("/spec/{k}")).and_then(Value::as_array).into_iter().flatten())
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .filter_map(|p| p["containerPort"].as_u64().and_then(|n| u16::try_from(n).ok()))
        .collect()
}

/// A byte stream carried in WebSocket binary messages (the tunnelled SPDY session).
fn tunnel(ws: WebSocketStream<Upgraded>) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut read_half, mut write_half) = tokio::io::split(ours);
    let (mut sink, mut incoming) = ws.split();
    tokio::spawn(async move {
        while let Some(Ok(m)) = incoming.next().await {
            match m {
                Message::Binary(b) if write_half.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = write_half.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match read_half.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::Binary(Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await;
    });
    theirs
}

/// Serve the port-forward streams of one session: a data and an error stream per
/// `requestid`; each data stream is joined to `127.0.0.1:PORT`.
async fn forward_ports(mut streams: mpsc::Receiver<spdy::IncomingStream>, pod: &str, declared: &[u16]) {
    let mut errors: HashMap<String, spdy::StreamWriter> = HashMap::new();
    let mut waiting: HashMap<String, spdy::IncomingStream> = HashMap::new();
    while let Some(stream) = streams.recv().await {
        let request = stream.headers.get("requestid").cloned().unwrap_or_default();
        match stream.headers.get("streamtype").map(String::as_str) {
            Some("error") => {
                errors.insert(request.clone(), stream.writer.clone());
            }
            Some("data") => {
                waiting.insert(request.clone(), stream);
            }
            _ => continue,
        }
        // A pair is ready once both of its streams are open.
        if let (Some(error), Some(data)) = (errors.get(&request).cloned(), waiting.remove(&request)) {
            errors.remove(&request);
            let port = data.headers.get("port").and_then(|p| p.parse::<u16>().ok());
            let (pod, declared) = (pod.to_string(), declared.to_vec());
            tokio::spawn(async move { forward_one(data, error, port, &pod, &declared).await });
        }
    }
}

async fn forward_one(
    mut data: spdy::IncomingStream,
    error: spdy::StreamWriter,
    port: Option<u16>,
    pod: &str,
    declared: &[u16],
) {
    let refusal = match port {
        None => Some("invalid port header".to_string()),
        Some(port) if !declared.contains(&port) => Some(format!(
            "error forwarding port {port} to pod {pod}: the pod declares no container port {port} (a simulated node forwards only declared ports)"
        )),
        Some(_) => None,
    };
    let connected = match (refusal, port) {
        (Some(message), _) => Err(message),
        (None, None) => Err("invalid port header".to_string()),
        (None, Some(port)) => tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("error forwarding port {port} to pod {pod}: dial tcp4 127.0.0.1:{port}: {e}")),
    };
    let tcp = match connected {
        Ok(t) => t,
        Err(message) => {
            let _ = error.send(message.as_bytes()).await;
            let _ = error.finish().await;
            let _ = data.writer.finish().await;
            return;
        }
    };
    let (mut from_port, mut to_port) = tcp.into_split();
    let writer = data.writer.clone();
    let upstream = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_port.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if writer.send(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = writer.finish().await;
    });
    while let Some(chunk) = data.data.recv().await {
        if to_port.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to_port.shutdown().await;
    let _ = upstream.await;
    let _ = error.finish().await;
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

/// A command to run, and where.
struct Process {
    options: ExecOptions,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

/// Where the command's stdin goes: a pipe, or its terminal (which also takes resizes).
enum Input {
    Pipe(tokio::process::ChildStdin),
    Terminal(pty_process::OwnedWritePty),
}

impl Input {
    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Input::Pipe(p) => p.write_all(data).await,
            Input::Terminal(t) => t.write_all(data).await,
        }
    }
}

type Output = Box<dyn tokio::io::AsyncRead + Unpin + Send>;

/// A started command: the process, its outputs by channel, its input.
type Started = (tokio::process::Child, Vec<(u8, Output)>, Option<Input>);

/// Start the command on pipes, or on a terminal of its own when `tty` (its session
/// leader, the terminal its controlling one, stdout and stderr one stream as on a
/// terminal).
fn spawn(p: Process) -> std::io::Result<Started> {
    let o = &p.options;
    if o.tty {
        let (pty, pts) = pty_process::open().map_err(std::io::Error::other)?;
        let _ = pty.resize(pty_process::Size::new(24, 80));
        let child = pty_process::Command::new(&o.command[0])
            .args(&o.command[1..])
            .current_dir(&p.dir)
            .envs(p.env)
            .env("TERM", "xterm")
            .kill_on_drop(true)
            .spawn(pts)
            .map_err(std::io::Error::other)?;
        let (read, write) = pty.into_split();
        return Ok((child, vec![(STDOUT, Box::new(read) as Output)], Some(Input::Terminal(write))));
    }
    let mut child = tokio::process::Command::new(&o.command[0])
        .args(&o.command[1..])
        .current_dir(&p.dir)
        .envs(p.env)
        .stdin(if o.stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(if o.stdout { Stdio::piped() } else { Stdio::null() })
        .stderr(if o.stderr { Stdio::piped() } else { Stdio::null() })
        .kill_on_drop(true)
        .spawn()?;
    let mut outputs = Vec::new();
    if let Some(out) = child.stdout.take() {
        outputs.push((STDOUT, Box::new(out) as Output));
    }
    if let Some(err) = child.stderr.take() {
        outputs.push((STDERR, Box::new(err) as Output));
    }
    let input = child.stdin.take().map(Input::Pipe);
    Ok((child, outputs, input))
}

/// A terminal size as kubectl sends it (`{"Width":80,"Height":24}`).
/// As (rows, columns).
fn terminal_size(data: &[u8]) -> Option<(u16, u16)> {
    let v: Value = serde_json::from_slice(data).ok()?;
    let dim = |k: &str| v[k].as_u64().and_then(|n| u16::try_from(n).ok());
    Some((dim("Height")?, dim("Width")?))
}

/// The next message of an optional channel (never, without one).
async fn next(rx: &mut Option<mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// What the client sends while the command runs.
struct ClientInput {
    /// stdin (its end closes the command's stdin).
    stdin: Option<mpsc::Receiver<Bytes>>,
    /// Terminal resizes (JSON, as kubectl sends them).
    resize: Option<mpsc::Receiver<Bytes>>,
    /// Fires when the client goes away.
    gone: tokio::sync::oneshot::Receiver<()>,
}

/// Run the command: what the client sends to its stdin and terminal, its output to
/// `output` as (channel, bytes), until it exits or the client goes away. The `Status`
/// to end the stream with.
async fn run_process(p: Process, client: ClientInput, output: mpsc::Sender<(u8, Bytes)>) -> Value {
    let command = p.options.command.clone();
    if let Err(e) = tokio::fs::create_dir_all(&p.dir).await {
        return internal(format!("error executing command in container: creating {}: {e}", p.dir.display()));
    }
    let (mut child, outputs, mut input) = match spawn(p) {
        Ok(started) => started,
        Err(e) => {
            return internal(format!(
                "error executing command in container: failed to exec in container: exec: {:?}: {e}",
                command[0]
            ));
        }
    };
    let mut readers = Vec::new();
    for (channel, mut pipe) in outputs {
        let tx = output.clone();
        readers.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                // A terminal whose process has exited reads as an error (EIO): the end.
                match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send((channel, Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }));
    }
    drop(output);
    let ClientInput { mut stdin, mut resize, mut gone } = client;
    let status = loop {
        tokio::select! {
            // A resize sent before some input is applied before it.
            biased;
            exit = child.wait() => break exit,
            size = next(&mut resize) => match size {
                Some(data) => {
                    if let (Some(Input::Terminal(t)), Some((rows, cols))) = (input.as_ref(), terminal_size(&data)) {
                        let _ = t.resize(pty_process::Size::new(rows, cols));
                    }
                }
                None => resize = None,
            },
            chunk = next(&mut stdin) => match chunk {
                Some(data) => {
                    if let Some(i) = input.as_mut() && i.write(&data).await.is_err() {
                        input = None;
                    }
                }
                // The client closed stdin: so does the command's (a terminal stays).
                None => {
                    stdin = None;
                    if matches!(input, Some(Input::Pipe(_))) {
                        input = None;
                    }
                }
            },
            _ = &mut gone => {
                let _ = child.start_kill();
                break child.wait().await;
            }
        }
    };
    drop(input);
    for r in readers {
        let _ = r.await;
    }
    match status {
        Ok(s) => exit_status(s.code(), &command),
        Err(e) => internal(format!("error executing command in container: {e}")),
    }
}

type Ws = WebSocketStream<Upgraded>;

fn channel_message(channel: u8, data: &[u8]) -> Message {
    let mut frame = Vec::with_capacity(data.len() + 1);
    frame.push(channel);
    frame.extend_from_slice(data);
    Message::Binary(frame.into())
}

/// Exec over the WebSocket channel protocol.
async fn exec_websocket(ws: Ws, process: Process, v5: bool) -> anyhow::Result<()> {
    let (mut sink, mut incoming) = ws.split();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel::<Bytes>(4);
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(16);
    let (gone_tx, gone_rx) = tokio::sync::oneshot::channel();
    let (wants_stdin, tty) = (process.options.stdin, process.options.tty);
    let reader = tokio::spawn(async move {
        let mut stdin_tx = wants_stdin.then_some(stdin_tx);
        loop {
            match incoming.next().await {
                Some(Ok(Message::Binary(data))) => match data.first().copied() {
                    Some(STDIN) => {
                        if let Some(tx) = &stdin_tx
                            && tx.send(Bytes::copy_from_slice(&data[1..])).await.is_err()
                        {
                            stdin_tx = None;
                        }
                    }
                    Some(RESIZE) => {
                        let _ = resize_tx.try_send(Bytes::copy_from_slice(&data[1..]));
                    }
                    Some(CLOSE) if v5 && data.get(1) == Some(&STDIN) => stdin_tx = None,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let _ = gone_tx.send(());
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
    });
    let client =
        ClientInput { stdin: wants_stdin.then_some(stdin_rx), resize: tty.then_some(resize_rx), gone: gone_rx };
    let run = tokio::spawn(run_process(process, client, out_tx));
    while let Some((channel, data)) = out_rx.recv().await {
        sink.send(channel_message(channel, &data)).await?;
    }
    let status = run.await.unwrap_or_else(|e| internal(format!("error executing command in container: {e}")));
    reader.abort();
    sink.send(channel_message(ERROR, status.to_string().as_bytes())).await?;
    // A normal closure (1000): client-go reads the streams to their end only then, and
    // takes any other close as an error.
    sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await?;
    sink.close().await?;
    Ok(())
}

/// Exec over SPDY: the client opens the error stream and one stream per channel it
/// asked for; the command runs once they are all there.
async fn exec_spdy(mut streams: mpsc::Receiver<spdy::IncomingStream>, process: Process) -> anyhow::Result<()> {
    let o = &process.options;
    let mut wanted: Vec<&str> = vec!["error"];
    for (on, name) in [(o.stdin, "stdin"), (o.stdout, "stdout"), (o.stderr && !o.tty, "stderr"), (o.tty, "resize")] {
        if on {
            wanted.push(name);
        }
    }
    let mut open: HashMap<String, spdy::IncomingStream> = HashMap::new();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION;
    while wanted.iter().any(|w| !open.contains_key(*w)) {
        match tokio::time::timeout_at(deadline, streams.recv()).await {
            Ok(Some(s)) => {
                let kind = s.headers.get("streamtype").cloned().unwrap_or_default();
                open.insert(kind, s);
            }
            Ok(None) => return Ok(()),
            Err(_) => anyhow::bail!("timed out waiting for the client to create the streams {wanted:?}"),
        }
    }
    let take = |open: &mut HashMap<String, spdy::IncomingStream>, k: &str| open.remove(k);
    let error = take(&mut open, "error").map(|s| s.writer);
    let stdin = take(&mut open, "stdin").map(|s| s.data);
    let stdout = take(&mut open, "stdout").map(|s| s.writer);
    let stderr = take(&mut open, "stderr").map(|s| s.writer);
    // kubectl writes each terminal size as a JSON object on the resize stream.
    let resize = take(&mut open, "resize").map(|s| s.data);
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(16);
    // The session's end (the client gone) ends the command too.
    let (gone_tx, gone_rx) = tokio::sync::oneshot::channel();
    let watcher = tokio::spawn(async move {
        while streams.recv().await.is_some() {}
        let _ = gone_tx.send(());
    });
    let run = tokio::spawn(run_process(process, ClientInput { stdin, resize, gone: gone_rx }, out_tx));
    while let Some((channel, data)) = out_rx.recv().await {
        let target = if channel == STDERR { stderr.as_ref() } else { stdout.as_ref() };
        if let Some(w) = target {
            w.send(&data).await?;
        }
    }
    let status = run.await.unwrap_or_else(|e| internal(format!("error executing command in container: {e}")));
    watcher.abort();
    for w in [&stdout, &stderr].into_iter().flatten() {
        let _ = w.finish().await;
    }
    if let Some(e) = &error {
        e.send(status.to_string().as_bytes()).await?;
        e.finish().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_come_from_repeated_query_parameters_in_either_spelling() {
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
        // kube-apiserver passes them on to a kubelet as input/output/error.
        let k = exec_options("command=ls&input=1&output=1&error=1");
        assert!(k.stdin && k.stdout && k.stderr);
    }

    #[test]
    fn the_transport_follows_the_clients_offer() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("v4.channel.k8s.io, v5.channel.k8s.io"));
        assert_eq!(negotiate(&h, false).ok(), Some((Transport::WebSocket { v5: true }, "v5.channel.k8s.io")));
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("base64.channel.k8s.io"));
        assert_eq!(negotiate(&h, false).err().map(|r| r.status()), Some(StatusCode::BAD_REQUEST));
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("SPDY/3.1+portforward.k8s.io"));
        assert_eq!(negotiate(&h, true).ok(), Some((Transport::TunnelledSpdy, WS_PORTFORWARD)));
        let mut s = HeaderMap::new();
        s.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        s.append("x-stream-protocol-version", HeaderValue::from_static("v4.channel.k8s.io"));
        s.append("x-stream-protocol-version", HeaderValue::from_static("v3.channel.k8s.io"));
        assert_eq!(negotiate(&s, false).ok(), Some((Transport::Spdy, SPDY_EXEC)));
        assert_eq!(negotiate(&s, true).err().map(|r| r.status()), Some(StatusCode::FORBIDDEN));
    }

    #[test]
    fn exit_codes_become_the_kubelets_status() {
        assert_eq!(exit_status(Some(0), &[])["status"], "Success");
        let failed = exit_status(Some(3), &["sh".into(), "-c".into(), "exit 3".into()]);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
    }

    #[test]
    fn terminal_sizes_are_read_as_kubectl_sends_them() {
        let size = terminal_size(br#"{"Width":120,"Height":40}"#);
        assert_eq!(size, Some((40, 120)));
        assert_eq!(terminal_size(b"not json"), None);
    }

    #[test]
    fn only_declared_ports_are_forwarded() {
        let pod = json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 8080}]}, {"name": "b"}]}});
        assert_eq!(declared_ports(&pod), vec![8080]);
    }
}
