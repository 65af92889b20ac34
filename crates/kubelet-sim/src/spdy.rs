//! The server side of SPDY/3.1 as Kubernetes streams use it (client-go's spdystream,
//! kube-apiserver's proxy to a kubelet): the peer opens streams with `SYN_STREAM`, each
//! named by its headers (`streamtype: stdout`, `port: 8080`); each is answered with a
//! `SYN_REPLY` and carries `DATA` frames both ways, `FIN` ending one direction.
//!
//! Header blocks are zlib streams (one per direction for the whole session) over the
//! SPDY/3 dictionary. Like spdystream, this side does no flow control: it never waits
//! for `WINDOW_UPDATE` and sends none. `PING` is answered; `SETTINGS` are ignored.
//!
//! Start at [`accept`]: it runs the session on an upgraded connection and yields each
//! stream the peer opens as an [`IncomingStream`].

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use std::collections::HashMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The header compression dictionary of SPDY/3 (draft 3, section 2.6.10.1).
const DICTIONARY: &[u8] = include_bytes!("spdy3-dictionary.bin");

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;
/// The largest frame taken (spdystream's frames are far smaller).
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// What can go wrong on a session.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// The connection failed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent something that is not SPDY/3.1.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// A stream the peer opened: its headers (names lowercase), what it sends, and a way
/// to send back.
pub struct IncomingStream {
    /// The stream's id.
    pub id: u32,
    /// Its headers.
    pub headers: HashMap<String, String>,
    /// What the peer sends on it; `None` once the peer has finished (FIN or reset).
    pub data: mpsc::Receiver<Bytes>,
    /// Send on it.
    pub writer: StreamWriter,
}

/// The sending half of one stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    frames: mpsc::Sender<Vec<u8>>,
}

fn data_frame(id: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + data.len());
    f.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(data);
    f
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

impl StreamWriter {
    /// Send bytes (in frames the peer takes).
    ///
    /// # Errors
    /// The session has ended.
    pub async fn send(&self, data: &[u8]) -> Result<(), SpdyError> {
        for chunk in data.chunks(32 * 1024) {
            self.frames.send(data_frame(self.id, 0, chunk)).await.map_err(|_| closed())?;
        }
        Ok(())
    }

    /// End this side of the stream (an empty DATA frame with FIN).
    ///
    /// # Errors
    /// The session has ended.
    pub async fn finish(&self) -> Result<(), SpdyError> {
        self.frames.send(data_frame(self.id, FLAG_FIN, &[])).await.map_err(|_| closed())
    }
}

fn closed() -> SpdyError {
    SpdyError::Io(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the SPDY session has ended"))
}

/// The zlib contexts of a session's header blocks.
struct Headers {
    inflate: Decompress,
    deflate: Compress,
}

impl Headers {
    fn new() -> Result<Self, SpdyError> {
        let mut deflate = Compress::new(Compression::best(), true);
        deflate.set_dictionary(DICTIONARY).map_err(|e| SpdyError::Protocol(format!("zlib: {e}")))?;
        Ok(Headers { inflate: Decompress::new(true), deflate })
    }

    /// Inflate one header block (the dictionary is given when the stream asks for it).
    fn decode(&mut self, block: &[u8]) -> Result<HashMap<String, String>, SpdyError> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            if out.len() == out.capacity() {
                out.reserve(4096);
            }
            let (in_before, out_before) = (self.inflate.total_in(), self.inflate.total_out());
            let result = self.inflate.decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = usize::try_from(self.inflate.total_in() - in_before).unwrap_or(input.len());
            input = &input[used.min(input.len())..];
            let produced = self.inflate.total_out() - out_before;
            match result {
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(DICTIONARY).map_err(|e| SpdyError::Protocol(format!("zlib: {e}")))?;
                }
                Err(e) => return Err(SpdyError::Protocol(format!("header block: {e}"))),
                Ok(Status::StreamEnd) => break,
                Ok(_) if input.is_empty() && out.len() < out.capacity() => break,
                Ok(_) if used == 0 && produced == 0 && out.len() < out.capacity() => {
                    return Err(SpdyError::Protocol("header block: truncated zlib data".into()));
                }
                Ok(_) => {}
            }
        }
        parse_header_block(&out)
    }

    /// Deflate one header block, flushed so the peer can read it at once.
    fn encode(&mut self, headers: &[(&str, &str)]) -> Result<Vec<u8>, SpdyError> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.to_ascii_lowercase().as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = raw.as_slice();
        loop {
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            let before_in = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Protocol(format!("zlib: {e}")))?;
            let used = usize::try_from(self.deflate.total_in() - before_in).unwrap_or(input.len());
            input = &input[used.min(input.len())..];
            // Done when all input is taken and the flush had room to finish.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        Ok(out)
    }
}

