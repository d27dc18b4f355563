//! Destination names and the hashes derived from them.
//!
//! A destination is named `app.aspect1.aspect2…`; its name hash is SHA-256 of that dotted
//! string, first 10 bytes. Destinations bound to an identity (SINGLE, and GROUP as Reticulum
//! creates them) hash as `SHA-256(name_hash ‖ identity_hash)[..16]`; PLAIN destinations hash as
//! `SHA-256(name_hash)[..16]`.

use crate::hashes::{DestinationHash, IdentityHash, NAME_HASH_LEN, NameHash, sha256, truncate};
use crate::identity::Identity;

/// App name of every Mehr destination.
pub const MEHR_APP_NAME: &str = "mehr";
/// Aspect of a Mehr node's control destination (`mehr.node`).
pub const MEHR_NODE_ASPECT: &str = "node";
/// App name of Reticulum's transport control destinations.
pub const TRANSPORT_APP_NAME: &str = "rnstransport";

/// Why a destination name is invalid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DestinationError {
    /// The app name is empty.
    #[error("destination app name is empty")]
    EmptyAppName,
    /// A component contains a dot, which would make the dotted name ambiguous.
    #[error("destination name component {component:?} contains a dot")]
    DotInComponent {
        /// The offending component.
        component: String,
    },
}

/// A destination's name: an app name and zero or more aspects, none containing dots.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DestinationName {
    app: String,
    aspects: Vec<String>,
}

impl DestinationName {
    /// A name from its app name and aspects.
    pub fn new(app: &str, aspects: &[&str]) -> Result<Self, DestinationError> {
        if app.is_empty() {
            return Err(DestinationError::EmptyAppName);
        }
        for component in std::iter::once(&app).chain(aspects.iter()) {
            if component.contains('.') {
                return Err(DestinationError::DotInComponent {
                    component: (*component).to_owned(),
                });
            }
        }
        Ok(Self {
            app: app.to_owned(),
            aspects: aspects.iter().map(|a| (*a).to_owned()).collect(),
        })
    }

    /// Splits a dotted name (`mehr.node`) into app name and aspects.
    pub fn parse(dotted: &str) -> Result<Self, DestinationError> {
        let mut parts = dotted.split('.');
        let app = parts.next().unwrap_or_default();
        let aspects: Vec<&str> = parts.collect();
        Self::new(app, &aspects)
    }

    /// `mehr.node`: every Mehr node's control destination.
    pub fn mehr_node() -> Self {
        Self {
            app: MEHR_APP_NAME.to_owned(),
            aspects: vec![MEHR_NODE_ASPECT.to_owned()],
        }
    }

    /// `rnstransport.path.request`: the PLAIN destination path requests are sent to.
    pub fn path_request() -> Self {
        Self {
            app: TRANSPORT_APP_NAME.to_owned(),
            aspects: vec!["path".to_owned(), "request".to_owned()],
        }
    }

    /// The app name.
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The aspects.
    pub fn aspects(&self) -> &[String] {
        &self.aspects
    }

    /// The dotted form that is hashed.
    pub fn dotted(&self) -> String {
        let mut out = self.app.clone();
        for aspect in &self.aspects {
            out.push('.');
            out.push_str(aspect);
        }
        out
    }

    /// SHA-256 of the dotted name, first 10 bytes.
    pub fn name_hash(&self) -> NameHash {
        let full = sha256(self.dotted().as_bytes());
        let mut out = [0u8; NAME_HASH_LEN];
        out.copy_from_slice(&full[..NAME_HASH_LEN]);
        NameHash(out)
    }

    /// The hash of this name bound to `identity` (SINGLE destinations).
    pub fn single_hash(&self, identity: &Identity) -> DestinationHash {
        destination_hash(&self.name_hash(), Some(&identity.hash()))
    }

    /// The hash of this name without an identity (PLAIN destinations).
    pub fn plain_hash(&self) -> DestinationHash {
        destination_hash(&self.name_hash(), None)
    }
}

impl std::fmt::Display for DestinationName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.dotted())
    }
}

/// `SHA-256(name_hash ‖ identity_hash?)[..16]`.
pub fn destination_hash(name_hash: &NameHash, identity: Option<&IdentityHash>) -> DestinationHash {
    let mut material = [0u8; NAME_HASH_LEN + IdentityHash::LEN];
    material[..NAME_HASH_LEN].copy_from_slice(name_hash.as_bytes());
    let len = match identity {
        Some(id) => {
            material[NAME_HASH_LEN..].copy_from_slice(id.as_bytes());
            material.len()
        }
        None => NAME_HASH_LEN,
    };
    DestinationHash(truncate(&sha256(&material[..len])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::PrivateIdentity;

    #[test]
    fn names_are_validated_and_dotted() {
        assert_eq!(
            DestinationName::parse("mehr.node").unwrap(),
            DestinationName::mehr_node()
        );
        assert_eq!(DestinationName::mehr_node().dotted(), "mehr.node");
        assert_eq!(
            DestinationName::new("", &[]),
            Err(DestinationError::EmptyAppName)
        );
        assert_eq!(
            DestinationName::new("a", &["b.c"]),
            Err(DestinationError::DotInComponent {
                component: "b.c".into()
            })
        );
        assert_eq!(DestinationName::parse("app").unwrap().aspects().len(), 0);
    }

    #[test]
    fn name_hash_is_truncated_sha256_of_dotted_name() {
        let name = DestinationName::path_request();
        assert_eq!(
            name.name_hash().0,
            sha256(b"rnstransport.path.request")[..10]
        );
        assert_eq!(name.plain_hash().0, sha256(&name.name_hash().0)[..16]);
    }

    #[test]
    fn single_hash_binds_identity() {
        let a = PrivateIdentity::from_private_key(&[1; 64]);
        let b = PrivateIdentity::from_private_key(&[2; 64]);
        let name = DestinationName::mehr_node();
        assert_ne!(name.single_hash(a.public()), name.single_hash(b.public()));
        let mut material = name.name_hash().0.to_vec();
        material.extend_from_slice(a.hash().as_bytes());
        assert_eq!(name.single_hash(a.public()).0, sha256(&material)[..16]);
    }
}
