//! Byte-stream interfaces (TCP, serial): a reader that unframes and a writer that frames,
//! joined so that the interface ends when either side does.

use mehr_transport::framing::{hdlc, kiss};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{LinkState, Port};

/// Largest frame accepted from a stream. Our interfaces take no part in link MTU discovery,
/// so every frame is at most Reticulum's 500 bytes; the slack tolerates peers that add a few.
const MAX_FRAME: usize = 1024;
/// Frames gathered into one write.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// The two framings of byte streams.
#[derive(Clone, Copy)]
pub(super) enum Framing {
    /// HDLC-like: TCP, as Reticulum frames it.
    Hdlc,
    /// KISS: serial modems and TNCs.
    Kiss,
}

/// Why a stream ended.
pub(super) enum Ended {
    /// The peer closed it or an I/O error happened.
    Closed(String),
    /// The interface was removed or the node is stopping.
    Stopped,
}

/// Moves frames both ways over `io` until it closes or `port.stop` fires.
pub(super) async fn run<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    framing: Framing,
    port: &Port,
) -> Ended {
    let (mut reader, mut writer) = tokio::io::split(io);
    port.stats.set_state(LinkState::Up);

    let read = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut hdlc_decoder = hdlc::Decoder::new(MAX_FRAME);
        let mut kiss_decoder = kiss::Decoder::new(MAX_FRAME);
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) => return Ended::Closed("closed by peer".into()),
                Ok(n) => n,
                Err(e) => return Ended::Closed(e.to_string()),
            };
            let (frames, malformed) = match framing {
                Framing::Hdlc => {
                    let before = hdlc_decoder.stats();
                    let frames = hdlc_decoder.decode(&buf[..n]);
                    let after = hdlc_decoder.stats();
                    (
                        frames,
                        (after.oversize + after.bad_escapes)
                            - (before.oversize + before.bad_escapes),
                    )
                }
                Framing::Kiss => {
                    let before = kiss_decoder.stats();
                    let frames = kiss_decoder.decode(&buf[..n]);
                    let after = kiss_decoder.stats();
                    (
                        frames,
                        (after.oversize + after.bad_escapes)
                            - (before.oversize + before.bad_escapes),
                    )
                }
            };
            if malformed > 0 {
                port.stats.malformed(malformed);
            }
            for frame in frames {
                if !port.deliver(frame).await {
                    return Ended::Stopped;
                }
            }
        }
    };
    let write = async {
        // Everything queued goes out in one write: one system call for many frames.
        let mut frames = Vec::new();
        let mut bytes = Vec::with_capacity(WRITE_BATCH_BYTES + 1024);
        while let Some(first) = port.outbound.pop().await {
            frames.push(first);
            port.outbound.pop_ready(WRITE_BATCH_BYTES, &mut frames);
            bytes.clear();
            for frame in &frames {
                match framing {
                    Framing::Hdlc => hdlc::encode_into(frame, &mut bytes),
                    Framing::Kiss => bytes.extend(kiss::encode(frame)),
                }
            }
            if let Err(e) = writer.write_all(&bytes).await {
                return Ended::Closed(e.to_string());
            }
            for frame in frames.drain(..) {
                port.stats.sent(&frame);
            }
        }
        Ended::Stopped
    };
    tokio::select! {
        ended = read => ended,
        ended = write => ended,
        _ = port.stop.cancelled() => Ended::Stopped,
    }
}

/// Runs a KISS stream (a serial device) until it fails or is stopped.
pub(super) async fn run_kiss<IO: AsyncRead + AsyncWrite + Unpin>(io: IO, port: Port) {
    match run(io, Framing::Kiss, &port).await {
        Ended::Closed(reason) => {
            tracing::warn!(interface = port.id.0, %reason, "serial interface failed");
            port.stats.set_state(LinkState::Down(reason));
        }
        Ended::Stopped => port.stats.set_state(LinkState::Down("stopped".into())),
    }
    let dropped = port.outbound.clear();
    port.stats.dropped(dropped);
}
