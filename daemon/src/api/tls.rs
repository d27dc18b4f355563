//! The API's TLS material: a self-signed certificate generated into the data dir on first
//! need, valid for localhost, the loopback addresses, the host name and the operator's extra
//! names. It is regenerated when that list of names changes, so adding a name to the config is
//! enough to reach the node under it.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::data_dir::{self, DataDirError};

/// PEM certificate and key for the API's TLS listeners.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// The certificate's path (give it to clients as their CA).
    pub cert_path: PathBuf,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM.
    pub key_pem: String,
}

/// Why the TLS material could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("cannot generate the API certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
}

/// Loads the certificate from `<data_dir>/tls/`, or (re)generates it when missing or when its
/// names differ from `extra_names` plus the defaults.
pub fn load_or_generate(data_dir: &Path, extra_names: &[String]) -> Result<TlsMaterial, TlsError> {
    let dir = data_dir.join("tls");
    let cert_path = data_dir.join(mehr_sdk::layout::TLS_CERT_FILE);
    let key_path = dir.join("key.pem");
    let names_path = dir.join("names");
    let names = certificate_names(extra_names);
    let wanted = names.join("\n");

    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataDirError::Io { path, source }
    };
    if let (Ok(cert_pem), Ok(recorded)) = (
        fs::read_to_string(&cert_path),
        fs::read_to_string(&names_path),
    ) && recorded == wanted
    {
        let key_pem = String::from_utf8_lossy(&data_dir::read_secret_file(&key_path)?).into_owned();
        return Ok(TlsMaterial {
            cert_path,
            cert_pem,
            key_pem,
        });
    }

    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let generated = rcgen::generate_simple_self_signed(names)?;
    let cert_pem = generated.cert.pem();
    let key_pem = generated.signing_key.serialize_pem();
    for path in [&key_path, &cert_path, &names_path] {
        match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(path)(e).into()),
            _ => {}
        }
    }
    data_dir::write_secret_file(&key_path, key_pem.as_bytes()).map_err(io(&key_path))?;
    fs::write(&cert_path, &cert_pem).map_err(io(&cert_path))?;
    fs::write(&names_path, &wanted).map_err(io(&names_path))?;
    Ok(TlsMaterial {
        cert_path,
        cert_pem,
        key_pem,
    })
}

/// The certificate's subject alternative names, sorted and deduplicated.
fn certificate_names(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Ok(host) = nix::unistd::gethostname()
        && let Some(host) = host.to_str().filter(|h| !h.is_empty())
    {
        names.push(host.to_string());
    }
    names.extend(extra.iter().cloned());
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_and_regenerated_when_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_generate(dir.path(), &[]).unwrap();
        assert!(first.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let again = load_or_generate(dir.path(), &[]).unwrap();
        assert_eq!(
            first.cert_pem, again.cert_pem,
            "unchanged names keep the certificate"
        );
        let renamed = load_or_generate(dir.path(), &["node.example".to_string()]).unwrap();
        assert_ne!(first.cert_pem, renamed.cert_pem);
    }
}
