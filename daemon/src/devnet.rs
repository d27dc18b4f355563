//! `mehrd devnet`: a local mesh of N daemons for demos and tests — separate processes and data
//! dirs, connected over loopback TCP, with varied prices and capabilities.
//!
//! Topology: node `i` runs a TCP server on `base_port + 100 + i` and connects to node `i − 1`
//! (a chain), and every fourth node also to node `i − 4`, so a large devnet stays within the
//! 8-hop discovery flood. Node `i`'s API is on `127.0.0.1:(base_port + i)` and on the Unix
//! socket in its data dir (`mehr --data-dir DIR/node-i`).

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::Context;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tokio::{
    process::{Child, Command},
    signal::unix::{SignalKind, signal},
};

/// Most nodes a devnet runs.
pub const MAX_NODES: usize = 64;
/// Offset of the mesh ports above the API ports.
const MESH_PORT_OFFSET: u16 = 100;

/// One node of a devnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevnetNode {
    /// Its index, from 0.
    pub index: usize,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Its config file.
    pub config_path: PathBuf,
    /// Where its log goes.
    pub log_path: PathBuf,
    /// Its TCP API endpoint.
    pub api: SocketAddr,
    /// Its mesh TCP server port.
    pub mesh_port: u16,
    /// The nodes it connects to.
    pub connects_to: Vec<usize>,
    /// Its configuration (TOML).
    pub config: String,
}

/// The links of an `n`-node devnet: `(i − 1, i)` for every node, and `(i − 4, i)` for every
/// fourth.
pub fn topology(n: usize) -> Vec<(usize, usize)> {
    let mut edges: Vec<(usize, usize)> = (1..n).map(|i| (i - 1, i)).collect();
    edges.extend((4..n).step_by(4).map(|i| (i - 4, i)));
    edges
}

/// The configuration of node `index` of an `n`-node devnet whose nodes listen for mesh
/// connections on `mesh_ports`, with links `edges`. Prices and capabilities vary with the
/// index: relay costs `index` μMHR/B, WASM `n − index` μMHR per million cycles, storage is
/// offered by even nodes only (`index % 3` μMHR per byte-day). Gossip, beacons and heartbeats
/// run every few seconds instead of every minute, so a demo converges at once.
pub fn node_config(
    index: usize,
    n: usize,
    api: SocketAddr,
    mesh_ports: &[u16],
    edges: &[(usize, usize)],
) -> String {
    let mut toml = String::new();
    let _ = writeln!(toml, "# mehrd devnet node {index} of {n}");
    let _ = writeln!(toml, "[api]\nlisten = [\"{api}\"]\n");
    let _ = writeln!(toml, "[log]\nlevel = \"info\"\n");
    let _ = writeln!(
        toml,
        "[transport]\ncost_per_byte = {}.0\nannounce_interval_secs = 300\n",
        index
    );
    let _ = writeln!(
        toml,
        "[compute]\nwasm_price_per_million_fuel_umhr = {}\n",
        n.saturating_sub(index).max(1)
    );
    let _ = writeln!(
        toml,
        "[storage]\navailable_bytes = {}\n",
        (1u64 + index as u64) << 30
    );
    let _ = writeln!(
        toml,
        "[market]\noffer_storage = {}\nstorage_price_per_byte_day_umhr = {}\ngossip_round_ms = 2000\n\
         beacon_interval_ms = 5000\npull_timeout_ms = 2000\nheartbeat_interval_ms = 2000\n\
         heartbeat_max_misses = 3\n",
        index.is_multiple_of(2),
        index % 3
    );
    // Short epochs, so a demo with a genesis allocation sees snapshots, escrow releases and
    // minting within a minute.
    let _ = writeln!(toml, "[ledger]\nepoch_secs = 30\n");
    if let Some(port) = mesh_ports.get(index) {
        let _ = writeln!(
            toml,
            "[[interfaces]]\ntype = \"tcp_server\"\nname = \"devnet-in\"\nlisten_ip = \"127.0.0.1\"\nlisten_port = {port}\n"
        );
    }
    for (a, b) in edges {
        if *b == index
            && let Some(port) = mesh_ports.get(*a)
        {
            let _ = writeln!(
                toml,
                "[[interfaces]]\ntype = \"tcp_client\"\nname = \"devnet-to-{a}\"\ntarget_host = \"127.0.0.1\"\ntarget_port = {port}\n"
            );
        }
    }
    toml
}

