//! How an operator describes an interface: one `[[interfaces]]` table in the config file, or
//! one `AddInterface` call. Field names mirror Reticulum's own config (`target_host`,
//! `listen_port`, `forward_ip`, `port`, `speed`, …) so a Reticulum operator feels at home.
//!
//! The table is flat, as in Reticulum; [`InterfaceSpec::kind`] checks which fields the `type`
//! needs and refuses the ones it does not take, so a typo is an error that names the field.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use mehr_transport::router::InterfaceMode;
use serde::{Deserialize, Serialize};

/// Bitrate assumed for TCP and UDP interfaces when none is configured (Reticulum's figure).
pub const DEFAULT_IP_BITRATE: u64 = 10_000_000;

/// One interface, as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSpec {
    /// `tcp_server`, `tcp_client`, `udp`, `serial` or `sim`.
    #[serde(rename = "type")]
    pub kind: InterfaceType,
    /// A name for people (shown by `mehr interfaces`); defaults to the type and address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `false` keeps the table in the file without starting the interface.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// Reticulum interface mode: `full`, `point_to_point`, `access_point`, `roaming`,
    /// `boundary` or `gateway`.
    #[serde(default, skip_serializing_if = "is_full")]
    pub mode: ModeName,
    /// Link speed in bits per second (drives the announce cap and path costs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate: Option<u64>,
    /// Share of the bitrate that rebroadcast announces may use, in percent (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce_cap: Option<f64>,

    /// tcp_server, udp, sim: address to listen on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_ip: Option<IpAddr>,
    /// tcp_server, udp, sim: port to listen on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    /// tcp_client: host to connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_host: Option<String>,
    /// tcp_client: port to connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
    /// udp: address datagrams are sent to (a broadcast address reaches the whole segment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_ip: Option<IpAddr>,
    /// udp: port datagrams are sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_port: Option<u16>,
    /// serial: the device (e.g. `/dev/ttyUSB0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PathBuf>,
    /// serial: baud rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<u32>,

    /// sim: loopback UDP port of the other end of the simulated link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_port: Option<u16>,
    /// sim: one-way latency in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// sim: probability (0–1) that a frame is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// sim: largest frame the medium carries, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<usize>,
    /// sim: one end transmits at a time; frames that overlap collide and are lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_duplex: Option<bool>,
}

/// The interface types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterfaceType {
    /// Accepts TCP connections; each becomes an interface of its own (HDLC framing).
    TcpServer,
    /// Connects to a TCP server and reconnects when the connection drops (HDLC framing).
    TcpClient,
    /// UDP datagrams, one packet each (unicast or broadcast).
    Udp,
    /// A serial device with KISS framing.
    Serial,
    /// A simulated link (bitrate, latency, loss, MTU, half duplex) carried over loopback UDP.
    Sim,
}

impl InterfaceType {
    /// The name used in configs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            InterfaceType::TcpServer => "tcp_server",
            InterfaceType::TcpClient => "tcp_client",
            InterfaceType::Udp => "udp",
            InterfaceType::Serial => "serial",
            InterfaceType::Sim => "sim",
        }
    }

    /// Parses a config/API name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::TcpServer,
            Self::TcpClient,
            Self::Udp,
            Self::Serial,
            Self::Sim,
        ]
        .into_iter()
        .find(|t| t.as_str() == name)
    }
}

/// Reticulum's interface modes, by config name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeName {
    /// Full participation.
    #[default]
    Full,
    /// A link to exactly one peer.
    PointToPoint,
    /// Serves clients that come and go.
    AccessPoint,
    /// The node itself moves.
    Roaming,
    /// Joins two network segments.
    Boundary,
    /// Gives access to a wider network.
    Gateway,
}

