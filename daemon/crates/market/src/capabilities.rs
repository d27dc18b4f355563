//! `NodeCapabilities` (seed 000, §5): what a node offers, signed by the node and versioned by
//! a per-node sequence number.
//!
//! # Advert layout (fixed little-endian, §8 item 24 conventions)
//!
//! ```text
//! off 0   version            u8     0x10 (v1.0)
//! off 1   node_id            [16]   SHA-256(identity public key)[..16]
//! off 17  seq                u64    strictly grows per node; every refresh re-signs with seq+1
//! off 25  ttl_seconds        u32    lifetime from receipt (decision 8: no absolute time)
//! off 29  services           u8     b0 pubsub, b1 dht, b2 naming; other bits must be 0
//! off 30  interfaces         u16 n, then n × 23 B:
//!           medium u8, bandwidth_bps u64, latency_ms u32, reliability u8 (0 unknown … 255
//!           perfect), cost_per_byte u64, internet_gateway bool
//!         compute            presence u8, then: cpu_class u8, memory_mb u32, mhr_byte bool,
//!           wasm bool, cost_per_million_cycles u64, functions u16 n, then n ×
//!           {name str16, description str16, cost CostStructure, max_concurrent u32}
//!         storage            presence u8, then: available_bytes u64, class u8,
//!           cost_per_byte_day u64, max_object_size u32, serves_content bool
//!         availability       u8 (0 AlwaysOn, 1 Solar, 2 Intermittent, 3 Scheduled), then for
//!           Scheduled: u16 n, n × {start_minute u16 (UTC minute of day), duration_minutes u16}
//! end-64  signature          [64]   Ed25519 over Blake3("mehr/market/capabilities/v1" ‖ all
//!                                   bytes before it)
//! ```
//!
//! A function's id is `Blake3(name)` and is derived, not sent: an id that does not match its
//! name cannot be expressed.

use std::fmt;

use ed25519_dalek::Signature;
use mehr_ledger::NodeId;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cost::CostStructure;
use crate::identity::{NodeKey, PeerKey};
use crate::params::{
    ADVERT_VERSION, MAX_ADVERT_LEN, MAX_DESCRIPTION_LEN, MAX_FUNCTION_NAME_LEN, MAX_FUNCTIONS,
    MAX_INTERFACES, MAX_SCHEDULE_WINDOWS, MAX_TTL_SECONDS, MINUTES_PER_DAY,
};
use crate::signing::{MarketTag, SIGNATURE_LEN, sign, verify};
use crate::wire::{DecodeError, Reader, ReaderExt, Writer, check_size};

const WHAT: &str = "capability advert";

/// A link medium an interface runs on; u8 codes in declaration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Medium {
    /// 0: LoRa radio.
    LoRa,
    /// 1: WiFi.
    WiFi,
    /// 2: Bluetooth / BLE.
    Bluetooth,
    /// 3: cellular (LTE, NB-IoT).
    Cellular,
    /// 4: wired Ethernet.
    Ethernet,
    /// 5: serial line (KISS, packet radio).
    Serial,
    /// 6: an overlay over the Internet (TCP or UDP).
    Internet,
    /// 7: anything else.
    Other,
}

impl Medium {
    const ALL: [Medium; 8] = [
        Medium::LoRa,
        Medium::WiFi,
        Medium::Bluetooth,
        Medium::Cellular,
        Medium::Ethernet,
        Medium::Serial,
        Medium::Internet,
        Medium::Other,
    ];
}

/// One interface the node relays over (the seeds' connectivity group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Interface {
    /// The medium.
    pub medium: Medium,
    /// Bandwidth, bits per second.
    pub bandwidth_bps: u64,
    /// One-way latency, milliseconds.
    pub latency_ms: u32,
    /// 0 = unknown, 255 = perfect.
    pub reliability: u8,
    /// Relay price over this interface, μ per byte.
    pub cost_per_byte: u64,
    /// Whether the interface reaches the Internet (the node is a gateway).
    pub internet_gateway: bool,
}