/// Lays out an `n`-node devnet under `dir` with ports from `base_port`.
pub fn plan(n: usize, dir: &Path, base_port: u16) -> anyhow::Result<Vec<DevnetNode>> {
    if n == 0 || n > MAX_NODES {
        anyhow::bail!("--nodes is {n}, give 1 to {MAX_NODES}");
    }
    let last = usize::from(base_port) + usize::from(MESH_PORT_OFFSET) + n;
    if base_port < 1024 || last > usize::from(u16::MAX) {
        anyhow::bail!(
            "--base-port {base_port} leaves no room: ports {base_port}..{last} must lie in 1024..65535"
        );
    }
    let edges = topology(n);
    let mesh_ports: Vec<u16> = (0..n)
        .map(|i| base_port + MESH_PORT_OFFSET + i as u16)
        .collect();
    Ok((0..n)
        .map(|i| {
            let api = SocketAddr::from(([127, 0, 0, 1], base_port + i as u16));
            DevnetNode {
                index: i,
                data_dir: dir.join(format!("node-{i}")),
                config_path: dir.join(format!("node-{i}.toml")),
                log_path: dir.join(format!("node-{i}.log")),
                api,
                mesh_port: mesh_ports[i],
                connects_to: edges
                    .iter()
                    .filter(|(_, b)| *b == i)
                    .map(|(a, _)| *a)
                    .collect(),
                config: node_config(i, n, api, &mesh_ports, &edges),
            }
        })
        .collect())
}

/// Runs a devnet until SIGINT or SIGTERM: writes the configs, starts the daemons, prints how
/// to reach them, and stops them all (SIGTERM, then SIGKILL after 10 s) at the end or when
/// one of them exits.
pub async fn run(n: usize, dir: &Path, base_port: u16) -> anyhow::Result<()> {
    let nodes = plan(n, dir, base_port)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the mehrd executable")?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut children: Vec<(usize, Child)> = Vec::new();
    for node in &nodes {
        std::fs::write(&node.config_path, &node.config)
            .with_context(|| format!("cannot write {}", node.config_path.display()))?;
        let log = std::fs::File::create(&node.log_path)
            .with_context(|| format!("cannot create {}", node.log_path.display()))?;
        let child = Command::new(&exe)
            .arg("--data-dir")
            .arg(&node.data_dir)
            .arg("--config")
            .arg(&node.config_path)
            .env_remove("MEHR_CONFIG")
            .env_remove("MEHR_INTERFACES")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(child) => children.push((node.index, child)),
            Err(e) => {
                stop_all(&mut children).await;
                return Err(e).with_context(|| format!("cannot start node {}", node.index));
            }
        }
    }
    println!("mehrd devnet: {n} nodes under {}", dir.display());
    for node in &nodes {
        let links: Vec<String> = node
            .connects_to
            .iter()
            .map(|i| format!("node-{i}"))
            .collect();
        println!(
            "  node-{:<3} api {}  mesh :{}  data {}{}",
            node.index,
            node.api,
            node.mesh_port,
            node.data_dir.display(),
            if links.is_empty() {
                String::new()
            } else {
                format!("  → {}", links.join(", "))
            }
        );
    }
    println!("  logs      {}/node-N.log", dir.display());
    println!(
        "  try       mehr --data-dir {} discover relay",
        nodes[0].data_dir.display()
    );
    println!(
        "            mehr --data-dir {} offer",
        nodes[nodes.len() - 1].data_dir.display()
    );
    println!("  Ctrl-C stops every node.");
    let reason = loop {
        tokio::select! {
            _ = interrupt.recv() => break "SIGINT".to_string(),
            _ = terminate.recv() => break "SIGTERM".to_string(),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Some(exited) = first_exited(&mut children) {
                    break exited;
                }
            }
        }
    };
    println!("stopping the devnet ({reason})");
    stop_all(&mut children).await;
    Ok(())
}

fn first_exited(children: &mut [(usize, Child)]) -> Option<String> {
    children.iter_mut().find_map(|(index, child)| {
        child
            .try_wait()
            .ok()
            .flatten()
            .map(|status| format!("node-{index} exited ({status}); see its log"))
    })
}

async fn stop_all(children: &mut Vec<(usize, Child)>) {
    for (_, child) in children.iter() {
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    for (index, child) in children.iter_mut() {
        match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!("node-{index} did not stop in 10 s; killing it");
                let _ = child.kill().await;
            }
        }
    }
    children.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, FlagOverrides};

    #[test]
    fn topology_is_connected_and_configs_load() {
        for n in [1, 2, 5, 9, 64] {
            let edges = topology(n);
            let mut reached = vec![false; n];
            reached[0] = true;
            for _ in 0..n {
                for (a, b) in &edges {
                    if reached[*a] || reached[*b] {
                        reached[*a] = true;
                        reached[*b] = true;
                    }
                }
            }
            assert!(reached.iter().all(|r| *r), "{n} nodes connected");
        }
        let dir = tempfile::tempdir().unwrap();
        let nodes = plan(5, dir.path(), 7500).unwrap();
        assert_eq!(nodes[3].connects_to, vec![2]);
        assert_eq!(nodes[4].connects_to, vec![3, 0]);
        for node in &nodes {
            std::fs::write(&node.config_path, &node.config).unwrap();
            let (config, _) = Config::load(
                Some(&node.config_path),
                Vec::new(),
                &FlagOverrides::default(),
            )
            .unwrap();
            assert_eq!(config.api.listen, vec![node.api]);
            assert_eq!(config.transport.cost_per_byte, node.index as f64);
            assert_eq!(config.interfaces.len(), 1 + node.connects_to.len());
            assert_eq!(config.ledger.epoch_secs, 30);
        }
        assert!(plan(0, dir.path(), 7500).is_err());
        assert!(plan(5, dir.path(), 65_500).is_err());
    }
}