impl From<ModeName> for InterfaceMode {
    fn from(mode: ModeName) -> Self {
        match mode {
            ModeName::Full => InterfaceMode::Full,
            ModeName::PointToPoint => InterfaceMode::PointToPoint,
            ModeName::AccessPoint => InterfaceMode::AccessPoint,
            ModeName::Roaming => InterfaceMode::Roaming,
            ModeName::Boundary => InterfaceMode::Boundary,
            ModeName::Gateway => InterfaceMode::Gateway,
        }
    }
}

/// The settings of a simulated link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimLink {
    /// Bits per second.
    pub bitrate: u64,
    /// One-way latency.
    pub latency: Duration,
    /// Loss probability.
    pub loss: f64,
    /// Largest frame.
    pub mtu: usize,
    /// One transmitter at a time.
    pub half_duplex: bool,
}

/// A validated interface description: exactly the fields its type needs.
#[derive(Debug, Clone, PartialEq)]
pub enum InterfaceKind {
    /// Listen for TCP connections.
    TcpServer {
        /// Address.
        listen: std::net::SocketAddr,
    },
    /// Connect to a TCP server.
    TcpClient {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
    /// UDP datagrams.
    Udp {
        /// Listen address.
        listen: std::net::SocketAddr,
        /// Destination of outgoing datagrams.
        forward: std::net::SocketAddr,
    },
    /// Serial device with KISS framing.
    Serial {
        /// Device path.
        port: PathBuf,
        /// Baud rate.
        speed: u32,
    },
    /// Simulated link over loopback UDP.
    Sim {
        /// Our end.
        listen: std::net::SocketAddr,
        /// The other end.
        peer: std::net::SocketAddr,
        /// Medium properties.
        link: SimLink,
    },
}

/// A field is missing, or does not belong to the interface type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("interface {name}: {message}")]
pub struct SpecError {
    /// The interface's name.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

fn yes() -> bool {
    true
}
fn is_true(value: &bool) -> bool {
    *value
}
fn is_full(mode: &ModeName) -> bool {
    *mode == ModeName::Full
}

impl InterfaceSpec {
    /// A spec of `kind` with every optional field unset.
    pub fn new(kind: InterfaceType) -> Self {
        InterfaceSpec {
            kind,
            name: None,
            enabled: true,
            mode: ModeName::Full,
            bitrate: None,
            announce_cap: None,
            listen_ip: None,
            listen_port: None,
            target_host: None,
            target_port: None,
            forward_ip: None,
            forward_port: None,
            port: None,
            speed: None,
            peer_port: None,
            latency_ms: None,
            loss: None,
            mtu: None,
            half_duplex: None,
        }
    }

    /// The name shown to people.
    pub fn display_name(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        let kind = self.kind.as_str();
        match (self.kind, &self.listen_port, &self.target_host, &self.port) {
            (InterfaceType::TcpClient, _, Some(host), _) => {
                format!("{kind} {host}:{}", self.target_port.unwrap_or(0))
            }
            (InterfaceType::Serial, _, _, Some(port)) => format!("{kind} {}", port.display()),
            (_, Some(listen_port), _, _) => format!("{kind} :{listen_port}"),
            _ => kind.to_string(),
        }
    }