/// CPU class of a compute offer; u8 codes in declaration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CpuClass {
    /// 0: microcontroller.
    Micro,
    /// 1: single-board computer.
    Low,
    /// 2: desktop class.
    Medium,
    /// 3: server or GPU class.
    High,
}

impl CpuClass {
    const ALL: [CpuClass; 4] = [
        CpuClass::Micro,
        CpuClass::Low,
        CpuClass::Medium,
        CpuClass::High,
    ];
}

/// A function's id: `Blake3(name)` (brief; seed 000 "function_id = hash").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct FunctionId(pub [u8; 32]);

impl FunctionId {
    /// The id of the function called `name`.
    pub fn of(name: &str) -> Self {
        Self(*blake3::hash(name.as_bytes()).as_bytes())
    }
}

impl fmt::Debug for FunctionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FunctionId({})", hex::encode(self.0))
    }
}

impl fmt::Display for FunctionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A named function the node serves (e.g. `whisper-small`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OfferedFunction {
    /// Function name, 1..=64 UTF-8 bytes, unique within the advert.
    pub name: String,
    /// Human-readable description, at most 128 bytes.
    pub description: String,
    /// Price.
    pub cost: CostStructure,
    /// Calls served at once.
    pub max_concurrent: u32,
}

impl OfferedFunction {
    /// `Blake3(name)`.
    pub fn id(&self) -> FunctionId {
        FunctionId::of(&self.name)
    }
}

/// The compute group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Compute {
    /// CPU class.
    pub cpu_class: CpuClass,
    /// Memory available to jobs, MiB.
    pub memory_mb: u32,
    /// Runs MHR-Byte contracts.
    pub mhr_byte: bool,
    /// Runs WASM.
    pub wasm: bool,
    /// Price of contract/WASM execution, μ per million cycles (the `PerCycle` unit; the seeds'
    /// `cost_per_cycle` in μ per cycle would make one cycle cost at least 1 μ).
    pub cost_per_million_cycles: u64,
    /// Named functions served.
    pub functions: Vec<OfferedFunction>,
}

/// Storage medium class; u8 codes in declaration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StorageClass {
    /// 0: RAM, lost on restart.
    Volatile,
    /// 1: flash.
    Flash,
    /// 2: solid-state disk.
    Ssd,
    /// 3: spinning disk.
    Hdd,
}

impl StorageClass {
    const ALL: [StorageClass; 4] = [
        StorageClass::Volatile,
        StorageClass::Flash,
        StorageClass::Ssd,
        StorageClass::Hdd,
    ];
}

/// The storage group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Storage {
    /// Free space offered, bytes.
    pub available_bytes: u64,
    /// Medium class.
    pub class: StorageClass,
    /// Price, μ per byte per day.
    pub cost_per_byte_day: u64,
    /// Largest object accepted, bytes.
    pub max_object_size: u32,
    /// Serves content to third parties (not only to the payer).
    pub serves_content: bool,
}

/// One daily online window, in UTC minutes (a recurring pattern, not a timestamp).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DailyWindow {
    /// Start, minutes after 00:00 UTC, `< 1440`.
    pub start_minute: u16,
    /// Length, minutes, `1..=1440`; may wrap past midnight.
    pub duration_minutes: u16,
}

/// When the node is reachable; u8 codes in declaration order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Availability {
    /// 0: always on.
    AlwaysOn,
    /// 1: solar powered, online in daylight.
    Solar,
    /// 2: comes and goes (phones).
    Intermittent,
    /// 3: online in the listed daily windows (at most 8).
    Scheduled(Vec<DailyWindow>),
}

/// Network services beyond relay, compute and storage (beacon caps b5–b7). Not in the seeds'
/// struct; added so the beacon's caps can be derived from the advert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Services {
    /// Publish/subscribe.
    pub pubsub: bool,
    /// DHT node.
    pub dht: bool,
    /// Name service.
    pub naming: bool,
}

impl Services {
    fn to_bits(self) -> u8 {
        u8::from(self.pubsub) | (u8::from(self.dht) << 1) | (u8::from(self.naming) << 2)
    }

    fn from_bits(bits: u8) -> Option<Self> {
        (bits & !0b111 == 0).then_some(Self {
            pubsub: bits & 1 != 0,
            dht: bits & 2 != 0,
            naming: bits & 4 != 0,
        })
    }
}

