//! What this node offers: the operator's settings (prices, what to offer) and the facts read
//! from the other parts (interfaces, registered functions, free storage, memory), turned into
//! the `NodeCapabilities` the node signs and gossips.

use std::collections::BTreeMap;

use mehr_market::{
    CostStructure,
    capabilities::{
        Availability, Compute, CpuClass, Interface, Medium, NodeCapabilities, OfferedFunction,
        Services, Storage, StorageClass,
    },
    params::{MAX_DESCRIPTION_LEN, MAX_FUNCTION_NAME_LEN, MAX_FUNCTIONS, MAX_INTERFACES},
};
use serde::{Deserialize, Serialize};

use crate::{
    config::{Config, MarketConfig},
    seams::{
        functions::{FunctionKind, Price},
        storage::StorageTerms,
    },
    transport::InterfaceType,
};

/// What the node offers and at which prices; set by `[market]` and `UpdateOffer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferSettings {
    /// Advertise the mesh interfaces as relay capacity.
    pub offer_relay: bool,
    /// Advertise free object-store space.
    pub offer_storage: bool,
    /// Advertise compute (WASM and registered functions).
    pub offer_compute: bool,
    /// μMHR per relayed byte.
    pub relay_price_per_byte_umhr: u64,
    /// μMHR per stored byte per day.
    pub storage_price_per_byte_day_umhr: u64,
    /// μMHR per million WASM cycles (fuel).
    pub wasm_price_per_million_cycles_umhr: u64,
    /// Per-call prices that replace a served function's registered price, by function id.
    pub function_prices: BTreeMap<String, u64>,
    /// When the node is up.
    pub availability: Availability,
}

impl OfferSettings {
    /// The terms remote storage serves shards on under these settings.
    pub fn storage_terms(&self) -> StorageTerms {
        StorageTerms {
            offered: self.offer_storage,
            price_per_byte_day_umhr: self.storage_price_per_byte_day_umhr,
        }
    }

    /// The settings `config` describes: the market section, the transport's relay fee
    /// (rounded up to whole μMHR) and the compute section's WASM price.
    pub fn from_config(config: &Config) -> Self {
        let market = &config.market;
        OfferSettings {
            offer_relay: market.offer_relay,
            offer_storage: market.offer_storage,
            offer_compute: market.offer_compute,
            relay_price_per_byte_umhr: config.transport.cost_per_byte.max(0.0).ceil() as u64,
            storage_price_per_byte_day_umhr: market.storage_price_per_byte_day_umhr,
            wasm_price_per_million_cycles_umhr: config.compute.wasm_price_per_million_fuel_umhr,
            function_prices: BTreeMap::new(),
            availability: availability(&market.availability),
        }
    }
}

/// `always_on`, `solar`, `intermittent` (checked by the config).
pub(super) fn availability(name: &str) -> Availability {
    match name {
        "solar" => Availability::Solar,
        "intermittent" => Availability::Intermittent,
        _ => Availability::AlwaysOn,
    }
}

/// One mesh interface, as the transport reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InterfaceFact {
    /// Its type.
    pub kind: InterfaceType,
    /// Bits per second.
    pub bitrate: u64,
    /// Configured one-way latency (simulated links), milliseconds.
    pub latency_ms: u64,
}

/// One function this node can run, as the compute part lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FunctionFact {
    /// The function id.
    pub function_id: String,
    /// WASM or served.
    pub kind: FunctionKind,
    /// What it does.
    pub description: String,
    /// The registered price.
    pub price: Price,
    /// Calls at once.
    pub max_concurrency: u32,
    /// Largest input.
    pub max_input_bytes: u32,
}

/// Everything read from the node that goes into its advert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct LocalFacts {
    /// Top-level mesh interfaces (accepted TCP connections are not listed separately).
    pub interfaces: Vec<InterfaceFact>,
    /// Functions offered locally.
    pub functions: Vec<FunctionFact>,
    /// The most fuel a WASM call may burn.
    pub wasm_max_fuel: u64,
    /// Physical memory, MiB.
    pub memory_mb: u32,
    /// CPU cores.
    pub cpu_cores: usize,
    /// Bytes the object store can still take (quota left, bounded by free disk).
    pub storage_free_bytes: u64,
    /// Largest object.
    pub max_object_size: u64,
    /// Neighbours' functions resold under this node's agreements, prices marked up.
    pub resold: Vec<OfferedFunction>,
}

