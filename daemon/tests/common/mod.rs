//! Test harness: real `mehrd` processes, each with its own temp data dir and free ports,
//! stopped (SIGTERM, then SIGKILL) when dropped.

#![allow(dead_code, unreachable_pub)]

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use mehr_sdk::{Client, ConnectOptions};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};

/// Path of a binary built by this package.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "mehrd" => PathBuf::from(env!("CARGO_BIN_EXE_mehrd")),
        "mehr" => PathBuf::from(env!("CARGO_BIN_EXE_mehr")),
        "mehr-adversary" => PathBuf::from(env!("CARGO_BIN_EXE_mehr-adversary")),
        other => panic!("no binary {other}"),
    }
}

/// A free loopback TCP port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running daemon.
pub struct TestDaemon {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub api: SocketAddr,
    _temp: Option<tempfile::TempDir>,
    stderr_path: PathBuf,
}

impl TestDaemon {
    /// Starts a daemon on a fresh data dir and waits until it serves.
    pub fn start() -> TestDaemon {
        let temp = tempfile::tempdir().unwrap();
        let data_dir = temp.path().join("node");
        let mut daemon = TestDaemon::start_in(&data_dir, &[]);
        daemon._temp = Some(temp);
        daemon
    }

    /// Starts a daemon on `data_dir` with extra arguments and waits until it serves.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> TestDaemon {
        let port = free_port();
        let api: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut daemon = TestDaemon::spawn(data_dir, api, extra);
        daemon.wait_ready();
        daemon
    }

    /// Starts a daemon on a fresh data dir with `config` (TOML) as its config file.
    pub fn start_with_config(config: &str) -> TestDaemon {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("mehrd.toml");
        std::fs::write(&file, config).unwrap();
        let mut daemon = TestDaemon::start_in(
            &temp.path().join("node"),
            &["--config", file.to_str().unwrap()],
        );
        daemon._temp = Some(temp);
        daemon
    }

    /// Spawns without waiting.
    pub fn spawn(data_dir: &Path, api: SocketAddr, extra: &[&str]) -> TestDaemon {
        std::fs::create_dir_all(data_dir.parent().unwrap()).unwrap();
        let stderr_path = data_dir.with_extension(format!("stderr.{}", api.port()));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut command = Command::new(bin("mehrd"));
        // No mesh interfaces unless the test configures some: parallel daemons would fight
        // over the default ports. (The variable would override a config file's interfaces, so
        // it is only set when the config file names none.)
        let config_names_interfaces = extra
            .iter()
            .position(|arg| *arg == "--config")
            .and_then(|i| extra.get(i + 1))
            .and_then(|path| std::fs::read_to_string(path).ok())
            .is_some_and(|text| text.contains("interfaces"));
        if !config_names_interfaces {
            command.env("MEHR_INTERFACES", "[]");
        }
        let child = command
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--api-listen")
            .arg(api.to_string())
            .args(extra)
            .env_remove("MEHR_CONFIG")
            .env("MEHR_LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn mehrd");
        TestDaemon {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            api,
            _temp: None,
            stderr_path,
        }
    }

    /// What the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits until the API answers on the Unix socket (panics with the daemon's log otherwise).
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mehrd exited early ({status}):\n{}", self.stderr());
            }
            if runtime
                .block_on(async { self.client().await.ok()?.info().await.ok() })
                .is_some()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mehrd did not become ready:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An SDK client over the Unix socket.
    pub async fn client(&self) -> Result<Client, mehr_sdk::Error> {
        Client::connect_with(ConnectOptions {
            data_dir: Some(self.data_dir.clone()),
            ..Default::default()
        })
        .await
    }

    /// The API token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("api.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Runs the `mehr` CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin("mehr"))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .env_remove("MEHR_ENDPOINT")
            .env_remove("MEHR_TOKEN")
            .output()
            .expect("run mehr")
    }

    /// Sends `signal` without waiting (SIGSTOP and SIGCONT freeze and thaw the daemon).
    pub fn signal(&self, signal: Signal) {
        let child = self.child.as_ref().expect("the daemon runs");
        kill(Pid::from_raw(child.id() as i32), signal).expect("signal the daemon");
    }

    /// Sends `signal` and waits for the exit, at most `timeout`.
    pub fn stop_with(&mut self, signal: Signal, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        // The process may have exited already (ESRCH); waiting below reaps it either way.
        let _ = kill(Pid::from_raw(child.id() as i32), signal);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop_with(Signal::SIGTERM, Duration::from_secs(10));
        }
    }
}

/// A free loopback UDP port.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 50 ms until it returns `Some`, at most `timeout`; panics with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node prepared before it starts: a data dir holding a fresh identity, and where its config
/// goes (both in a temp dir removed when this is dropped).
pub struct Planned {
    pub _temp: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    /// The node id (the identity's hash).
    pub id: [u8; 16],
    pub identity: mehr_transport::identity::PrivateIdentity,
}

/// `n` nodes, each with its own fresh identity written where `mehrd` reads it (0600, in a
/// 0700 data dir, as the daemon insists).
pub fn plan(n: usize) -> Vec<Planned> {
    use std::os::unix::fs::PermissionsExt;
    (0..n)
        .map(|_| {
            let temp = tempfile::tempdir().unwrap();
            let data_dir = temp.path().join("node");
            std::fs::create_dir_all(&data_dir).unwrap();
            std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            let identity =
                mehr_transport::identity::PrivateIdentity::generate(&mut rand::rngs::OsRng);
            let file = data_dir.join("identity");
            std::fs::write(&file, identity.to_private_key().as_slice()).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            Planned {
                config: temp.path().join("mehrd.toml"),
                _temp: temp,
                data_dir,
                id: identity.hash().0,
                identity,
            }
        })
        .collect()
}

/// A TCP server interface on loopback `port`, as config TOML.
pub fn tcp_server(port: u16) -> String {
    format!(
        "[[interfaces]]\ntype = \"tcp_server\"\nlisten_ip = \"127.0.0.1\"\nlisten_port = {port}\n"
    )
}

/// A TCP client interface to loopback `port`, as config TOML.
pub fn tcp_client(port: u16) -> String {
    format!(
        "[[interfaces]]\ntype = \"tcp_client\"\ntarget_host = \"127.0.0.1\"\ntarget_port = {port}\n"
    )
}

/// Waits (up to 30 s) until `client`'s node has `id` as a Mehr neighbour.
pub async fn wait_neighbour(client: &Client, id: &[u8; 16]) {
    eventually("a Mehr neighbour", Duration::from_secs(30), || async {
        client
            .neighbours()
            .await
            .ok()?
            .into_iter()
            .any(|n| n.node_id.as_ref() == id)
            .then_some(())
    })
    .await;
}

/// `client`'s open channel with `peer`, if it has one.
pub async fn channel_with(client: &Client, peer: &[u8; 16]) -> Option<mehr_sdk::proto::Channel> {
    use mehr_sdk::proto::ChannelPhase;
    client
        .channels()
        .await
        .ok()?
        .into_iter()
        .find(|c| c.peer.as_ref() == peer && c.phase() == ChannelPhase::Open)
}