/// The capability kinds discovery indexes. Codes 0–7 are the PresenceBeacon caps bits (§5);
/// code 8 (`Function`, "serves named functions") exists only in summaries and queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CapabilityKind {
    /// 0: relays packets (has at least one interface). Priced per byte.
    Relay,
    /// 1: Internet gateway. Priced per byte over its gateway interfaces.
    Gateway,
    /// 2: storage with free space. Priced per byte per day.
    Storage,
    /// 3: runs MHR-Byte contracts. Priced per million cycles.
    MhrByte,
    /// 4: runs WASM. Priced per million cycles.
    Wasm,
    /// 5: publish/subscribe. No price in the advert.
    PubSub,
    /// 6: DHT. No price in the advert.
    Dht,
    /// 7: naming. No price in the advert.
    Naming,
    /// 8: serves named functions. Priced per the function's cost structure.
    Function,
}

impl CapabilityKind {
    /// Every kind, in code order.
    pub const ALL: [CapabilityKind; 9] = [
        CapabilityKind::Relay,
        CapabilityKind::Gateway,
        CapabilityKind::Storage,
        CapabilityKind::MhrByte,
        CapabilityKind::Wasm,
        CapabilityKind::PubSub,
        CapabilityKind::Dht,
        CapabilityKind::Naming,
        CapabilityKind::Function,
    ];

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Parses a wire code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

/// Everything a node advertises (seed 000), before signing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeCapabilities {
    /// Interfaces it relays over (at most 8).
    pub interfaces: Vec<Interface>,
    /// Compute offer, if any.
    pub compute: Option<Compute>,
    /// Storage offer, if any.
    pub storage: Option<Storage>,
    /// Other services.
    pub services: Services,
    /// Availability pattern.
    pub availability: Availability,
}

/// Why an advert was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CapabilityError {
    /// The bytes are not a well-formed advert.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The capabilities break a limit and cannot be signed.
    #[error("capabilities: {field} is invalid: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The supplied key hashes to another node than the advert names.
    #[error("advert names node {advertised} but the key given belongs to {expected}")]
    WrongNode {
        /// Node id of the supplied key.
        expected: NodeId,
        /// Node id in the advert.
        advertised: NodeId,
    },
    /// The signature does not verify under the node's key.
    #[error("advert of node {node} (seq {seq}): signature does not verify")]
    BadSignature {
        /// The advertised node.
        node: NodeId,
        /// The advert's sequence number.
        seq: u64,
    },
    /// The sequence number is not above the one already held.
    #[error("advert of node {node}: seq {received} is not above the stored seq {stored}")]
    Stale {
        /// The advertised node.
        node: NodeId,
        /// Sequence number already held.
        stored: u64,
        /// Sequence number received.
        received: u64,
    },
    /// The advert's lifetime has already run out.
    #[error("advert of node {node}: expired (ttl {ttl_seconds} s, age {age_seconds} s)")]
    Expired {
        /// The advertised node.
        node: NodeId,
        /// The advert's ttl.
        ttl_seconds: u32,
        /// Age reported by the relaying node (0 when received from the origin).
        age_seconds: u32,
    },
}

/// A signed advert: the node id, sequence number, ttl and capabilities, with the encoded bytes
/// kept so that relaying never re-encodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapabilityAdvert {
    node_id: NodeId,
    seq: u64,
    ttl_seconds: u32,
    capabilities: NodeCapabilities,
    signature: Signature,
    bytes: Vec<u8>,
}