fn medium(kind: InterfaceType) -> Medium {
    match kind {
        InterfaceType::TcpServer | InterfaceType::TcpClient => Medium::Internet,
        InterfaceType::Udp => Medium::Ethernet,
        InterfaceType::Serial => Medium::Serial,
        InterfaceType::Sim => Medium::Other,
    }
}

fn cpu_class(config: &MarketConfig, cores: usize) -> CpuClass {
    match config.cpu_class.as_str() {
        "micro" => CpuClass::Micro,
        "low" => CpuClass::Low,
        "medium" => CpuClass::Medium,
        "high" => CpuClass::High,
        _ => match cores {
            0 | 1 => CpuClass::Low,
            2..=7 => CpuClass::Medium,
            _ => CpuClass::High,
        },
    }
}

fn storage_class(config: &MarketConfig) -> StorageClass {
    match config.storage_class.as_str() {
        "volatile" => StorageClass::Volatile,
        "flash" => StorageClass::Flash,
        "hdd" => StorageClass::Hdd,
        _ => StorageClass::Ssd,
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn clip(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The cost structure a remote consumer pays for `function`.
pub(super) fn function_cost(function: &FunctionFact, settings: &OfferSettings) -> CostStructure {
    match function.price {
        Price::PerInvocation(registered) => CostStructure::PerInvocation {
            per_call: settings
                .function_prices
                .get(&function.function_id)
                .copied()
                .unwrap_or(registered),
            max_input: function.max_input_bytes,
        },
        Price::PerMillionFuel(_) => CostStructure::PerCycle {
            per_million: settings.wasm_price_per_million_cycles_umhr,
            max_cycles: u64::MAX,
        },
    }
}

/// The capabilities the node advertises. Functions whose id is longer than an advert allows
/// (64 bytes: unnamed WASM modules are called by their 64-hex-digit module id) are left out;
/// at most 16 functions go in, local ones first.
pub(super) fn build_capabilities(
    facts: &LocalFacts,
    settings: &OfferSettings,
    config: &MarketConfig,
) -> NodeCapabilities {
    let interfaces = if settings.offer_relay {
        facts
            .interfaces
            .iter()
            .take(MAX_INTERFACES)
            .map(|i| Interface {
                medium: medium(i.kind),
                bandwidth_bps: i.bitrate,
                latency_ms: u32::try_from(i.latency_ms).unwrap_or(u32::MAX),
                reliability: if matches!(
                    i.kind,
                    InterfaceType::TcpServer | InterfaceType::TcpClient
                ) {
                    255
                } else {
                    230
                },
                cost_per_byte: settings.relay_price_per_byte_umhr,
                internet_gateway: config.internet_gateway,
            })
            .collect()
    } else {
        Vec::new()
    };
    let compute = settings.offer_compute.then(|| {
        let mut functions: Vec<OfferedFunction> = Vec::new();
        let mut own: Vec<&FunctionFact> = facts
            .functions
            .iter()
            .filter(|f| !f.function_id.is_empty() && f.function_id.len() <= MAX_FUNCTION_NAME_LEN)
            .collect();
        own.sort_by(|a, b| a.function_id.cmp(&b.function_id));
        for f in own {
            let mut cost = function_cost(f, settings);
            if let CostStructure::PerCycle { max_cycles, .. } = &mut cost {
                *max_cycles = facts.wasm_max_fuel.max(1);
            }
            functions.push(OfferedFunction {
                name: f.function_id.clone(),
                description: clip(&f.description, MAX_DESCRIPTION_LEN),
                cost,
                max_concurrent: f.max_concurrency,
            });
        }
        for resold in &facts.resold {
            if functions.iter().all(|f| f.name != resold.name) {
                functions.push(resold.clone());
            }
        }
        functions.truncate(MAX_FUNCTIONS);
        Compute {
            cpu_class: cpu_class(config, facts.cpu_cores),
            memory_mb: facts.memory_mb,
            mhr_byte: false,
            wasm: true,
            cost_per_million_cycles: settings.wasm_price_per_million_cycles_umhr,
            functions,
        }
    });
    let storage = (settings.offer_storage && facts.storage_free_bytes > 0).then(|| Storage {
        available_bytes: facts.storage_free_bytes,
        class: storage_class(config),
        cost_per_byte_day: settings.storage_price_per_byte_day_umhr,
        max_object_size: u32::try_from(facts.max_object_size).unwrap_or(u32::MAX),
        serves_content: true,
    });
    NodeCapabilities {
        interfaces,
        compute,
        storage,
        services: Services::default(),
        availability: settings.availability.clone(),
    }
}

/// Physical memory from `/proc/meminfo` (MiB), 0 where it cannot be read.
pub(super) fn memory_mb() -> u32 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| parse_mem_total_mb(&text))
        .unwrap_or(0)
}

fn parse_mem_total_mb(meminfo: &str) -> Option<u32> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    u32::try_from(kib / 1024).ok()
}

