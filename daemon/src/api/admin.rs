//! `mehr.v1.AdminService`: tokens with scopes, node status for fleet tools, the effective
//! configuration, live settings, drain and graceful shutdown.

use std::sync::Arc;

use mehr_proto::v1::{self as pb, admin_service_server::AdminService};
use tonic::{Request, Response, Status};
use tonic_health::server::HealthReporter;

use super::{
    NodeFacts,
    control::{ApiControl, MAX_CONCURRENT_RANGE, REQUEST_TIMEOUT_RANGE},
    health::{HealthBoard, HealthInputs},
    paging::{Filters, PageRequest},
    scopes::Scope,
    status::invalid_field,
    tokens::{MAX_LABEL_CHARS, TokenRecord, TokenRegistry},
};
use crate::{ledger::LedgerHandle, transport::TransportHandle};

/// What a redacted value reads.
const REDACTED: &str = "<redacted>";
/// Parts of a setting's name that mark its value secret.
const SECRET_KEY_PARTS: &[&str] = &["token", "secret", "password", "key", "header", "credential"];
/// Longest shutdown reason accepted, in characters.
const MAX_REASON_CHARS: usize = 200;

/// Serves `mehr.v1.AdminService`.
#[derive(Clone)]
pub struct AdminApi {
    tokens: Arc<TokenRegistry>,
    control: Arc<ApiControl>,
    facts: Arc<NodeFacts>,
    transport: TransportHandle,
    ledger: LedgerHandle,
    health: HealthInputs,
    board: HealthBoard,
    reporter: Option<HealthReporter>,
    config: Arc<toml::Table>,
}

/// Everything AdminService reads or switches.
pub struct AdminParts {
    /// The node's tokens.
    pub tokens: Arc<TokenRegistry>,
    /// Drain, live settings, shutdown.
    pub control: Arc<ApiControl>,
    /// Version, uptime.
    pub facts: Arc<NodeFacts>,
    /// For the neighbour count.
    pub transport: TransportHandle,
    /// For the balance.
    pub ledger: LedgerHandle,
    /// What health is judged from (storage usage comes from here too).
    pub health: HealthInputs,
    /// The effective configuration, as `mehrd --print-config` writes it.
    pub config: toml::Table,
}

impl AdminApi {
    /// Serves `parts`.
    pub fn new(parts: AdminParts) -> Self {
        AdminApi {
            tokens: parts.tokens,
            control: parts.control,
            facts: parts.facts,
            transport: parts.transport,
            ledger: parts.ledger,
            health: parts.health,
            board: HealthBoard::default(),
            reporter: None,
            config: Arc::new(parts.config),
        }
    }

    /// The health inputs and board, for the task that keeps the health service current.
    pub(super) fn health(&self) -> (HealthInputs, HealthBoard) {
        (self.health.clone(), self.board.clone())
    }

