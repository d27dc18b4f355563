//! `mehr token`, `mehr config`, `mehr drain`, `mehr shutdown`: AdminService from the command
//! line.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use mehr_sdk::{Client, proto as pb};
use serde_json::{Value, json};

use super::output::{self, Output};

/// What `mehr token` does.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a token. The secret is printed once (or written to --out, owner-only).
    Create {
        /// Scopes, comma-separated or repeated: admin, readonly, invoke, pay.
        #[arg(long, required = true, value_delimiter = ',')]
        scope: Vec<String>,
        /// Lifetime, e.g. `90d`, `12h`, `30m` (default: no expiry).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// A label saying who or what uses the token.
        #[arg(long, default_value = "")]
        label: String,
        /// Write the secret to this file (mode 0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the minted tokens (never their secrets).
    List,
    /// Revoke a minted token by id; calls carrying it are refused from then on.
    Revoke {
        /// The token's id (`mehr token list`).
        id: String,
    },
}

/// What `mehr config` does.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (TOML), secrets redacted.
    Show,
    /// Change settings that apply while the node runs (not written to the config file).
    Set(SetArgs),
}

/// `mehr config set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// New `api.request_timeout_secs`.
    #[arg(long)]
    request_timeout_secs: Option<u64>,
    /// New `api.max_concurrent_requests`.
    #[arg(long)]
    max_concurrent_requests: Option<u32>,
}

fn scope_name(value: i32) -> &'static str {
    match pb::TokenScope::try_from(value) {
        Ok(pb::TokenScope::Admin) => "admin",
        Ok(pb::TokenScope::Readonly) => "readonly",
        Ok(pb::TokenScope::Invoke) => "invoke",
        Ok(pb::TokenScope::Pay) => "pay",
        _ => "unknown",
    }
}

fn parse_scope(name: &str) -> anyhow::Result<pb::TokenScope> {
    Ok(match name.trim() {
        "admin" => pb::TokenScope::Admin,
        "readonly" => pb::TokenScope::Readonly,
        "invoke" => pb::TokenScope::Invoke,
        "pay" => pb::TokenScope::Pay,
        other => anyhow::bail!("unknown scope `{other}`: use admin, readonly, invoke or pay"),
    })
}

fn token_json(token: &pb::ApiToken) -> Value {
    json!({
        "id": token.id,
        "label": token.label,
        "scopes": token.scopes.iter().map(|s| scope_name(*s)).collect::<Vec<_>>(),
        "created_at_unix_ms": token.created_at_unix_ms,
        "expires_at_unix_ms": token.expires_at_unix_ms,
    })
}

fn expiry_text(unix_ms: u64) -> String {
    if unix_ms == 0 {
        "never".into()
    } else {
        output::timestamp(unix_ms)
    }
}

/// `mehr token …`.
pub(super) async fn token(
    client: &Client,
    out: &Output,
    command: TokenCommand,
) -> anyhow::Result<()> {
    let mut admin = client.admin();
    match command {
        TokenCommand::Create {
            scope,
            expires,
            label,
            out: file,
        } => {
            let scopes = scope
                .iter()
                .map(|s| parse_scope(s).map(|s| s as i32))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let created = admin
                .create_token(pb::CreateTokenRequest {
                    scopes,
                    label,
                    ttl_seconds: expires.map_or(0, |d| d.as_secs().max(1)),
                })
                .await
                .map_err(mehr_sdk::Error::from)?
                .into_inner();
            let token = created.token.unwrap_or_default();
            let mut json = token_json(&token);
            if let Some(path) = &file {
                write_secret(path, &created.secret)?;
                json["secret_file"] = json!(path.display().to_string());
                out.line(
                    &format!(
                        "minted token {} ; secret written to {}",
                        token.id,
                        path.display()
                    ),
                    json,
                );
            } else {
                json["secret"] = json!(created.secret);
                out.record(
                    &[
                        ("id", token.id.clone()),
                        (
                            "scopes",
                            token
                                .scopes
                                .iter()
                                .map(|s| scope_name(*s))
                                .collect::<Vec<_>>()
                                .join(", "),
                        ),
                        ("expires", expiry_text(token.expires_at_unix_ms)),
                        ("secret", created.secret.clone()),
                    ],
                    json,
                );
            }
        }
        TokenCommand::List => {
            let mut tokens = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = admin
                    .list_tokens(pb::ListTokensRequest {
                        page_size: 1000,
                        page_token,
                    })
                    .await
                    .map_err(mehr_sdk::Error::from)?
                    .into_inner();
                tokens.extend(page.tokens);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.scopes
                            .iter()
                            .map(|s| scope_name(*s))
                            .collect::<Vec<_>>()
                            .join(","),
                        output::timestamp(t.created_at_unix_ms),
                        expiry_text(t.expires_at_unix_ms),
                        t.label.clone(),
                    ]
                })
                .collect();
            out.table(
                &["ID", "SCOPES", "CREATED", "EXPIRES", "LABEL"],
                &rows,
                Value::Array(tokens.iter().map(token_json).collect()),
            );
        }
        TokenCommand::Revoke { id } => {
            let revoked = admin
                .revoke_token(pb::RevokeTokenRequest { id })
                .await
                .map_err(mehr_sdk::Error::from)?
                .into_inner()
                .token
                .unwrap_or_default();
            out.line(
                &format!("revoked token {}", revoked.id),
                token_json(&revoked),
            );
        }
    }
    Ok(())
}

fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(secret.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `mehr config …`.
pub(super) async fn config(
    client: &Client,
    out: &Output,
    command: ConfigCommand,
) -> anyhow::Result<()> {
    let mut admin = client.admin();
    match command {
        ConfigCommand::Show => {
            let config = admin
                .get_config(pb::GetConfigRequest {})
                .await
                .map_err(mehr_sdk::Error::from)?
                .into_inner();
            if out.json {
                let parsed: toml::Table = toml::from_str(&config.config_toml)?;
                println!(
                    "{}",
                    json!({ "config": parsed, "redacted_keys": config.redacted_keys })
                );
            } else {
                print!("{}", config.config_toml);
            }
        }
        ConfigCommand::Set(args) => {
            if args.request_timeout_secs.is_none() && args.max_concurrent_requests.is_none() {
                anyhow::bail!(
                    "nothing to set: give --request-timeout-secs or --max-concurrent-requests"
                );
            }
            let settings = admin
                .update_settings(pb::UpdateSettingsRequest {
                    request_timeout_secs: args.request_timeout_secs,
                    max_concurrent_requests: args.max_concurrent_requests,
                })
                .await
                .map_err(mehr_sdk::Error::from)?
                .into_inner()
                .settings
                .unwrap_or_default();
            out.record(
                &[
                    (
                        "api.request_timeout_secs",
                        settings.request_timeout_secs.to_string(),
                    ),
                    (
                        "api.max_concurrent_requests",
                        settings.max_concurrent_requests.to_string(),
                    ),
                ],
                json!({
                    "request_timeout_secs": settings.request_timeout_secs,
                    "max_concurrent_requests": settings.max_concurrent_requests,
                }),
            );
        }
    }
    Ok(())
}

/// `mehr drain [--resume]`.
pub(super) async fn drain(client: &Client, out: &Output, resume: bool) -> anyhow::Result<()> {
    let mut admin = client.admin();
    if resume {
        admin
            .resume(pb::ResumeRequest {})
            .await
            .map_err(mehr_sdk::Error::from)?;
        out.line(
            "resumed: the node takes new work",
            json!({ "draining": false }),
        );
    } else {
        let drained = admin
            .drain(pb::DrainRequest {})
            .await
            .map_err(mehr_sdk::Error::from)?
            .into_inner();
        out.line(
            &format!(
                "drained: no new work; {} call(s) were running and will finish",
                drained.calls_in_flight
            ),
            json!({ "draining": true, "calls_in_flight": drained.calls_in_flight }),
        );
    }
    Ok(())
}

/// `mehr shutdown`.
pub(super) async fn shutdown(client: &Client, out: &Output, reason: String) -> anyhow::Result<()> {
    client
        .admin()
        .shutdown(pb::ShutdownRequest { reason })
        .await
        .map_err(mehr_sdk::Error::from)?;
    out.line(
        "shutdown begun: running calls get api.shutdown_grace_secs to finish",
        json!({ "shutting_down": true }),
    );
    Ok(())
}
