//! `mehr store …`: the node's local object store.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use mehr_sdk::{
    Client,
    storage::{
        ByteRange, ListOrder, ListScope, NodeId, ObjectId, ObjectInfo, Placement, PutOptions,
        ReplicateOptions,
    },
};
use serde_json::json;

use super::output::{self, Output};

/// `mehr store` subcommands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Store a file (or stdin, with `-`) and print its object id.
    Put {
        /// The file to store; `-` reads stdin.
        file: PathBuf,
        /// A label for the object (default: the file's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// Write an object (or a byte range of it) to a file or stdout.
    Get {
        /// The object id (64 hex characters).
        id: String,
        /// Write to this file instead of stdout (created or replaced once the whole range
        /// arrived and was verified).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// First byte to get.
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// Number of bytes to get (default: to the end).
        #[arg(long)]
        length: Option<u64>,
    },
    /// Describe an object.
    Stat {
        /// The object id.
        id: String,
    },
    /// List the stored objects.
    Ls {
        /// Order: oldest first, or by id.
        #[arg(long, value_enum, default_value_t = Order::Created)]
        order: Order,
        /// List the objects this node placed on providers (by id) instead of those it stores.
        #[arg(long, conflicts_with = "order")]
        placed: bool,
        /// Show at most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Delete an object (the local copy; an object held only on providers loses its placement).
    Rm {
        /// The object id.
        id: String,
    },
    /// Place a stored object on providers, erasure coded (k data + m parity shards, one per
    /// provider; extra providers are spares for repair).
    Replicate {
        /// The object id.
        id: String,
        /// A provider's node id (32 hex characters); repeat, at least k + m times (none: the
        /// marketplace finds storage providers).
        #[arg(long = "provider", value_name = "NODE")]
        providers: Vec<String>,
        /// Data shards (default: storage.data_shards).
        #[arg(short = 'k', long)]
        data_shards: Option<u8>,
        /// Parity shards (default: storage.parity_shards).
        #[arg(short = 'm', long)]
        parity_shards: Option<u8>,
        /// Agreement duration, e.g. `30d`, `12h` (default: storage.agreement_duration_secs).
        #[arg(long)]
        duration: Option<humantime::Duration>,
        /// Agreed price, μMHR per byte per day.
        #[arg(long, default_value_t = 0)]
        price: u64,
        /// Idempotency key (1–64 characters): run again with the same key after a failure or
        /// a lost answer and get the placement the first run made.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Challenge every shard of a placed object now and print the results.
    Challenge {
        /// The object id.
        id: String,
    },
}

/// The order of `mehr store ls`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Order {
    /// Oldest first.
    Created,
    /// By object id.
    Id,
}

/// Runs a `mehr store` command.
pub(super) async fn run(
    client: &Client,
    out: &Output,
    command: StoreCommand,
) -> anyhow::Result<()> {
    match command {
        StoreCommand::Put { file, name } => put(client, out, &file, name).await,
        StoreCommand::Get {
            id,
            output,
            offset,
            length,
        } => {
            get(
                client,
                out,
                &parse_id(&id)?,
                output.as_deref(),
                ByteRange { offset, length },
            )
            .await
        }
        StoreCommand::Stat { id } => {
            let status = client.status(&parse_id(&id)?).await?;
            match &status.placement {
                None => print_object(out, &status.object, None),
                Some(placement) => {
                    let mut json = object_json(&status.object, None);
                    json["held_locally"] = json!(status.held_locally);
                    json["placement"] = placement_json(placement);
                    let mut rows = object_rows(&status.object);
                    rows.push((
                        "local",
                        if status.held_locally { "yes" } else { "no" }.to_string(),
                    ));
                    out.record(&rows, json);
                    if !out.json {
                        print_placement(placement);
                    }
                }
            }
            Ok(())
        }
        StoreCommand::Replicate {
            id,
            providers,
            data_shards,
            parity_shards,
            duration,
            price,
            request_id,
        } => {
            let id = parse_id(&id)?;
            let options = ReplicateOptions {
                providers: providers
                    .iter()
                    .map(|p| parse_node(p))
                    .collect::<anyhow::Result<_>>()?,
                data_shards,
                parity_shards,
                duration_secs: duration.map(|d| d.as_secs()),
                price_per_byte_day_umhr: price,
                request_id: request_id.map(String::into_bytes).unwrap_or_default(),
            };
            let placement = client.replicate(&id, options).await?;
            if out.json {
                out.line(
                    "",
                    json!({ "id": id.to_string(), "placement": placement_json(&placement) }),
                );
            } else {
                println!("placed {id} on {} providers", placement.shards.len());
                print_placement(&placement);
            }
            Ok(())
        }
        StoreCommand::Challenge { id } => {
            let results = client.challenge(&parse_id(&id)?).await?;
            let rows: Vec<Vec<String>> = results
                .iter()
                .map(|r| {
                    vec![
                        r.index.to_string(),
                        hex::encode(r.provider),
                        if r.passed { "passed" } else { "FAILED" }.to_string(),
                        r.health.to_string(),
                        r.detail.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let json = json!(
                results
                    .iter()
                    .map(|r| json!({
                        "index": r.index,
                        "provider": hex::encode(r.provider),
                        "passed": r.passed,
                        "health": r.health.to_string(),
                        "detail": r.detail,
                    }))
                    .collect::<Vec<_>>()
            );
            out.table(
                &["SHARD", "PROVIDER", "RESULT", "HEALTH", "DETAIL"],
                &rows,
                json,
            );
            if results.iter().any(|r| !r.passed) {
                anyhow::bail!(
                    "{} of {} shards failed their challenge",
                    results.iter().filter(|r| !r.passed).count(),
                    results.len()
                );
            }
            Ok(())
        }
        StoreCommand::Ls {
            order,
            placed,
            limit,
        } => {
            let scope = if placed {
                ListScope::Placed
            } else {
                ListScope::Local
            };
            ls(client, out, scope, order, limit).await
        }
        StoreCommand::Rm { id } => {
            let info = client.delete(&parse_id(&id)?).await?;
            out.line(
                &format!("deleted {} ({})", info.id, size(info.length)),
                object_json(&info, None),
            );
            Ok(())
        }
    }
}

fn parse_node(text: &str) -> anyhow::Result<NodeId> {
    let bytes = hex::decode(text).with_context(|| format!("invalid node id `{text}`"))?;
    <[u8; 16]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("invalid node id `{text}`: expected 32 hex characters"))
}

fn print_placement(placement: &Placement) {
    println!(
        "\n{} data + {} parity shards, until {}, {} μMHR/byte-day",
        placement.data_shards,
        placement.parity_shards,
        output::timestamp(placement.expires_at_unix_s.saturating_mul(1000)),
        placement.price_per_byte_day_umhr
    );
    println!(
        "{:<6} {:<32}  {:<8}  {:>6}  {:>6}  {:>10}  {:>10}  LAST ERROR",
        "SHARD", "PROVIDER", "HEALTH", "PASSED", "FAILED", "OWED μMHR", "PAID μMHR"
    );
    for shard in &placement.shards {
        println!(
            "{:<6} {:<32}  {:<8}  {:>6}  {:>6}  {:>10}  {:>10}  {}",
            shard.index,
            hex::encode(shard.provider),
            shard.health.to_string(),
            shard.challenges_passed,
            shard.challenges_failed,
            shard.owed_umhr,
            shard.paid_umhr,
            shard.last_error.as_deref().unwrap_or("")
        );
    }
    if !placement.spare_providers.is_empty() {
        let spares: Vec<String> = placement.spare_providers.iter().map(hex::encode).collect();
        println!("spares: {}", spares.join(" "));
    }
}

fn placement_json(placement: &Placement) -> serde_json::Value {
    json!({
        "data_shards": placement.data_shards,
        "parity_shards": placement.parity_shards,
        "expires_at_unix_s": placement.expires_at_unix_s,
        "price_per_byte_day_umhr": placement.price_per_byte_day_umhr,
        "spare_providers": placement.spare_providers.iter().map(hex::encode).collect::<Vec<_>>(),
        "shards": placement.shards.iter().map(|s| json!({
            "index": s.index,
            "root": s.root.to_string(),
            "length": s.length,
            "provider": hex::encode(s.provider),
            "health": s.health.to_string(),
            "consecutive_failures": s.consecutive_failures,
            "last_challenge_at_unix_ms": s.last_challenge_at_unix_ms,
            "challenges_passed": s.challenges_passed,
            "challenges_failed": s.challenges_failed,
            "owed_umhr": s.owed_umhr,
            "paid_umhr": s.paid_umhr,
            "last_error": s.last_error,
        })).collect::<Vec<_>>(),
    })
}

fn parse_id(text: &str) -> anyhow::Result<ObjectId> {
    text.parse()
        .with_context(|| format!("invalid object id `{text}`"))
}

async fn put(
    client: &Client,
    out: &Output,
    file: &Path,
    name: Option<String>,
) -> anyhow::Result<()> {
    let stdin = file == Path::new("-");
    let name = name.or_else(|| {
        (!stdin)
            .then(|| file.file_name().map(|n| n.to_string_lossy().into_owned()))
            .flatten()
    });
    let (size, progress) = if stdin {
        (None, progress_bar(out, None))
    } else {
        let size = tokio::fs::metadata(file)
            .await
            .with_context(|| format!("cannot read {}", file.display()))?
            .len();
        (Some(size), progress_bar(out, Some(size)))
    };
    let mut options = PutOptions {
        name,
        expected_size: size,
        progress: None,
    };
    let bar = progress.clone();
    options = options.with_progress(move |sent| bar.set_position(sent));
    let stored = if stdin {
        client.put(tokio::io::stdin(), options).await
    } else {
        let reader = tokio::fs::File::open(file)
            .await
            .with_context(|| format!("cannot open {}", file.display()))?;
        client.put(reader, options).await
    };
    progress.finish_and_clear();
    let stored = stored?;
    print_object(out, &stored.object, Some(stored.already_stored));
    Ok(())
}

fn progress_bar(out: &Output, total: Option<u64>) -> ProgressBar {
    if out.json {
        return ProgressBar::hidden();
    }
    // Drawn on stderr, and only when it is a terminal.
    match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{bar:40} {binary_bytes}/{binary_total_bytes}  {binary_bytes_per_sec}  {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {binary_bytes}  {binary_bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

async fn get(
    client: &Client,
    out: &Output,
    id: &ObjectId,
    path: Option<&Path>,
    range: ByteRange,
) -> anyhow::Result<()> {
    let Some(path) = path else {
        // The bytes are the output; nothing else is printed.
        client.get_to(id, range, &mut tokio::io::stdout()).await?;
        return Ok(());
    };
    // Into a temporary file beside the target, renamed once everything arrived verified, so a
    // failed get never leaves a truncated file under the requested name.
    let partial = partial_path(path);
    let result = async {
        let mut file = tokio::fs::File::create(&partial)
            .await
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let written = client.get_to(id, range, &mut file).await?;
        file.sync_all()
            .await
            .with_context(|| format!("cannot write {}", partial.display()))?;
        tokio::fs::rename(&partial, path).await.with_context(|| {
            format!("cannot rename {} to {}", partial.display(), path.display())
        })?;
        anyhow::Ok(written)
    }
    .await;
    let written = match result {
        Ok(written) => written,
        Err(e) => {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(e);
        }
    };
    out.record(
        &[
            ("id", id.to_string()),
            ("wrote", size(written)),
            ("to", path.display().to_string()),
        ],
        json!({ "id": id.to_string(), "bytes": written, "path": path.display().to_string() }),
    );
    Ok(())
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".mehr-partial");
    path.with_file_name(name)
}

async fn ls(
    client: &Client,
    out: &Output,
    scope: ListScope,
    order: Order,
    limit: Option<usize>,
) -> anyhow::Result<()> {
    let order = match order {
        Order::Created => ListOrder::Created,
        Order::Id => ListOrder::Id,
    };
    let objects = match scope {
        ListScope::Placed => client.list_all_placed(),
        ListScope::Local => client.list_all(order),
    };
    let mut objects = objects.take(limit.unwrap_or(usize::MAX));
    if !out.json {
        println!("{:<64}  {:>12}  {:<24}  NAME", "ID", "BYTES", "CREATED");
    }
    while let Some(info) = objects.next().await {
        let info = info?;
        out.line(
            &format!(
                "{}  {:>12}  {:<24}  {}",
                info.id,
                info.length,
                output::timestamp(info.created_at_unix_ms),
                info.name.as_deref().unwrap_or("")
            ),
            object_json(&info, None),
        );
    }
    Ok(())
}

fn object_rows(info: &ObjectInfo) -> Vec<(&'static str, String)> {
    vec![
        ("id", info.id.to_string()),
        ("size", size(info.length)),
        ("chunks", info.chunk_count.to_string()),
        ("created", output::timestamp(info.created_at_unix_ms)),
        ("name", info.name.clone().unwrap_or_default()),
    ]
}

fn print_object(out: &Output, info: &ObjectInfo, already_stored: Option<bool>) {
    let mut rows = object_rows(info);
    if already_stored == Some(true) {
        rows.push(("note", "already stored: nothing new was written".into()));
    }
    out.record(&rows, object_json(info, already_stored));
}

fn object_json(info: &ObjectInfo, already_stored: Option<bool>) -> serde_json::Value {
    let mut value = json!({
        "id": info.id.to_string(),
        "length": info.length,
        "chunk_count": info.chunk_count,
        "created_at_unix_ms": info.created_at_unix_ms,
        "name": info.name,
    });
    if let Some(already_stored) = already_stored {
        value["already_stored"] = json!(already_stored);
    }
    value
}

/// `1.5 MiB (1572864 bytes)`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({bytes} bytes)", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(size(0), "0 bytes");
        assert_eq!(size(1023), "1023 bytes");
        assert_eq!(size(1536 << 10), "1.5 MiB (1572864 bytes)");
        assert_eq!(size(u64::MAX), "16384.0 PiB (18446744073709551615 bytes)");
    }

    #[test]
    fn partial_files_sit_beside_the_target() {
        assert_eq!(
            partial_path(Path::new("/tmp/out.bin")),
            PathBuf::from("/tmp/out.bin.mehr-partial")
        );
    }
}
