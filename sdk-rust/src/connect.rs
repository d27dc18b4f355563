//! Finding and reaching a daemon: endpoint parsing, token and CA discovery, channel set-up.

use std::{
    error::Error as StdError,
    path::{Path, PathBuf},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

use crate::{Error, layout};

/// HTTP/2 frames the SDK accepts from the daemon, up to: a 700 KB tensor arrives as one frame
/// rather than 44 of the default 16 KiB, each of which costs a wake-up on both sides.
const MAX_FRAME_BYTES: u32 = 4 * 1024 * 1024;
/// Flow-control windows the SDK grants the daemon (per stream, per connection): a served
/// function's multi-megabyte output flows without waiting for WINDOW_UPDATE round trips.
const STREAM_WINDOW_BYTES: u32 = 16 * 1024 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 32 * 1024 * 1024;

/// `endpoint` with the SDK's HTTP/2 settings for large payloads.
fn tuned(endpoint: Endpoint) -> Endpoint {
    endpoint
        .max_frame_size(MAX_FRAME_BYTES)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
}

/// Where a daemon is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A TCP address (`host:port`), with or without TLS.
    Tcp {
        /// `host:port`.
        authority: String,
        /// Connect with TLS.
        tls: bool,
    },
}

impl Target {
    /// Parses `unix:/path`, `unix:///path`, `http://host:port`, `https://host:port` or a bare
    /// `host:port` (plaintext TCP on loopback; TLS for any other host, so that a token never
    /// crosses a network in plaintext by default).
    pub fn parse(endpoint: &str) -> Result<Target, Error> {
        let invalid = |reason: &str| Error::InvalidEndpoint {
            endpoint: endpoint.into(),
            reason: reason.into(),
        };
        if let Some(path) = endpoint.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(invalid("the socket path is empty"));
            }
            return Ok(Target::Unix(PathBuf::from(path)));
        }
        let (tls, authority) = if let Some(rest) = endpoint.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = endpoint.strip_prefix("http://") {
            (false, rest)
        } else if endpoint.contains("://") {
            return Err(invalid("use unix:, http:// or https://"));
        } else {
            (
                !is_loopback_host(host_of(endpoint.trim_end_matches('/'))),
                endpoint,
            )
        };
        let authority = authority.trim_end_matches('/');
        let uri: Uri = format!("http://{authority}")
            .parse()
            .map_err(|_| invalid("not host:port"))?;
        if uri.port_u16().is_none() || uri.host().is_none_or(str::is_empty) {
            return Err(invalid("expected host:port"));
        }
        Ok(Target::Tcp {
            authority: authority.to_string(),
            tls,
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Unix(path) => write!(f, "unix:{}", path.display()),
            Target::Tcp {
                authority,
                tls: true,
            } => write!(f, "https://{authority}"),
            Target::Tcp {
                authority,
                tls: false,
            } => write!(f, "http://{authority}"),
        }
    }
}

/// How to reach a daemon. Unset fields are discovered: the data dir defaults to the user's
/// (`~/.local/share/mehr`), the endpoint to its Unix socket, the token to its `api.token`, the
/// CA to its `tls/cert.pem`.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Where the daemon is (see [`Target::parse`]).
    pub endpoint: Option<String>,
    /// The daemon's data dir, where the socket, token and certificate are found.
    pub data_dir: Option<PathBuf>,
    /// The bearer token for TCP endpoints.
    pub token: Option<String>,
    /// A file holding the bearer token (used when `token` is unset). Prefer this or the
    /// environment to a token on a command line, where `ps` shows it.
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA (or self-signed certificate) that signed the daemon's certificate.
    pub ca_cert: Option<PathBuf>,
    /// The name to check the daemon's certificate against (default: the endpoint's host).
    pub tls_domain: Option<String>,
    /// How long to wait for the connection (default 5 s).
    pub connect_timeout: Option<Duration>,
}