impl NodeCapabilities {
    /// Signs the capabilities as `key`'s advert number `seq` with a lifetime of `ttl_seconds`
    /// from receipt. Fails if a limit is broken (the same limits the decoder enforces).
    pub fn sign(
        &self,
        key: &NodeKey,
        seq: u64,
        ttl_seconds: u32,
    ) -> Result<CapabilityAdvert, CapabilityError> {
        check_ttl(ttl_seconds)
            .map_err(|(field, reason)| CapabilityError::Invalid { field, reason })?;
        self.check()
            .map_err(|(field, reason)| CapabilityError::Invalid { field, reason })?;
        let mut w = Writer::new();
        w.u8(ADVERT_VERSION);
        w.raw(&key.node_id().0);
        w.u64(seq);
        w.u32(ttl_seconds);
        self.write(&mut w);
        if w.len() + SIGNATURE_LEN > MAX_ADVERT_LEN {
            return Err(CapabilityError::Invalid {
                field: "advert",
                reason: "encoded advert exceeds 2048 bytes",
            });
        }
        let mut bytes = w.into_bytes();
        let signature = sign(key, MarketTag::Capabilities, &bytes);
        bytes.extend_from_slice(&signature.to_bytes());
        Ok(CapabilityAdvert {
            node_id: key.node_id(),
            seq,
            ttl_seconds,
            capabilities: self.clone(),
            signature,
            bytes,
        })
    }

    /// Whether the node offers `kind`.
    pub fn offers(&self, kind: CapabilityKind) -> bool {
        match kind {
            CapabilityKind::Relay => !self.interfaces.is_empty(),
            CapabilityKind::Gateway => self.interfaces.iter().any(|i| i.internet_gateway),
            CapabilityKind::Storage => self.storage.is_some_and(|s| s.available_bytes > 0),
            CapabilityKind::MhrByte => self.compute.as_ref().is_some_and(|c| c.mhr_byte),
            CapabilityKind::Wasm => self.compute.as_ref().is_some_and(|c| c.wasm),
            CapabilityKind::PubSub => self.services.pubsub,
            CapabilityKind::Dht => self.services.dht,
            CapabilityKind::Naming => self.services.naming,
            CapabilityKind::Function => self
                .compute
                .as_ref()
                .is_some_and(|c| !c.functions.is_empty()),
        }
    }

    /// The lowest unit price (μ) for `kind`, `None` when the kind is not offered or carries no
    /// price. For [`CapabilityKind::Function`] it is the cheapest function's unit price.
    pub fn unit_price(&self, kind: CapabilityKind) -> Option<u64> {
        if !self.offers(kind) {
            return None;
        }
        match kind {
            CapabilityKind::Relay => self.interfaces.iter().map(|i| i.cost_per_byte).min(),
            CapabilityKind::Gateway => self
                .interfaces
                .iter()
                .filter(|i| i.internet_gateway)
                .map(|i| i.cost_per_byte)
                .min(),
            CapabilityKind::Storage => self.storage.map(|s| s.cost_per_byte_day),
            CapabilityKind::MhrByte | CapabilityKind::Wasm => {
                self.compute.as_ref().map(|c| c.cost_per_million_cycles)
            }
            CapabilityKind::Function => self
                .compute
                .as_ref()
                .and_then(|c| c.functions.iter().map(|f| f.cost.unit_price()).min()),
            CapabilityKind::PubSub | CapabilityKind::Dht | CapabilityKind::Naming => None,
        }
    }

    /// The offered function with this id, if any.
    pub fn function(&self, id: &FunctionId) -> Option<&OfferedFunction> {
        self.compute
            .as_ref()?
            .functions
            .iter()
            .find(|f| f.id() == *id)
    }

    /// The PresenceBeacon caps bits (§5): b0 relay … b7 naming.
    pub fn beacon_caps(&self) -> u16 {
        CapabilityKind::ALL
            .iter()
            .filter(|k| k.code() < 8 && self.offers(**k))
            .fold(0u16, |bits, k| bits | (1 << k.code()))
    }