    /// Checks the fields against the type and returns what the implementation needs.
    pub fn kind(&self) -> Result<InterfaceKind, SpecError> {
        let error = |message: String| SpecError {
            name: self.display_name(),
            message,
        };
        let allowed: &[&str] = match self.kind {
            InterfaceType::TcpServer => &["listen_ip", "listen_port"],
            InterfaceType::TcpClient => &["target_host", "target_port"],
            InterfaceType::Udp => &["listen_ip", "listen_port", "forward_ip", "forward_port"],
            InterfaceType::Serial => &["port", "speed"],
            InterfaceType::Sim => &[
                "listen_ip",
                "listen_port",
                "peer_port",
                "latency_ms",
                "loss",
                "mtu",
                "half_duplex",
            ],
        };
        for (field, set) in self.type_specific_fields() {
            if set && !allowed.contains(&field) {
                return Err(error(format!(
                    "`{field}` is not a setting of a {} interface",
                    self.kind.as_str()
                )));
            }
        }
        let need = |field: &str, value: Option<u16>| {
            value.ok_or_else(|| {
                error(format!(
                    "`{field}` is required for a {} interface",
                    self.kind.as_str()
                ))
            })
        };
        if let Some(cap) = self.announce_cap
            && !(cap > 0.0 && cap <= 100.0)
        {
            return Err(error(format!(
                "`announce_cap` must be above 0 and at most 100 (percent), not {cap}"
            )));
        }
        if self.bitrate == Some(0) {
            return Err(error("`bitrate` must be above zero".into()));
        }
        let listen_ip = self.listen_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        Ok(match self.kind {
            InterfaceType::TcpServer => InterfaceKind::TcpServer {
                listen: (listen_ip, need("listen_port", self.listen_port)?).into(),
            },
            InterfaceType::TcpClient => {
                let host = self
                    .target_host
                    .clone()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| {
                        error("`target_host` is required for a tcp_client interface".into())
                    })?;
                InterfaceKind::TcpClient {
                    host,
                    port: need("target_port", self.target_port)?,
                }
            }
            InterfaceType::Udp => {
                let listen_port = need("listen_port", self.listen_port)?;
                let forward_ip = self.forward_ip.ok_or_else(|| {
                    error("`forward_ip` is required for a udp interface (a broadcast address reaches the segment)".into())
                })?;
                InterfaceKind::Udp {
                    listen: (listen_ip, listen_port).into(),
                    forward: (forward_ip, self.forward_port.unwrap_or(listen_port)).into(),
                }
            }
            InterfaceType::Serial => InterfaceKind::Serial {
                port: self
                    .port
                    .clone()
                    .ok_or_else(|| error("`port` is required for a serial interface".into()))?,
                speed: self
                    .speed
                    .ok_or_else(|| error("`speed` is required for a serial interface".into()))?,
            },
            InterfaceType::Sim => {
                let loss = self.loss.unwrap_or(0.0);
                if !(0.0..=1.0).contains(&loss) {
                    return Err(error(format!("`loss` must be between 0 and 1, not {loss}")));
                }
                let mtu = self.mtu.unwrap_or(mehr_transport::packet::MTU);
                if mtu < mehr_transport::packet::MTU {
                    return Err(error(format!(
                        "`mtu` must be at least {} bytes (Reticulum's MTU), not {mtu}",
                        mehr_transport::packet::MTU
                    )));
                }
                let loopback = IpAddr::from([127, 0, 0, 1]);
                InterfaceKind::Sim {
                    listen: (
                        self.listen_ip.unwrap_or(loopback),
                        need("listen_port", self.listen_port)?,
                    )
                        .into(),
                    peer: (
                        self.listen_ip.unwrap_or(loopback),
                        need("peer_port", self.peer_port)?,
                    )
                        .into(),
                    link: SimLink {
                        bitrate: self.bitrate.unwrap_or(1200),
                        latency: Duration::from_millis(self.latency_ms.unwrap_or(0)),
                        loss,
                        mtu,
                        half_duplex: self.half_duplex.unwrap_or(false),
                    },
                }
            }
        })
    }

    /// The link's one-way latency as path costs count it, milliseconds: what a simulated
    /// link is configured with; other kinds have no figure (their airtime is counted from
    /// the bitrate).
    pub fn one_way_latency_ms(&self) -> u32 {
        match self.kind {
            InterfaceType::Sim => u32::try_from(self.latency_ms.unwrap_or(0)).unwrap_or(u32::MAX),
            _ => 0,
        }
    }

    /// The bitrate the router assumes for this interface.
    pub fn effective_bitrate(&self) -> u64 {
        self.bitrate.unwrap_or(match self.kind {
            InterfaceType::TcpServer | InterfaceType::TcpClient | InterfaceType::Udp => {
                DEFAULT_IP_BITRATE
            }
            InterfaceType::Serial => u64::from(self.speed.unwrap_or(9600)),
            InterfaceType::Sim => 1200,
        })
    }