    /// Lets Drain and Resume update the health service at once, not at the next tick.
    pub(super) fn with_reporter(mut self, reporter: HealthReporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    async fn refresh_health(&self) {
        if let Some(reporter) = &self.reporter {
            self.board.refresh(&self.health, reporter).await;
        }
    }
}

fn token_to_proto(record: TokenRecord) -> pb::ApiToken {
    pb::ApiToken {
        id: record.id,
        label: record.label,
        scopes: record.scopes.iter().map(|s| s.to_proto() as i32).collect(),
        created_at_unix_ms: record.created_at_unix_ms,
        expires_at_unix_ms: record.expires_at_unix_ms,
    }
}

/// `config` with the values of secret-looking keys replaced; returns the dotted keys redacted.
pub fn redact(config: &mut toml::Table) -> Vec<String> {
    fn walk(table: &mut toml::Table, prefix: &str, redacted: &mut Vec<String>) {
        for (key, value) in table.iter_mut() {
            let dotted = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            let lower = key.to_ascii_lowercase();
            let secret = SECRET_KEY_PARTS.iter().any(|part| lower.contains(part));
            match value {
                toml::Value::Table(inner) if !secret => walk(inner, &dotted, redacted),
                toml::Value::Array(items) if !secret => {
                    for (index, item) in items.iter_mut().enumerate() {
                        if let toml::Value::Table(inner) = item {
                            walk(inner, &format!("{dotted}[{index}]"), redacted);
                        }
                    }
                }
                _ if secret => {
                    *value = toml::Value::String(REDACTED.into());
                    redacted.push(dotted);
                }
                _ => {}
            }
        }
    }
    let mut redacted = Vec::new();
    walk(config, "", &mut redacted);
    redacted
}

fn live_settings(control: &ApiControl) -> pb::LiveSettings {
    pb::LiveSettings {
        request_timeout_secs: control.request_timeout_secs(),
        max_concurrent_requests: control.max_concurrent() as u32,
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let request = request.into_inner();
        if request.scopes.is_empty() {
            return Err(invalid_field(
                "scopes",
                "give at least one scope: admin, readonly, invoke or pay",
            ));
        }
        let mut scopes = Vec::new();
        for (index, value) in request.scopes.iter().enumerate() {
            let scope = Scope::from_proto(*value).ok_or_else(|| {
                invalid_field(
                    &format!("scopes[{index}]"),
                    format!("{value} is not a scope: use admin, readonly, invoke or pay"),
                )
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        scopes.sort();
        if request.label.chars().count() > MAX_LABEL_CHARS
            || request.label.chars().any(char::is_control)
        {
            return Err(invalid_field(
                "label",
                format!("the label must be at most {MAX_LABEL_CHARS} printable characters"),
            ));
        }
        let (record, secret) = self
            .tokens
            .create(scopes, request.label, request.ttl_seconds)?;
        tracing::info!(id = %record.id, scopes = ?record.scopes, "API token minted");
        Ok(Response::new(pb::CreateTokenResponse {
            token: Some(token_to_proto(record)),
            secret,
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let request = request.into_inner();
        let paging = PageRequest::parse(
            Filters::new("ListTokens"),
            request.page_size,
            &request.page_token,
        )?;
        let (tokens, next_page_token) = paging.page(self.tokens.list(), |t| t.id.clone().into());
        Ok(Response::new(pb::ListTokensResponse {
            tokens: tokens.into_iter().map(token_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let id = request.into_inner().id;
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid_field(
                "id",
                "a token id is 16 hex digits (see `mehr token list`)",
            ));
        }
        let record = self.tokens.revoke(&id)?;
        tracing::info!(id = %record.id, "API token revoked");
        Ok(Response::new(pb::RevokeTokenResponse {
            token: Some(token_to_proto(record)),
        }))
    }

    async fn get_status(
        &self,
        _: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let peers = self.transport.neighbours().await?.len();
        let balance = self.ledger.balance().await?;
        let usage = self.health.objects.usage();
        let mut verdicts = self.board.snapshot();
        if verdicts.is_empty() {
            verdicts = self.health.assess();
        }
        Ok(Response::new(pb::GetStatusResponse {
            identity_hash: self.facts.identity_hash.to_vec().into(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: self.facts.started.elapsed().as_secs(),
            peers: peers as u32,
            free_balance_umhr: balance.free.clamp(i64::MIN.into(), i64::MAX.into()) as i64,
            storage_used_bytes: usage.used_bytes,
            storage_available_bytes: usage.available_bytes,
            draining: self.control.draining(),
            services: verdicts
                .into_iter()
                .map(|(service, verdict)| pb::ServiceHealth {
                    service: service.to_string(),
                    serving: verdict.is_none(),
                    reason: verdict.unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn get_config(
        &self,
        _: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigResponse>, Status> {
        let mut config = (*self.config).clone();
        if let Some(toml::Value::Table(api)) = config.get_mut("api") {
            api.insert(
                "request_timeout_secs".into(),
                toml::Value::Integer(self.control.request_timeout_secs() as i64),
            );
            api.insert(
                "max_concurrent_requests".into(),
                toml::Value::Integer(self.control.max_concurrent() as i64),
            );
        }
        let redacted_keys = redact(&mut config);
        let config_toml = toml::to_string(&config)
            .map_err(|e| super::status::internal("writing the configuration", e))?;
        Ok(Response::new(pb::GetConfigResponse {
            config_toml,
            redacted_keys,
        }))
    }

    async fn update_settings(
        &self,
        request: Request<pb::UpdateSettingsRequest>,
    ) -> Result<Response<pb::UpdateSettingsResponse>, Status> {
        let request = request.into_inner();
        // Check every field before changing any, so a refused request changes nothing.
        if let Some(secs) = request.request_timeout_secs
            && !REQUEST_TIMEOUT_RANGE.contains(&secs)
        {
            return Err(invalid_field(
                "request_timeout_secs",
                format!("must be {REQUEST_TIMEOUT_RANGE:?} seconds, not {secs}"),
            ));
        }
        if let Some(limit) = request.max_concurrent_requests
            && !MAX_CONCURRENT_RANGE.contains(&(limit as usize))
        {
            return Err(invalid_field(
                "max_concurrent_requests",
                format!("must be in {MAX_CONCURRENT_RANGE:?}, not {limit}"),
            ));
        }
        if let Some(secs) = request.request_timeout_secs {
            self.control.set_request_timeout_secs(secs);
        }
        if let Some(limit) = request.max_concurrent_requests {
            self.control.set_max_concurrent(limit as usize);
        }
        let settings = live_settings(&self.control);
        tracing::info!(?settings, "live settings changed");
        Ok(Response::new(pb::UpdateSettingsResponse {
            settings: Some(settings),
        }))
    }

    async fn drain(
        &self,
        _: Request<pb::DrainRequest>,
    ) -> Result<Response<pb::DrainResponse>, Status> {
        self.control.set_draining(true);
        self.refresh_health().await;
        let calls_in_flight = self.control.in_flight() as u32;
        tracing::info!(calls_in_flight, "drained: taking no new work");
        Ok(Response::new(pb::DrainResponse { calls_in_flight }))
    }

    async fn resume(
        &self,
        _: Request<pb::ResumeRequest>,
    ) -> Result<Response<pb::ResumeResponse>, Status> {
        self.control.set_draining(false);
        self.refresh_health().await;
        tracing::info!("resumed: taking new work again");
        Ok(Response::new(pb::ResumeResponse {}))
    }

    async fn shutdown(
        &self,
        request: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::ShutdownResponse>, Status> {
        let reason = request.into_inner().reason;
        if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
            return Err(invalid_field(
                "reason",
                format!("the reason must be at most {MAX_REASON_CHARS} printable characters"),
            ));
        }
        let reason = if reason.is_empty() {
            "admin request".to_string()
        } else {
            reason
        };
        self.control.request_shutdown(reason);
        Ok(Response::new(pb::ShutdownResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_settings_are_redacted() {
        let mut config: toml::Table = toml::from_str(
            r#"
            data_dir = "/d"
            [api]
            request_timeout_secs = 30
            [telemetry]
            otlp_endpoint = "http://x"
            otlp_headers = { authorization = "Bearer s3cret" }
            [[interfaces]]
            kind = "tcp"
            psk = "open"
            api_key = "k"
            "#,
        )
        .unwrap();
        let redacted = redact(&mut config);
        assert_eq!(
            redacted,
            vec!["interfaces[0].api_key", "telemetry.otlp_headers"]
        );
        let text = toml::to_string(&config).unwrap();
        assert!(!text.contains("s3cret"));
        assert!(text.contains("request_timeout_secs = 30"));
        assert!(text.contains("otlp_endpoint"));
    }
}
