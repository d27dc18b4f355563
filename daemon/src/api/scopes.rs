//! Which scope each RPC needs: one table, read by the access layer ([`super::auth`]) and
//! listed in docs/API.md. A token holds one or more scopes; `admin` satisfies every method.
//! A method missing from the table is refused on TCP (a unit test walks the descriptor set so
//! that no method of `mehr.v1` is missing).

use mehr_proto::v1::TokenScope;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Everything: minting tokens, changing settings and the node's configuration, shutting
    /// down, deploying modules, and every method of the other scopes.
    Admin,
    /// Methods that only read.
    Readonly,
    /// Serve and invoke functions, and messaging.
    Invoke,
    /// Moving money: channels, payments, agreements, buying storage.
    Pay,
}

impl Scope {
    /// Every scope, in the order docs/API.md lists them.
    pub const ALL: [Scope; 4] = [Scope::Admin, Scope::Readonly, Scope::Invoke, Scope::Pay];

    /// The name used by the CLI, the token file and docs.
    pub const fn name(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Readonly => "readonly",
            Scope::Invoke => "invoke",
            Scope::Pay => "pay",
        }
    }

    /// The scope called `name`.
    pub fn from_name(name: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The scope as the API sends it.
    pub fn to_proto(self) -> TokenScope {
        match self {
            Scope::Admin => TokenScope::Admin,
            Scope::Readonly => TokenScope::Readonly,
            Scope::Invoke => TokenScope::Invoke,
            Scope::Pay => TokenScope::Pay,
        }
    }

    /// The scope of an API value; `None` for UNSPECIFIED or an unknown number.
    pub fn from_proto(value: i32) -> Option<Scope> {
        match TokenScope::try_from(value).ok()? {
            TokenScope::Admin => Some(Scope::Admin),
            TokenScope::Readonly => Some(Scope::Readonly),
            TokenScope::Invoke => Some(Scope::Invoke),
            TokenScope::Pay => Some(Scope::Pay),
            TokenScope::Unspecified => None,
        }
    }

    /// True when a token holding `held` may call a method that needs `self`.
    pub fn granted_by(self, held: &[Scope]) -> bool {
        held.iter().any(|h| *h == Scope::Admin || *h == self)
    }

    /// True for scopes whose calls start new work (a drained node refuses them).
    pub const fn starts_work(self) -> bool {
        matches!(self, Scope::Invoke | Scope::Pay)
    }
}

use Scope::{Admin, Invoke, Pay, Readonly};

/// Every method of `mehr.v1` (its HTTP/2 path) and the scope it needs.
pub const METHOD_SCOPES: &[(&str, Scope)] = &[
    // NodeService
    ("/mehr.v1.NodeService/GetInfo", Readonly),
    ("/mehr.v1.NodeService/WatchEvents", Readonly),
    // TransportService: reading the tables is harmless; adding interfaces or sending path
    // requests and announces changes what the node does on the mesh.
    ("/mehr.v1.TransportService/ListInterfaces", Readonly),
    ("/mehr.v1.TransportService/CreateInterface", Admin),
    ("/mehr.v1.TransportService/DeleteInterface", Admin),
    ("/mehr.v1.TransportService/ListPaths", Readonly),
    ("/mehr.v1.TransportService/ListNeighbours", Readonly),
    ("/mehr.v1.TransportService/RequestPath", Admin),
    ("/mehr.v1.TransportService/Announce", Admin),
    ("/mehr.v1.TransportService/GetStats", Readonly),
    // MessagingService: all of it is `invoke` (listening reads other apps' messages).
    ("/mehr.v1.MessagingService/Listen", Invoke),
    ("/mehr.v1.MessagingService/Send", Invoke),
    ("/mehr.v1.MessagingService/Reply", Invoke),
    // ComputeService: deploying code is admin; calling and serving functions is invoke.
    ("/mehr.v1.ComputeService/DeployModule", Admin),
    ("/mehr.v1.ComputeService/DeleteModule", Admin),
    ("/mehr.v1.ComputeService/ListFunctions", Readonly),
    ("/mehr.v1.ComputeService/Invoke", Invoke),
    ("/mehr.v1.ComputeService/InvokeStream", Invoke),
    ("/mehr.v1.ComputeService/Serve", Invoke),
    // StorageService: writing the node's disk is admin; buying storage on providers is pay.
    ("/mehr.v1.StorageService/PutObject", Admin),
    ("/mehr.v1.StorageService/GetObject", Readonly),
    ("/mehr.v1.StorageService/StatObject", Readonly),
    ("/mehr.v1.StorageService/ListObjects", Readonly),
    ("/mehr.v1.StorageService/DeleteObject", Admin),
    ("/mehr.v1.StorageService/ReplicateObject", Pay),
    ("/mehr.v1.StorageService/ChallengeObject", Admin),
    // LedgerService: trust decides who relays for free, so it is admin.
    ("/mehr.v1.LedgerService/GetBalance", Readonly),
    ("/mehr.v1.LedgerService/ListChannels", Readonly),
    ("/mehr.v1.LedgerService/OpenChannel", Pay),
    ("/mehr.v1.LedgerService/Pay", Pay),
    ("/mehr.v1.LedgerService/SettleChannel", Pay),
    ("/mehr.v1.LedgerService/ListTrusted", Readonly),
    ("/mehr.v1.LedgerService/SetTrust", Admin),
    ("/mehr.v1.LedgerService/GetLedger", Readonly),
    ("/mehr.v1.LedgerService/VerifyTicket", Readonly),
    // MarketService: the offer (prices) is admin; agreements commit money, so they are pay;
    // a verified invocation is a function call, so it is invoke.
    ("/mehr.v1.MarketService/GetOffer", Readonly),
    ("/mehr.v1.MarketService/UpdateOffer", Admin),
    ("/mehr.v1.MarketService/Discover", Readonly),
    ("/mehr.v1.MarketService/ListAgreements", Readonly),
    ("/mehr.v1.MarketService/GetAgreement", Readonly),
    ("/mehr.v1.MarketService/ProposeAgreement", Pay),
    ("/mehr.v1.MarketService/AcceptAgreement", Pay),
    ("/mehr.v1.MarketService/CancelAgreement", Pay),
    ("/mehr.v1.MarketService/InvokeVerified", Invoke),
    ("/mehr.v1.MarketService/ListReputation", Readonly),
    ("/mehr.v1.MarketService/WatchAgreements", Readonly),
    ("/mehr.v1.MarketService/GetMarketStats", Readonly),
    // AdminService
    ("/mehr.v1.AdminService/CreateToken", Admin),
    ("/mehr.v1.AdminService/ListTokens", Admin),
    ("/mehr.v1.AdminService/RevokeToken", Admin),
    ("/mehr.v1.AdminService/GetStatus", Readonly),
    ("/mehr.v1.AdminService/GetConfig", Admin),
    ("/mehr.v1.AdminService/UpdateSettings", Admin),
    ("/mehr.v1.AdminService/Drain", Admin),
    ("/mehr.v1.AdminService/Resume", Admin),
    ("/mehr.v1.AdminService/Shutdown", Admin),
];

