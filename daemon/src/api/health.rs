//! gRPC health per service, kept current by a task that looks at the parts every second.
//!
//! - `""` is liveness: SERVING while the daemon runs, NOT_SERVING once it shuts down.
//! - `readiness` is readiness for new work: NOT_SERVING while drained, shutting down, or
//!   while the transport (which every call that leaves the node needs) is down.
//! - each `mehr.v1.<Service>` is NOT_SERVING where its part is down (its task ended) or full
//!   (StorageService with `storage.available_bytes` used), or disabled (MarketService with
//!   `market.enabled = false`).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::task::AbortHandle;
use tonic_health::{ServingStatus, server::HealthReporter};

use super::control::ApiControl;
use crate::storage::ObjectStore;

/// The name health checkers ask for readiness (liveness is `""`).
pub const READINESS: &str = "readiness";

/// How often the task looks at the parts.
const PERIOD: Duration = Duration::from_secs(1);

/// What health is judged from.
#[derive(Clone)]
pub struct HealthInputs {
    /// Drain and shutdown switches.
    pub control: Arc<ApiControl>,
    /// The object store (full or not).
    pub objects: ObjectStore,
    /// `market.enabled`.
    pub market_enabled: bool,
    /// The transport's task: the mesh is down when it ended.
    pub transport_task: AbortHandle,
    /// The ledger's task.
    pub ledger_task: AbortHandle,
}

/// The serving state of one health-checked name; `None` when serving, else why not.
pub type Verdict = (&'static str, Option<String>);

impl HealthInputs {
    /// The state of every health-checked name now.
    pub fn assess(&self) -> Vec<Verdict> {
        let transport_down = self
            .transport_task
            .is_finished()
            .then(|| "the transport has stopped".to_string());
        let ledger_down = self
            .ledger_task
            .is_finished()
            .then(|| "the ledger has stopped".to_string());
        let usage = self.objects.usage();
        let storage_full = (usage.used_bytes.saturating_add(usage.reserved_bytes)
            >= usage.available_bytes)
            .then(|| {
                format!(
                    "storage is full ({} of storage.available_bytes = {} used)",
                    usage.used_bytes + usage.reserved_bytes,
                    usage.available_bytes
                )
            });
        let market_off =
            (!self.market_enabled).then(|| "the marketplace is disabled (market.enabled)".into());
        let readiness = if self.control.shutting_down() {
            Some("shutting down".to_string())
        } else if self.control.draining() {
            Some("drained".to_string())
        } else {
            transport_down.clone()
        };
        vec![
            ("", None),
            (READINESS, readiness),
            ("mehr.v1.NodeService", None),
            ("mehr.v1.TransportService", transport_down.clone()),
            ("mehr.v1.MessagingService", transport_down),
            ("mehr.v1.ComputeService", None),
            ("mehr.v1.StorageService", storage_full),
            ("mehr.v1.LedgerService", ledger_down),
            ("mehr.v1.MarketService", market_off),
            ("mehr.v1.AdminService", None),
        ]
    }
}

/// The last verdicts, for AdminService.GetStatus.
#[derive(Clone, Default)]
pub struct HealthBoard(Arc<Mutex<Vec<Verdict>>>);

impl HealthBoard {
    /// The verdicts of the last look.
    pub fn snapshot(&self) -> Vec<Verdict> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Looks at the parts now, updates `reporter` where a state changed, and keeps the verdicts.
    pub async fn refresh(&self, inputs: &HealthInputs, reporter: &HealthReporter) {
        let verdicts = inputs.assess();
        let previous = self.snapshot();
        for (name, verdict) in &verdicts {
            let unchanged = previous
                .iter()
                .any(|(n, v)| n == name && v.is_none() == verdict.is_none());
            if !unchanged {
                let status = if verdict.is_none() {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter.set_service_status(*name, status).await;
            }
        }
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = verdicts;
    }

    /// Refreshes every [`PERIOD`] until aborted.
    pub async fn watch(self, inputs: HealthInputs, reporter: HealthReporter) {
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.refresh(&inputs, &reporter).await;
        }
    }
}
