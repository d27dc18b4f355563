//! Interfaces: the tasks that move frames between the router and the outside world.
//!
//! Every interface, whatever its medium, is a [`Port`]: frames it receives go to the router's
//! actor as [`InterfaceMessage::Frame`]; frames the router sends wait in its
//! [`OutboundQueue`] until its writer takes them. The actor never touches a socket, and an
//! interface never touches the router — which is what lets the same router run a TCP server,
//! a serial modem and a simulated LoRa link side by side.

mod framed;
pub mod queue;
mod serial;
mod shaper;
mod sim;
use crate::config::interfaces as spec;
pub mod stats;
mod tcp;
mod udp;

use std::{net::SocketAddr, sync::Arc};

use mehr_transport::router::InterfaceId;
pub use queue::OutboundQueue;
pub use spec::{InterfaceKind, InterfaceSpec, InterfaceType};
pub use stats::{InterfaceStats, LinkState};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_util::sync::CancellationToken;

/// What interface tasks tell the transport actor.
#[derive(Debug)]
pub enum InterfaceMessage {
    /// A frame (one packet, framing removed) arrived.
    Frame {
        /// The interface it arrived on.
        interface: InterfaceId,
        /// The packet bytes.
        frame: Vec<u8>,
    },
    /// A TCP server accepted a connection; the actor gives it an interface of its own.
    Accepted {
        /// The server's interface.
        parent: InterfaceId,
        /// The remote address.
        peer: SocketAddr,
        /// The connection.
        stream: TcpStream,
    },
    /// A TCP client interface (re)connected to its server.
    Connected {
        /// The client's interface.
        interface: InterfaceId,
    },
    /// A connection that was spawned by a server ended.
    Closed {
        /// The interface that ended.
        interface: InterfaceId,
    },
}

/// The handles one interface task works with.
#[derive(Clone)]
pub struct Port {
    /// This interface.
    pub id: InterfaceId,
    /// Towards the transport actor.
    pub to_router: mpsc::Sender<InterfaceMessage>,
    /// Frames to send.
    pub outbound: Arc<OutboundQueue>,
    /// Counters and state.
    pub stats: Arc<InterfaceStats>,
    /// Cancelled when the interface is removed or the node stops.
    pub stop: CancellationToken,
}

impl Port {
    /// Hands a received frame to the router. Returns false once the router is gone.
    pub async fn deliver(&self, frame: Vec<u8>) -> bool {
        self.stats.received(frame.len());
        self.to_router
            .send(InterfaceMessage::Frame {
                interface: self.id,
                frame,
            })
            .await
            .is_ok()
    }
}

/// Why an interface could not start.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    /// A socket or device could not be opened.
    #[error("interface {name}: cannot open {what}: {source}")]
    Open {
        /// The interface's name.
        name: String,
        /// What was being opened.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Starts the task(s) of a configured interface. Sockets are bound before this returns, so
/// a port already in use is an error here rather than a silent dead interface.
pub async fn start(
    spec: &InterfaceSpec,
    kind: InterfaceKind,
    port: Port,
) -> Result<(), InterfaceError> {
    let name = spec.display_name();
    let open = |what: String| {
        move |source| InterfaceError::Open {
            name: name.clone(),
            what,
            source,
        }
    };
    match kind {
        InterfaceKind::TcpServer { listen } => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(open(format!("TCP {listen}")))?;
            tokio::spawn(tcp::serve(listener, port));
        }
        InterfaceKind::TcpClient { host, port: target } => {
            tokio::spawn(tcp::connect_loop(host, target, port));
        }
        InterfaceKind::Udp { listen, forward } => {
            let socket = udp::bind(listen).map_err(open(format!("UDP {listen}")))?;
            tokio::spawn(udp::run(socket, forward, port));
        }
        InterfaceKind::Serial {
            port: device,
            speed,
        } => {
            let io = serial::open(&device, speed).map_err(open(device.display().to_string()))?;
            tokio::spawn(framed::run_kiss(io, port));
        }
        InterfaceKind::Sim { listen, peer, link } => {
            let socket = tokio::net::UdpSocket::bind(listen)
                .await
                .map_err(open(format!("sim UDP {listen}")))?;
            tokio::spawn(sim::run(socket, peer, link, port));
        }
    }
    Ok(())
}

/// Runs one accepted TCP connection as its own interface.
pub fn start_accepted(stream: TcpStream, port: Port) {
    tokio::spawn(tcp::run_accepted(stream, port));
}