/// Path prefixes open to every caller, token or not: health checks (load balancers and the
/// kubelet send no token) and reflection (it lists what the public protos say anyway).
pub const OPEN_PATHS: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.",
    "/grpc.reflection.v1alpha.",
];

/// The scope `path` needs; `None` for a path not in the table.
pub fn required_scope(path: &str) -> Option<Scope> {
    METHOD_SCOPES
        .iter()
        .find(|(method, _)| *method == path)
        .map(|(_, scope)| *scope)
}

/// True for paths open without a token.
pub fn is_open(path: &str) -> bool {
    OPEN_PATHS.iter().any(|open| path.starts_with(open))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message as _;
    use prost_types::FileDescriptorSet;

    use super::*;

    /// Every method of every `mehr.v1` service in the descriptor set the daemon serves.
    fn described_methods() -> BTreeSet<String> {
        let set = FileDescriptorSet::decode(mehr_proto::FILE_DESCRIPTOR_SET).unwrap();
        let mut methods = BTreeSet::new();
        for file in set.file {
            if file.package() != "mehr.v1" {
                continue;
            }
            for service in &file.service {
                for method in &service.method {
                    methods.insert(format!("/mehr.v1.{}/{}", service.name(), method.name()));
                }
            }
        }
        methods
    }

    #[test]
    fn every_described_method_has_a_scope() {
        let described = described_methods();
        assert!(described.len() > 50, "descriptor set read: {described:?}");
        let unmapped: Vec<_> = described
            .iter()
            .filter(|m| required_scope(m).is_none())
            .collect();
        assert!(
            unmapped.is_empty(),
            "methods without a scope in METHOD_SCOPES: {unmapped:?}"
        );
        let mapped: BTreeSet<String> = METHOD_SCOPES.iter().map(|(m, _)| m.to_string()).collect();
        let stale: Vec<_> = mapped.difference(&described).collect();
        assert!(
            stale.is_empty(),
            "METHOD_SCOPES names no such method: {stale:?}"
        );
        assert_eq!(
            mapped.len(),
            METHOD_SCOPES.len(),
            "a method is listed twice"
        );
    }

    #[test]
    fn admin_grants_everything_and_others_only_their_own() {
        for (_, needed) in METHOD_SCOPES {
            assert!(needed.granted_by(&[Scope::Admin]));
            for held in Scope::ALL {
                assert_eq!(
                    needed.granted_by(&[held]),
                    held == Scope::Admin || held == *needed
                );
            }
        }
        assert!(Scope::Pay.granted_by(&[Scope::Readonly, Scope::Pay]));
    }

    #[test]
    fn scope_names_round_trip() {
        for scope in Scope::ALL {
            assert_eq!(Scope::from_name(scope.name()), Some(scope));
            assert_eq!(Scope::from_proto(scope.to_proto() as i32), Some(scope));
        }
        assert_eq!(Scope::from_name("root"), None);
        assert_eq!(Scope::from_proto(0), None);
    }

    #[test]
    fn docs_list_every_method_with_its_scope() {
        let doc = include_str!("../../../docs/API.md");
        for (path, scope) in METHOD_SCOPES {
            let method = path.trim_start_matches("/mehr.v1.");
            let row = format!("| `{method}` | {} |", scope.name());
            assert!(doc.contains(&row), "docs/API.md lacks the row {row}");
        }
    }
}
