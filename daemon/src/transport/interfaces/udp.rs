//! UDP interface: one packet per datagram, sent to a unicast or broadcast address, received
//! from anyone — Reticulum's UDPInterface.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::{LinkState, Port};

/// Binds with SO_REUSEADDR/SO_REUSEPORT and SO_BROADCAST, so several nodes on one host can
/// share a broadcast port and broadcasts can be sent.
pub(super) fn bind(listen: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_broadcast(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&listen.into())?;
    UdpSocket::from_std(socket.into())
}

/// Moves datagrams both ways until stopped.
pub(super) async fn run(socket: UdpSocket, forward: SocketAddr, port: Port) {
    port.stats.set_state(LinkState::Up);
    let read = async {
        let mut buf = vec![0u8; 2048];
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, _)) if n > 0 => {
                    if !port.deliver(buf[..n].to_vec()).await {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(interface = port.id.0, error = %e, "UDP receive failed"),
            }
        }
    };
    let write = async {
        while let Some(frame) = port.outbound.pop().await {
            match socket.send_to(&frame, forward).await {
                Ok(_) => port.stats.sent(&frame),
                Err(e) => {
                    tracing::debug!(interface = port.id.0, error = %e, "UDP send failed");
                    port.stats.dropped(1);
                }
            }
        }
    };
    tokio::select! {
        _ = read => {}
        _ = write => {}
        _ = port.stop.cancelled() => {}
    }
    port.stats.set_state(LinkState::Down("stopped".into()));
}
