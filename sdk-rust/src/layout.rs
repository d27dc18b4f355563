//! Where a node keeps the files its clients need. The daemon creates them; clients only read.
//! Both sides use these names, so they are defined once, here.

use std::path::PathBuf;

/// The API's Unix socket, inside the data dir.
pub const SOCKET_FILE: &str = "mehrd.sock";
/// The bearer token for TCP API access, inside the data dir (hex, owner-only).
pub const TOKEN_FILE: &str = "api.token";
/// The self-signed API certificate (PEM), inside the data dir.
pub const TLS_CERT_FILE: &str = "tls/cert.pem";
/// Default TCP address of the API.
pub const DEFAULT_TCP_ENDPOINT: &str = "127.0.0.1:7440";

/// The default data directory: `$XDG_DATA_HOME/mehr` (usually `~/.local/share/mehr`) or the
/// platform's equivalent.
pub fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("network", "Mehr", "mehr")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from(".mehr"))
}
