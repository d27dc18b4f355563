//! TCP interfaces with Reticulum's HDLC framing: a server whose every accepted connection
//! becomes an interface of its own (as in rnsd), and a client that reconnects with backoff.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use super::{
    InterfaceMessage, LinkState, Port,
    framed::{self, Ended, Framing},
};

/// First reconnect delay of a client; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Accepts connections until stopped; each is handed to the actor, which spawns it.
pub(super) async fn serve(listener: TcpListener, port: Port) {
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    port.stats.set_state(LinkState::Up);
    tracing::info!(interface = port.id.0, %local, "TCP server interface listening");
    loop {
        tokio::select! {
            _ = port.stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let message = InterfaceMessage::Accepted { parent: port.id, peer, stream };
                    if port.to_router.send(message).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(interface = port.id.0, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    port.stats.set_state(LinkState::Down("stopped".into()));
}

/// Runs one accepted connection; tells the actor when it ends so the interface is removed.
pub(super) async fn run_accepted(stream: TcpStream, port: Port) {
    let ended = framed::run(stream, Framing::Hdlc, &port).await;
    let reason = match ended {
        Ended::Closed(reason) => reason,
        Ended::Stopped => "stopped".into(),
    };
    port.stats.set_state(LinkState::Down(reason));
    port.outbound.close();
    let _ = port
        .to_router
        .send(InterfaceMessage::Closed { interface: port.id })
        .await;
}

/// Connects, runs the connection, and reconnects with exponential backoff until stopped.
pub(super) async fn connect_loop(host: String, target_port: u16, port: Port) {
    let target = format!("{host}:{target_port}");
    let mut backoff = MIN_BACKOFF;
    loop {
        let connect = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&target));
        let stream = tokio::select! {
            _ = port.stop.cancelled() => break,
            result = connect => result,
        };
        match stream {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                tracing::info!(interface = port.id.0, %target, "TCP client interface connected");
                backoff = MIN_BACKOFF;
                let _ = port
                    .to_router
                    .send(InterfaceMessage::Connected { interface: port.id })
                    .await;
                match framed::run(stream, Framing::Hdlc, &port).await {
                    Ended::Stopped => break,
                    Ended::Closed(reason) => {
                        tracing::info!(interface = port.id.0, %target, %reason, "TCP client interface disconnected");
                        port.stats
                            .set_state(LinkState::Connecting(format!("{target}: {reason}")));
                    }
                }
                // Frames queued for the old connection are stale for the new one.
                let dropped = port.outbound.clear();
                port.stats.dropped(dropped);
            }
            Ok(Err(e)) => port
                .stats
                .set_state(LinkState::Connecting(format!("{target}: {e}"))),
            Err(_) => port.stats.set_state(LinkState::Connecting(format!(
                "{target}: connect timed out"
            ))),
        }
        tokio::select! {
            _ = port.stop.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    port.stats.set_state(LinkState::Down("stopped".into()));
}