    fn check(&self) -> Result<(), (&'static str, &'static str)> {
        if self.interfaces.len() > MAX_INTERFACES {
            return Err(("interfaces", "more than 8 interfaces"));
        }
        if let Some(compute) = &self.compute {
            if compute.functions.len() > MAX_FUNCTIONS {
                return Err(("functions", "more than 16 functions"));
            }
            for (i, f) in compute.functions.iter().enumerate() {
                if f.name.is_empty() || f.name.len() > MAX_FUNCTION_NAME_LEN {
                    return Err(("function name", "must be 1 to 64 bytes"));
                }
                if f.description.len() > MAX_DESCRIPTION_LEN {
                    return Err(("function description", "longer than 128 bytes"));
                }
                if compute.functions.iter().take(i).any(|g| g.name == f.name) {
                    return Err(("function name", "listed twice"));
                }
            }
        }
        if let Availability::Scheduled(windows) = &self.availability {
            if windows.is_empty() || windows.len() > MAX_SCHEDULE_WINDOWS {
                return Err(("schedule", "must hold 1 to 8 windows"));
            }
            for w in windows {
                if w.start_minute >= MINUTES_PER_DAY {
                    return Err(("schedule start_minute", "must be below 1440"));
                }
                if w.duration_minutes == 0 || w.duration_minutes > MINUTES_PER_DAY {
                    return Err(("schedule duration_minutes", "must be 1 to 1440"));
                }
            }
        }
        Ok(())
    }