/// Bytes free for unprivileged use on the file system holding `path`.
pub(super) fn disk_free_bytes(path: &std::path::Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    Some(stat.blocks_available().saturating_mul(stat.fragment_size()))
}

#[cfg(test)]
mod tests {
    use mehr_market::NodeKey;

    use super::*;

    fn facts() -> LocalFacts {
        LocalFacts {
            interfaces: vec![InterfaceFact {
                kind: InterfaceType::TcpClient,
                bitrate: 10_000_000,
                latency_ms: 0,
            }],
            functions: vec![
                FunctionFact {
                    function_id: "embed".into(),
                    kind: FunctionKind::Served,
                    description: "é".repeat(100),
                    price: Price::PerInvocation(40),
                    max_concurrency: 4,
                    max_input_bytes: 1024,
                },
                FunctionFact {
                    function_id: format!("{}/run", "a".repeat(64)),
                    kind: FunctionKind::Wasm,
                    description: String::new(),
                    price: Price::PerMillionFuel(1),
                    max_concurrency: 64,
                    max_input_bytes: 1 << 20,
                },
                FunctionFact {
                    function_id: "tools/run".into(),
                    kind: FunctionKind::Wasm,
                    description: String::new(),
                    price: Price::PerMillionFuel(1),
                    max_concurrency: 64,
                    max_input_bytes: 1 << 20,
                },
            ],
            wasm_max_fuel: 1_000_000,
            memory_mb: 2048,
            cpu_cores: 2,
            storage_free_bytes: 5_000,
            max_object_size: 1 << 40,
            resold: vec![OfferedFunction {
                name: "far".into(),
                description: String::new(),
                cost: CostStructure::PerInvocation {
                    per_call: 11,
                    max_input: 10,
                },
                max_concurrent: 1,
            }],
        }
    }

    #[test]
    fn capabilities_follow_facts_and_settings_and_sign() {
        let config = Config::defaults();
        let mut settings = OfferSettings::from_config(&config);
        settings.function_prices.insert("embed".into(), 25);
        let caps = build_capabilities(&facts(), &settings, &config.market);
        let compute = caps.compute.as_ref().unwrap();
        let names: Vec<&str> = compute.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["embed", "tools/run", "far"], "long ids left out");
        assert_eq!(
            compute.functions[0].cost,
            CostStructure::PerInvocation {
                per_call: 25,
                max_input: 1024
            }
        );
        assert!(compute.functions[0].description.len() <= MAX_DESCRIPTION_LEN);
        assert_eq!(compute.cpu_class, CpuClass::Medium);
        assert_eq!(caps.storage.unwrap().max_object_size, u32::MAX);
        assert_eq!(caps.interfaces[0].medium, Medium::Internet);
        let key = NodeKey::new(ed25519_dalek::SigningKey::from_bytes(&[1; 32]), [2; 32]);
        caps.sign(&key, 1, 600)
            .expect("a built advert always signs");

        settings.offer_relay = false;
        settings.offer_storage = false;
        settings.offer_compute = false;
        let bare = build_capabilities(&facts(), &settings, &config.market);
        assert!(bare.interfaces.is_empty() && bare.compute.is_none() && bare.storage.is_none());
        bare.sign(&key, 2, 600).unwrap();
    }

    #[test]
    fn meminfo_is_parsed() {
        assert_eq!(
            parse_mem_total_mb("MemTotal:       24684084 kB\nMemFree: 1 kB\n"),
            Some(24105)
        );
        assert_eq!(parse_mem_total_mb("nothing"), None);
    }
}