    fn type_specific_fields(&self) -> [(&'static str, bool); 13] {
        [
            ("listen_ip", self.listen_ip.is_some()),
            ("listen_port", self.listen_port.is_some()),
            ("target_host", self.target_host.is_some()),
            ("target_port", self.target_port.is_some()),
            ("forward_ip", self.forward_ip.is_some()),
            ("forward_port", self.forward_port.is_some()),
            ("port", self.port.is_some()),
            ("speed", self.speed.is_some()),
            ("peer_port", self.peer_port.is_some()),
            ("latency_ms", self.latency_ms.is_some()),
            ("loss", self.loss.is_some()),
            ("mtu", self.mtu.is_some()),
            ("half_duplex", self.half_duplex.is_some()),
        ]
    }
}

/// The interfaces a node starts with when the config names none: a TCP server that other
/// nodes (and rnsd's `TCPClientInterface`) can connect to, and UDP broadcast on the local
/// segment.
pub fn default_interfaces() -> Vec<InterfaceSpec> {
    let mut tcp = InterfaceSpec::new(InterfaceType::TcpServer);
    tcp.listen_ip = Some(IpAddr::from([0, 0, 0, 0]));
    tcp.listen_port = Some(4242);
    let mut udp = InterfaceSpec::new(InterfaceType::Udp);
    udp.listen_ip = Some(IpAddr::from([0, 0, 0, 0]));
    udp.listen_port = Some(4243);
    udp.forward_ip = Some(IpAddr::from([255, 255, 255, 255]));
    udp.forward_port = Some(4243);
    vec![tcp, udp]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> InterfaceSpec {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn reticulum_style_tables_parse() {
        let spec = parse("type = \"tcp_client\"\ntarget_host = \"10.0.0.1\"\ntarget_port = 4242\n");
        assert_eq!(
            spec.kind().unwrap(),
            InterfaceKind::TcpClient {
                host: "10.0.0.1".into(),
                port: 4242
            }
        );
        let spec = parse("type = \"udp\"\nlisten_port = 4243\nforward_ip = \"255.255.255.255\"\n");
        assert_eq!(
            spec.kind().unwrap(),
            InterfaceKind::Udp {
                listen: "0.0.0.0:4243".parse().unwrap(),
                forward: "255.255.255.255:4243".parse().unwrap()
            }
        );
    }

    #[test]
    fn wrong_and_missing_fields_are_named() {
        let err = parse("type = \"tcp_server\"\nlisten_port = 1\ntarget_host = \"x\"\n")
            .kind()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("`target_host` is not a setting of a tcp_server"),
            "{err}"
        );
        let err = parse("type = \"tcp_client\"\ntarget_host = \"x\"\n")
            .kind()
            .unwrap_err();
        assert!(
            err.to_string().contains("`target_port` is required"),
            "{err}"
        );
        let err = parse("type = \"sim\"\nlisten_port = 1\npeer_port = 2\nloss = 1.5\n")
            .kind()
            .unwrap_err();
        assert!(
            err.to_string().contains("`loss` must be between 0 and 1"),
            "{err}"
        );
        let err = toml::from_str::<InterfaceSpec>("type = \"tcp_server\"\nlisten_prot = 1\n")
            .unwrap_err();
        assert!(err.to_string().contains("listen_prot"), "{err}");
        assert!(toml::from_str::<InterfaceSpec>("type = \"carrier_pigeon\"\n").is_err());
    }

    #[test]
    fn sim_defaults_are_lora_like() {
        let spec =
            parse("type = \"sim\"\nlisten_port = 5000\npeer_port = 5001\nhalf_duplex = true\n");
        let InterfaceKind::Sim { link, peer, .. } = spec.kind().unwrap() else {
            panic!()
        };
        assert_eq!(link.bitrate, 1200);
        assert!(link.half_duplex);
        assert_eq!(peer, "127.0.0.1:5001".parse().unwrap());
    }
}