fn parse_header_block(raw: &[u8]) -> Result<HashMap<String, String>, SpdyError> {
    let bad = || SpdyError::Protocol("truncated header block".into());
    let mut at = 0usize;
    let u32_at = |at: &mut usize| -> Result<usize, SpdyError> {
        let b = raw.get(*at..*at + 4).ok_or_else(bad)?;
        *at += 4;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(&mut at)?;
    let mut headers = HashMap::new();
    for _ in 0..count {
        let n = u32_at(&mut at)?;
        let name = raw.get(at..at + n).ok_or_else(bad)?;
        at += n;
        let n = u32_at(&mut at)?;
        let value = raw.get(at..at + n).ok_or_else(bad)?;
        at += n;
        headers.insert(
            String::from_utf8_lossy(name).to_ascii_lowercase(),
            // Several values are joined with NUL; the first is the one streams use.
            String::from_utf8_lossy(value).split('\0').next().unwrap_or_default().to_string(),
        );
    }
    Ok(headers)
}

/// Run a SPDY/3.1 server session on `io`; the streams the peer opens arrive on the
/// returned receiver. The session ends when the peer closes the connection or sends
/// GOAWAY, or when every [`StreamWriter`] and the receiver are dropped.
pub fn accept<IO>(io: IO) -> mpsc::Receiver<IncomingStream>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (streams_tx, streams_rx) = mpsc::channel(16);
    let (frames_tx, mut frames_rx) = mpsc::channel::<Vec<u8>>(64);
    let (mut reader, mut writer) = tokio::io::split(io);
    tokio::spawn(async move {
        while let Some(frame) = frames_rx.recv().await {
            if let Err(e) = writer.write_all(&frame).await {
                return tracing::debug!("SPDY session: writing: {e}");
            }
        }
        let _ = writer.shutdown().await;
    });
    tokio::spawn(async move {
        if let Err(e) = read_frames(&mut reader, frames_tx, streams_tx).await {
            tracing::debug!("SPDY session ended: {e}");
        }
    });
    streams_rx
}

async fn read_frames<R: AsyncRead + Unpin>(
    reader: &mut R,
    frames: mpsc::Sender<Vec<u8>>,
    streams: mpsc::Sender<IncomingStream>,
) -> Result<(), SpdyError> {
    let mut headers = Headers::new()?;
    let mut open: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    loop {
        let mut head = [0u8; 8];
        match reader.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME {
            return Err(SpdyError::Protocol(format!("a frame of {len} bytes")));
        }
        let mut payload = vec![0u8; len];
        reader.read_exact(&mut payload).await?;
        let word = |at: usize| -> Result<u32, SpdyError> {
            payload
                .get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| SpdyError::Protocol("short control frame".into()))
        };
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
            if let Some(tx) = open.get(&id)
                && !payload.is_empty()
                && tx.send(Bytes::from(payload)).await.is_err()
            {
                // The stream's reader is gone: what comes on it is not wanted.
                open.remove(&id);
            }
            if flags & FLAG_FIN != 0 {
                open.remove(&id);
            }
            continue;
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        let kind = u16::from_be_bytes([head[2], head[3]]);
        if version != VERSION {
            return Err(SpdyError::Protocol(format!("SPDY version {version}")));
        }
        match kind {
            SYN_STREAM => {
                let id = word(0)? & 0x7fff_ffff;
                let block = payload.get(10..).ok_or_else(|| SpdyError::Protocol("short SYN_STREAM".into()))?;
                let stream_headers = headers.decode(block)?;
                let (tx, rx) = mpsc::channel(64);
                if flags & FLAG_FIN == 0 {
                    open.insert(id, tx);
                }
                let mut reply = id.to_be_bytes().to_vec();
                reply.extend_from_slice(&headers.encode(&[])?);
                frames.send(control_frame(SYN_REPLY, 0, &reply)).await.map_err(|_| closed())?;
                let writer = StreamWriter { id, frames: frames.clone() };
                if streams.send(IncomingStream { id, headers: stream_headers, data: rx, writer }).await.is_err() {
                    return Ok(());
                }
            }
            RST_STREAM => {
                open.remove(&(word(0)? & 0x7fff_ffff));
            }
            PING => {
                frames.send(control_frame(PING, 0, &payload)).await.map_err(|_| closed())?;
            }
            GOAWAY => return Ok(()),
            // SETTINGS, WINDOW_UPDATE, HEADERS: nothing this side acts on.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        // Its Adler-32 is the DICTID SPDY/3 peers put in their zlib headers.
        let mut c = Compress::new(Compression::best(), true);
        assert_eq!(c.set_dictionary(DICTIONARY).ok(), Some(0xe3c6_a7c2));
        assert_eq!(DICTIONARY.len(), 1423);
    }

    #[test]
    fn header_blocks_round_trip_through_the_two_zlib_contexts() -> Result<(), SpdyError> {
        let mut ours = Headers::new()?;
        let mut theirs = Headers::new()?;
        for round in 0..3 {
            let port = format!("80{round}");
            let block = ours.encode(&[("streamType", "data"), ("port", &port)])?;
            // The peer's inflate context reads our deflate context's blocks, in order.
            std::mem::swap(&mut theirs.inflate, &mut ours.inflate);
            let decoded = ours.decode(&block)?;
            std::mem::swap(&mut theirs.inflate, &mut ours.inflate);
            assert_eq!(decoded.get("streamtype").map(String::as_str), Some("data"));
            assert_eq!(decoded.get("port"), Some(&port));
        }
        Ok(())
    }

    #[test]
    fn frames_are_laid_out_as_spdy3_has_them() {
        let d = data_frame(5, FLAG_FIN, b"hi");
        assert_eq!(d, vec![0, 0, 0, 5, 1, 0, 0, 2, b'h', b'i']);
        let c = control_frame(PING, 0, &7u32.to_be_bytes());
        assert_eq!(c, vec![0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7]);
    }
}