impl ConnectOptions {
    /// Options from `MEHR_ENDPOINT`, `MEHR_DATA_DIR`, `MEHR_TOKEN`, `MEHR_TOKEN_FILE`,
    /// `MEHR_CA_CERT` and `MEHR_TLS_DOMAIN`, where set.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        ConnectOptions {
            endpoint: var("MEHR_ENDPOINT"),
            data_dir: var("MEHR_DATA_DIR").map(PathBuf::from),
            token: var("MEHR_TOKEN"),
            token_file: var("MEHR_TOKEN_FILE").map(PathBuf::from),
            ca_cert: var("MEHR_CA_CERT").map(PathBuf::from),
            tls_domain: var("MEHR_TLS_DOMAIN"),
            connect_timeout: None,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(layout::default_data_dir)
    }

    /// The target these options point at.
    pub fn target(&self) -> Result<Target, Error> {
        match &self.endpoint {
            Some(endpoint) => Target::parse(endpoint),
            None => Ok(Target::Unix(self.data_dir().join(layout::SOCKET_FILE))),
        }
    }

    /// The bearer token to send: the explicit one, or the data dir's token file for TCP.
    pub(crate) fn resolve_token(&self, target: &Target) -> Result<Option<String>, Error> {
        if let Some(token) = &self.token {
            return Ok(Some(token.trim().to_string()));
        }
        if let Some(path) = &self.token_file {
            return match std::fs::read_to_string(path) {
                Ok(token) => Ok(Some(token.trim().to_string())),
                Err(e) => Err(Error::Credentials {
                    path: path.clone(),
                    reason: e.to_string(),
                }),
            };
        }
        if matches!(target, Target::Unix(_)) {
            return Ok(None);
        }
        let path = self.data_dir().join(layout::TOKEN_FILE);
        match std::fs::read_to_string(&path) {
            Ok(token) => Ok(Some(token.trim().to_string())),
            Err(e) => Err(Error::Credentials {
                path,
                reason: format!(
                    "{e} (TCP endpoints need the node's API token: pass it, or the data dir that holds it)"
                ),
            }),
        }
    }

    /// Connects and returns the channel and the token to send on it.
    pub(crate) async fn open(&self) -> Result<(Channel, Option<String>, Target), Error> {
        let target = self.target()?;
        let token = self.resolve_token(&target)?;
        if let Target::Tcp {
            authority,
            tls: false,
        } = &target
            && token.is_some()
            && !is_loopback_host(host_of(authority))
        {
            return Err(Error::InvalidEndpoint {
                endpoint: target.to_string(),
                reason: "refusing to send the API token in plaintext to a host that is not                          loopback; use https:// (the daemon serves TLS off loopback)"
                    .into(),
            });
        }
        let timeout = self.connect_timeout.unwrap_or(Duration::from_secs(5));
        let connect_error = |e: tonic::transport::Error| Error::Connect {
            endpoint: target.to_string(),
            reason: root_cause(&e) + &hint(&target),
        };
        let channel = match &target {
            Target::Unix(path) => {
                let path = path.clone();
                // The URI is required by the API but unused: the connector ignores it.
                tuned(Endpoint::from_static("http://localhost"))
                    .connect_timeout(timeout)
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                        }
                    }))
                    .await
                    .map_err(connect_error)?
            }
            Target::Tcp { authority, tls } => {
                let scheme = if *tls { "https" } else { "http" };
                let endpoint =
                    Endpoint::from_shared(format!("{scheme}://{authority}")).map_err(|e| {
                        Error::InvalidEndpoint {
                            endpoint: authority.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                let mut endpoint = tuned(endpoint).connect_timeout(timeout).tcp_nodelay(true);
                if *tls {
                    endpoint = endpoint
                        .tls_config(self.tls_config(authority)?)
                        .map_err(connect_error)?;
                }
                endpoint.connect().await.map_err(connect_error)?
            }
        };
        Ok((channel, token, target))
    }

    fn tls_config(&self, authority: &str) -> Result<ClientTlsConfig, Error> {
        let mut config = ClientTlsConfig::new();
        let ca_path = self.ca_cert.clone().or_else(|| {
            let default = self.data_dir().join(layout::TLS_CERT_FILE);
            default.exists().then_some(default)
        });
        config = match ca_path {
            Some(path) => {
                let pem = std::fs::read(&path).map_err(|e| Error::Credentials {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                config.ca_certificate(Certificate::from_pem(pem))
            }
            None => config.with_native_roots(),
        };
        let domain = match &self.tls_domain {
            Some(domain) => domain.clone(),
            None => host_of(authority).to_string(),
        };
        Ok(config.domain_name(domain))
    }
}

/// The host part of `host:port` or `[v6]:port`.
fn host_of(authority: &str) -> &str {
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// True for `localhost` and loopback addresses, where plaintext never leaves the machine.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The innermost error message: what actually went wrong (e.g. "Connection refused").
fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut current = error;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

fn hint(target: &Target) -> String {
    match target {
        Target::Unix(path) if !Path::new(path).exists() => {
            " (no socket there: is mehrd running with this data dir?)".to_string()
        }
        _ => " (is mehrd running, and listening there?)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_is_never_sent_in_plaintext_off_loopback() {
        let options = ConnectOptions {
            endpoint: Some("http://192.0.2.1:7440".into()),
            token: Some("secret".into()),
            ..Default::default()
        };
        let err = options.open().await.unwrap_err();
        assert!(
            err.to_string()
                .contains("refusing to send the API token in plaintext")
        );
        assert!(is_loopback_host("127.0.0.2"));
        assert!(is_loopback_host("::1"));
        assert!(is_loopback_host("LOCALHOST"));
        assert!(!is_loopback_host("node.example"));
    }

    #[test]
    fn the_token_file_is_read_when_no_token_is_given() {
        let dir = std::env::temp_dir().join(format!("mehr-sdk-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t");
        std::fs::write(&file, "abc\n").unwrap();
        let options = ConnectOptions {
            token_file: Some(file),
            ..Default::default()
        };
        let target = Target::parse("127.0.0.1:1").unwrap();
        assert_eq!(
            options.resolve_token(&target).unwrap().as_deref(),
            Some("abc")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            Target::parse("unix:/a/b.sock").unwrap(),
            Target::Unix("/a/b.sock".into())
        );
        assert_eq!(
            Target::parse("unix:///a/b.sock").unwrap(),
            Target::Unix("/a/b.sock".into())
        );
        assert_eq!(
            Target::parse("127.0.0.1:7440").unwrap(),
            Target::Tcp {
                authority: "127.0.0.1:7440".into(),
                tls: false
            }
        );
        assert_eq!(
            Target::parse("https://node.example:7440/").unwrap(),
            Target::Tcp {
                authority: "node.example:7440".into(),
                tls: true
            }
        );
        // A bare host:port off loopback defaults to TLS; on loopback to plaintext.
        assert_eq!(
            Target::parse("10.1.2.3:7440").unwrap(),
            Target::Tcp {
                authority: "10.1.2.3:7440".into(),
                tls: true
            }
        );
        assert_eq!(
            Target::parse("localhost:7440").unwrap(),
            Target::Tcp {
                authority: "localhost:7440".into(),
                tls: false
            }
        );
        assert!(Target::parse("ftp://x:1").is_err());
        assert!(Target::parse("localhost").is_err());
        assert!(Target::parse("unix:").is_err());
    }

    #[test]
    fn default_target_is_the_data_dirs_socket() {
        let options = ConnectOptions {
            data_dir: Some("/d".into()),
            ..Default::default()
        };
        assert_eq!(
            options.target().unwrap(),
            Target::Unix("/d/mehrd.sock".into())
        );
    }

    #[test]
    fn tcp_without_token_names_the_missing_file() {
        let options = ConnectOptions {
            data_dir: Some("/nonexistent/mehr".into()),
            endpoint: Some("127.0.0.1:1".into()),
            ..Default::default()
        };
        let target = options.target().unwrap();
        let err = options.resolve_token(&target).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/mehr/api.token"),
            "{err}"
        );
    }

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("127.0.0.1:7440"), "127.0.0.1");
        assert_eq!(host_of("[::1]:7440"), "::1");
    }
}
