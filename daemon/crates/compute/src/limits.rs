//! What one invocation may consume, and the named tiers from the protocol.

use std::time::Duration;

/// The resources a single invocation may use. Every field is a hard cap: reaching it ends the
/// call with the matching [`InvokeError`](crate::InvokeError).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Fuel the call may burn; fuel is the priced unit (`cost_per_cycle`, 1 fuel ≈ 1 cycle).
    /// Wasmtime charges one unit per executed WASM operator.
    pub fuel: u64,
    /// Largest linear memory the instance may have, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock time the call may run. Enforced by epoch interruption, so it is honoured to
    /// within one tick of the runtime's ticker (see [`RuntimeConfig::epoch_tick`](crate::RuntimeConfig::epoch_tick)).
    pub deadline: Duration,
    /// Largest input the host copies into the instance, in bytes.
    pub max_input_bytes: u32,
    /// Largest output the host copies out of the instance, in bytes.
    pub max_output_bytes: u32,
}

/// The execution tiers named by the protocol (MHR-Compute, "Wasmtime tiers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Small devices: 16 MiB of memory, 10^8 fuel, 5 s, 1 MiB in and out.
    Light,
    /// Servers: 256 MiB of memory, 10^10 fuel, 30 s, 16 MiB in and out.
    Full,
}

const MIB: u32 = 1024 * 1024;

impl Tier {
    /// The limits this tier grants. Callers may lower any field before invoking.
    pub const fn limits(self) -> Limits {
        match self {
            Tier::Light => Limits {
                fuel: 100_000_000,
                memory_bytes: 16 * MIB as u64,
                deadline: Duration::from_secs(5),
                max_input_bytes: MIB,
                max_output_bytes: MIB,
            },
            Tier::Full => Limits {
                fuel: 10_000_000_000,
                memory_bytes: 256 * MIB as u64,
                deadline: Duration::from_secs(30),
                max_input_bytes: 16 * MIB,
                max_output_bytes: 16 * MIB,
            },
        }
    }
}

impl Default for Limits {
    /// The [`Tier::Light`] limits: the cheapest tier is the safe default.
    fn default() -> Self {
        Tier::Light.limits()
    }
}

impl Limits {
    /// Returns the first field in which `self` asks for more than `ceiling` allows, as
    /// `(field name, requested, allowed)`.
    pub(crate) fn first_excess(&self, ceiling: &Limits) -> Option<(&'static str, u64, u64)> {
        let fields = [
            ("fuel", self.fuel, ceiling.fuel),
            ("memory_bytes", self.memory_bytes, ceiling.memory_bytes),
            (
                "deadline_ns",
                duration_nanos(self.deadline),
                duration_nanos(ceiling.deadline),
            ),
            (
                "max_input_bytes",
                u64::from(self.max_input_bytes),
                u64::from(ceiling.max_input_bytes),
            ),
            (
                "max_output_bytes",
                u64::from(self.max_output_bytes),
                u64::from(ceiling.max_output_bytes),
            ),
        ];
        // Durations past u64 nanoseconds (584 years) saturate; compare them exactly.
        if self.deadline > ceiling.deadline && fields[2].1 == fields[2].2 {
            return Some(fields[2]);
        }
        fields
            .into_iter()
            .find(|(_, requested, allowed)| requested > allowed)
    }

    /// Each field is the smaller of `self` and `other`: a tier narrowed by an agreement.
    pub fn min(&self, other: &Limits) -> Limits {
        Limits {
            fuel: self.fuel.min(other.fuel),
            memory_bytes: self.memory_bytes.min(other.memory_bytes),
            deadline: self.deadline.min(other.deadline),
            max_input_bytes: self.max_input_bytes.min(other.max_input_bytes),
            max_output_bytes: self.max_output_bytes.min(other.max_output_bytes),
        }
    }
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tiers_match_the_protocol_table() {
        let light = Tier::Light.limits();
        assert_eq!(light.memory_bytes, 16 * 1024 * 1024);
        assert_eq!(light.fuel, 100_000_000);
        assert_eq!(light.deadline, Duration::from_secs(5));
        let full = Tier::Full.limits();
        assert_eq!(full.memory_bytes, 256 * 1024 * 1024);
        assert_eq!(full.fuel, 10_000_000_000);
        assert_eq!(full.deadline, Duration::from_secs(30));
        assert_eq!(Limits::default(), light);
    }

    #[test]
    fn light_fits_inside_full() {
        assert_eq!(
            Tier::Light.limits().first_excess(&Tier::Full.limits()),
            None
        );
        assert_eq!(
            Tier::Full.limits().first_excess(&Tier::Light.limits()),
            Some(("fuel", 10_000_000_000, 100_000_000))
        );
    }

    #[test]
    fn deadline_excess_is_exact() {
        let ceiling = Limits {
            deadline: Duration::from_micros(1500),
            ..Tier::Light.limits()
        };
        let asked = Limits {
            deadline: Duration::from_nanos(1_500_001),
            ..ceiling
        };
        assert_eq!(
            asked.first_excess(&ceiling),
            Some(("deadline_ns", 1_500_001, 1_500_000))
        );
        // Both saturate at u64::MAX nanoseconds; the excess is still seen.
        let huge = Limits {
            deadline: Duration::MAX,
            ..ceiling
        };
        let large = Limits {
            deadline: Duration::from_secs(u64::MAX / 2),
            ..ceiling
        };
        assert_eq!(huge.first_excess(&large).map(|f| f.0), Some("deadline_ns"));
        assert_eq!(large.first_excess(&huge), None);
    }

    fn arb_limits() -> impl Strategy<Value = Limits> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(
                |(fuel, memory_bytes, nanos, max_input_bytes, max_output_bytes)| Limits {
                    fuel,
                    memory_bytes,
                    deadline: Duration::from_nanos(nanos),
                    max_input_bytes,
                    max_output_bytes,
                },
            )
    }

    proptest! {
        #[test]
        fn min_never_exceeds_either(a in arb_limits(), b in arb_limits()) {
            let narrowed = a.min(&b);
            prop_assert_eq!(narrowed.first_excess(&a), None);
            prop_assert_eq!(narrowed.first_excess(&b), None);
        }

        #[test]
        fn excess_reported_iff_some_field_is_larger(a in arb_limits(), b in arb_limits()) {
            let larger = a.fuel > b.fuel
                || a.memory_bytes > b.memory_bytes
                || a.deadline > b.deadline
                || a.max_input_bytes > b.max_input_bytes
                || a.max_output_bytes > b.max_output_bytes;
            prop_assert_eq!(a.first_excess(&b).is_some(), larger);
        }
    }
}