    fn write(&self, w: &mut Writer) {
        w.u8(self.services.to_bits());
        w.count16(self.interfaces.len());
        for i in &self.interfaces {
            w.u8(i.medium as u8);
            w.u64(i.bandwidth_bps);
            w.u32(i.latency_ms);
            w.u8(i.reliability);
            w.u64(i.cost_per_byte);
            w.bool(i.internet_gateway);
        }
        match &self.compute {
            None => w.u8(0),
            Some(c) => {
                w.u8(1);
                w.u8(c.cpu_class as u8);
                w.u32(c.memory_mb);
                w.bool(c.mhr_byte);
                w.bool(c.wasm);
                w.u64(c.cost_per_million_cycles);
                w.count16(c.functions.len());
                for f in &c.functions {
                    w.str16(&f.name);
                    w.str16(&f.description);
                    f.cost.write(w);
                    w.u32(f.max_concurrent);
                }
            }
        }
        match &self.storage {
            None => w.u8(0),
            Some(s) => {
                w.u8(1);
                w.u64(s.available_bytes);
                w.u8(s.class as u8);
                w.u64(s.cost_per_byte_day);
                w.u32(s.max_object_size);
                w.bool(s.serves_content);
            }
        }
        match &self.availability {
            Availability::AlwaysOn => w.u8(0),
            Availability::Solar => w.u8(1),
            Availability::Intermittent => w.u8(2),
            Availability::Scheduled(windows) => {
                w.u8(3);
                w.count16(windows.len());
                for win in windows {
                    w.u16(win.start_minute);
                    w.u16(win.duration_minutes);
                }
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // Least encoded sizes of the listed elements, so a count the advert cannot hold is
        // refused before room is reserved for it: an interface is fixed (medium, bandwidth,
        // latency, reliability, cost, gateway flag); a function is two empty strings, the
        // shortest cost and its concurrency; a window is its start and duration.
        const INTERFACE_LEN: usize = 1 + 8 + 4 + 1 + 8 + 1;
        const MIN_FUNCTION_LEN: usize = 2 + 2 + (1 + 8) + 4;
        const WINDOW_LEN: usize = 2 + 2;
        let services_bits = r.u8()?;
        let services = Services::from_bits(services_bits)
            .ok_or_else(|| r.invalid("services", "reserved bits set"))?;
        let n = r.count16("interfaces", MAX_INTERFACES, INTERFACE_LEN)?;
        let mut interfaces = Vec::with_capacity(n);
        for _ in 0..n {
            let code = r.u8()?;
            let medium = *Medium::ALL
                .get(usize::from(code))
                .ok_or_else(|| r.unknown("medium", code))?;
            interfaces.push(Interface {
                medium,
                bandwidth_bps: r.u64()?,
                latency_ms: r.u32()?,
                reliability: r.u8()?,
                cost_per_byte: r.u64()?,
                internet_gateway: r.bool("internet_gateway")?,
            });
        }
        let compute = if r.present("compute")? {
            let code = r.u8()?;
            let cpu_class = *CpuClass::ALL
                .get(usize::from(code))
                .ok_or_else(|| r.unknown("cpu_class", code))?;
            let memory_mb = r.u32()?;
            let mhr_byte = r.bool("mhr_byte")?;
            let wasm = r.bool("wasm")?;
            let cost_per_million_cycles = r.u64()?;
            let n = r.count16("functions", MAX_FUNCTIONS, MIN_FUNCTION_LEN)?;
            let mut functions = Vec::with_capacity(n);
            for _ in 0..n {
                functions.push(OfferedFunction {
                    name: r.str16("function name", MAX_FUNCTION_NAME_LEN)?.to_owned(),
                    description: r
                        .str16("function description", MAX_DESCRIPTION_LEN)?
                        .to_owned(),
                    cost: CostStructure::read(r)?,
                    max_concurrent: r.u32()?,
                });
            }
            Some(Compute {
                cpu_class,
                memory_mb,
                mhr_byte,
                wasm,
                cost_per_million_cycles,
                functions,
            })
        } else {
            None
        };
        let storage = if r.present("storage")? {
            let available_bytes = r.u64()?;
            let code = r.u8()?;
            let class = *StorageClass::ALL
                .get(usize::from(code))
                .ok_or_else(|| r.unknown("storage class", code))?;
            Some(Storage {
                available_bytes,
                class,
                cost_per_byte_day: r.u64()?,
                max_object_size: r.u32()?,
                serves_content: r.bool("serves_content")?,
            })
        } else {
            None
        };
        let availability = match r.u8()? {
            0 => Availability::AlwaysOn,
            1 => Availability::Solar,
            2 => Availability::Intermittent,
            3 => {
                let n = r.count16("schedule", MAX_SCHEDULE_WINDOWS, WINDOW_LEN)?;
                let mut windows = Vec::with_capacity(n);
                for _ in 0..n {
                    windows.push(DailyWindow {
                        start_minute: r.u16()?,
                        duration_minutes: r.u16()?,
                    });
                }
                Availability::Scheduled(windows)
            }
            code => return Err(r.unknown("availability", code)),
        };
        let caps = Self {
            interfaces,
            compute,
            storage,
            services,
            availability,
        };
        caps.check()
            .map_err(|(field, reason)| r.invalid(field, reason))?;
        Ok(caps)
    }
}

fn check_ttl(ttl_seconds: u32) -> Result<(), (&'static str, &'static str)> {
    if ttl_seconds == 0 || ttl_seconds > MAX_TTL_SECONDS {
        Err(("ttl_seconds", "must be 1 to 86400"))
    } else {
        Ok(())
    }
}

impl CapabilityAdvert {
    /// Parses an advert's bytes (structure and limits only; see [`Self::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        check_size(WHAT, bytes, MAX_ADVERT_LEN)?;
        let mut r = Reader::new(WHAT, bytes);
        let version = r.u8()?;
        if version != ADVERT_VERSION {
            return Err(r.unknown("version", version));
        }
        let node_id = NodeId(r.array()?);
        let seq = r.u64()?;
        let ttl_seconds = r.u32()?;
        check_ttl(ttl_seconds).map_err(|(field, reason)| r.invalid(field, reason))?;
        let capabilities = NodeCapabilities::read(&mut r)?;
        let signature = r.signature()?;
        r.finish()?;
        Ok(Self {
            node_id,
            seq,
            ttl_seconds,
            capabilities,
            signature,
            bytes: bytes.to_vec(),
        })
    }

    /// Checks that `key` is the advertised node's identity (its hash is the node id) and that
    /// the signature verifies under it.
    pub fn verify(&self, key: &PeerKey) -> Result<(), CapabilityError> {
        if key.node_id() != self.node_id {
            return Err(CapabilityError::WrongNode {
                expected: key.node_id(),
                advertised: self.node_id,
            });
        }
        let signed = self
            .bytes
            .get(..self.bytes.len().saturating_sub(SIGNATURE_LEN))
            .unwrap_or_default();
        if verify(key, MarketTag::Capabilities, signed, &self.signature) {
            Ok(())
        } else {
            Err(CapabilityError::BadSignature {
                node: self.node_id,
                seq: self.seq,
            })
        }
    }

    /// Decodes and verifies in one step.
    pub fn decode_verified(bytes: &[u8], key: &PeerKey) -> Result<Self, CapabilityError> {
        let advert = Self::decode(bytes)?;
        advert.verify(key)?;
        Ok(advert)
    }

    /// The advertising node.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Lifetime from receipt, seconds.
    pub fn ttl_seconds(&self) -> u32 {
        self.ttl_seconds
    }

    /// The capabilities.
    pub fn capabilities(&self) -> &NodeCapabilities {
        &self.capabilities
    }

    /// The signed encoding, as sent and relayed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `Blake3(bytes)`, identifying this exact advert.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.bytes).as_bytes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::identity::test_keys::node_key;
    use proptest::prelude::*;

    pub(crate) fn relay_only(cost_per_byte: u64) -> NodeCapabilities {
        NodeCapabilities {
            interfaces: vec![Interface {
                medium: Medium::LoRa,
                bandwidth_bps: 1200,
                latency_ms: 400,
                reliability: 200,
                cost_per_byte,
                internet_gateway: false,
            }],
            compute: None,
            storage: None,
            services: Services::default(),
            availability: Availability::Solar,
        }
    }

    pub(crate) fn full() -> NodeCapabilities {
        NodeCapabilities {
            interfaces: vec![
                Interface {
                    medium: Medium::WiFi,
                    bandwidth_bps: 50_000_000,
                    latency_ms: 5,
                    reliability: 250,
                    cost_per_byte: 2,
                    internet_gateway: true,
                },
                Interface {
                    medium: Medium::LoRa,
                    bandwidth_bps: 1200,
                    latency_ms: 400,
                    reliability: 180,
                    cost_per_byte: 9,
                    internet_gateway: false,
                },
            ],
            compute: Some(Compute {
                cpu_class: CpuClass::High,
                memory_mb: 32_768,
                mhr_byte: true,
                wasm: true,
                cost_per_million_cycles: 40,
                functions: vec![
                    OfferedFunction {
                        name: "whisper-small".into(),
                        description: "speech to text, 16 kHz mono".into(),
                        cost: CostStructure::PerInvocation {
                            per_call: 500,
                            max_input: 1 << 20,
                        },
                        max_concurrent: 4,
                    },
                    OfferedFunction {
                        name: "piper-tts".into(),
                        description: String::new(),
                        cost: CostStructure::PerInvocation {
                            per_call: 300,
                            max_input: 4096,
                        },
                        max_concurrent: 2,
                    },
                ],
            }),
            storage: Some(Storage {
                available_bytes: 100 << 30,
                class: StorageClass::Ssd,
                cost_per_byte_day: 1,
                max_object_size: 64 << 20,
                serves_content: true,
            }),
            services: Services {
                pubsub: true,
                dht: true,
                naming: false,
            },
            availability: Availability::Scheduled(vec![DailyWindow {
                start_minute: 1380,
                duration_minutes: 600,
            }]),
        }
    }

    #[test]
    fn advert_round_trips_and_verifies() {
        let key = node_key(1);
        for caps in [relay_only(3), full()] {
            let advert = caps.sign(&key, 7, 5400).unwrap();
            let decoded =
                CapabilityAdvert::decode_verified(advert.as_bytes(), &key.peer_key()).unwrap();
            assert_eq!(decoded, advert);
            assert_eq!(decoded.capabilities(), &caps);
            assert_eq!(decoded.seq(), 7);
            assert_eq!(decoded.node_id(), key.node_id());
        }
    }

    #[test]
    fn relay_only_advert_size_is_fixed() {
        // 1 + 16 + 8 + 4 + 1 + (2 + 23) + 1 + 1 + 1 + 64.
        let advert = relay_only(3).sign(&node_key(1), 1, 60).unwrap();
        assert_eq!(advert.as_bytes().len(), 122);
        assert_eq!(advert.as_bytes()[0], 0x10);
        // 30 + interfaces 48 + compute 18 + functions 61 + 30 + storage 23 + schedule 7 + 64.
        let advert = full().sign(&node_key(1), 1, 60).unwrap();
        assert_eq!(advert.as_bytes().len(), 281);
    }

    #[test]
    fn forged_adverts_are_rejected() {
        let key = node_key(1);
        let advert = full().sign(&key, 7, 5400).unwrap();
        // Another node's key.
        assert!(matches!(
            advert.verify(&node_key(2).peer_key()),
            Err(CapabilityError::WrongNode { .. })
        ));
        // A flipped byte in the body (bandwidth of the first interface).
        let mut bytes = advert.as_bytes().to_vec();
        bytes[40] ^= 1;
        assert!(matches!(
            CapabilityAdvert::decode_verified(&bytes, &key.peer_key()),
            Err(CapabilityError::BadSignature { seq: 7, .. })
        ));
        // The seq raised by a relay.
        let mut bytes = advert.as_bytes().to_vec();
        bytes[17] = 8;
        assert!(matches!(
            CapabilityAdvert::decode_verified(&bytes, &key.peer_key()),
            Err(CapabilityError::BadSignature { .. })
        ));
        // A signature made under another tag for the same bytes.
        let signed = &advert.as_bytes()[..advert.as_bytes().len() - 64];
        let other = sign(&key, MarketTag::Offer, signed);
        let mut bytes = signed.to_vec();
        bytes.extend_from_slice(&other.to_bytes());
        assert!(CapabilityAdvert::decode_verified(&bytes, &key.peer_key()).is_err());
    }

    #[test]
    fn limits_are_enforced_on_sign_and_decode() {
        let key = node_key(1);
        let mut caps = full();
        caps.interfaces = vec![caps.interfaces[0]; 9];
        assert!(matches!(
            caps.sign(&key, 1, 60),
            Err(CapabilityError::Invalid {
                field: "interfaces",
                ..
            })
        ));
        let mut caps = full();
        if let Some(c) = &mut caps.compute {
            c.functions[1].name = c.functions[0].name.clone();
        }
        assert!(caps.sign(&key, 1, 60).is_err());
        assert!(full().sign(&key, 1, 0).is_err());
        assert!(full().sign(&key, 1, MAX_TTL_SECONDS + 1).is_err());
        let mut bytes = relay_only(1).sign(&key, 1, 60).unwrap().as_bytes().to_vec();
        bytes[29] = 0x08; // reserved services bit
        assert!(matches!(
            CapabilityAdvert::decode(&bytes),
            Err(DecodeError::Invalid {
                field: "services",
                ..
            })
        ));
        assert!(matches!(
            CapabilityAdvert::decode(&vec![0x10; MAX_ADVERT_LEN + 1]),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn kinds_prices_and_beacon_caps() {
        let caps = full();
        assert_eq!(caps.unit_price(CapabilityKind::Relay), Some(2));
        assert_eq!(caps.unit_price(CapabilityKind::Gateway), Some(2));
        assert_eq!(caps.unit_price(CapabilityKind::Storage), Some(1));
        assert_eq!(caps.unit_price(CapabilityKind::Wasm), Some(40));
        assert_eq!(caps.unit_price(CapabilityKind::Function), Some(300));
        assert_eq!(caps.unit_price(CapabilityKind::PubSub), None);
        assert!(!caps.offers(CapabilityKind::Naming));
        assert_eq!(caps.beacon_caps(), 0b0111_1111);
        assert_eq!(relay_only(1).beacon_caps(), 0b1);
        let id = FunctionId::of("whisper-small");
        assert_eq!(id.0, *blake3::hash(b"whisper-small").as_bytes());
        assert_eq!(caps.function(&id).unwrap().max_concurrent, 4);
        for kind in CapabilityKind::ALL {
            assert_eq!(CapabilityKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(CapabilityKind::from_code(9), None);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = CapabilityAdvert::decode(&bytes);
        }

        #[test]
        fn mutated_adverts_never_panic(pos in 0usize..400, byte in any::<u8>(), cut in 0usize..400) {
            let advert = full().sign(&node_key(4), 3, 600).unwrap();
            let mut bytes = advert.as_bytes().to_vec();
            let len = bytes.len();
            bytes[pos % len] = byte;
            bytes.truncate(len - cut % len);
            if let Ok(a) = CapabilityAdvert::decode(&bytes) {
                let _ = a.verify(&node_key(4).peer_key());
            }
        }
    }
}
