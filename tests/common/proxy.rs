//! Forward proxies for the proxy tests: the real `tinyproxy` (Debian package) started on a free
//! loopback port with its own configuration and log, and a CONNECT tunnel that stands in for
//! the Internet's name service: it sends `CONNECT name:port` to a loopback address of the test's
//! choosing (so "Docker Hub" can be a local registry), and refuses every other destination.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::registry::TempDir;

/// A running tinyproxy, killed on drop.
pub struct Tinyproxy {
    /// `127.0.0.1:PORT`.
    pub host: String,
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

/// The tinyproxy binary on PATH (Debian installs it in /usr/bin, older releases in /usr/sbin).
fn tinyproxy_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("tinyproxy"))
        .find(|p| p.is_file())
        .expect(
            "no tinyproxy found: the proxy tests start the real forward proxy (Debian package \
             tinyproxy); run the README test command `scripts/test`, which installs it",
        )
}

impl Tinyproxy {
    /// Start tinyproxy on a free loopback port, accepting loopback clients only and logging
    /// every request line.
    pub async fn start() -> Tinyproxy {
        let binary = tinyproxy_binary();
        let dir = TempDir::new("tinyproxy");
        let log = dir.path().join("tinyproxy.log");
        for _attempt in 0..8 {
            let port = {
                let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                listener.local_addr().unwrap().port()
            };
            let _ = std::fs::remove_file(&log);
            let config = dir.path().join("tinyproxy.conf");
            // No ConnectPort line: CONNECT is allowed to any port (the registries' are random).
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\n\
                     MaxClients 20\nAllow 127.0.0.1\nDisableViaHeader Yes\n",
                    log.display()
                ),
            )
            .unwrap();
            let mut child = Command::new(&binary)
                .arg("-d")
                .arg("-c")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("Accepting connections") {
                    return Tinyproxy {
                        host: format!("127.0.0.1:{port}"),
                        child,
                        log,
                        _dir: dir,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    // Most likely the port was taken in the meantime: try another.
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("tinyproxy did not start within 20 s; its log:\n{text}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        panic!("tinyproxy could not start on a free port after 8 tries");
    }

    /// `http://127.0.0.1:PORT`, for `HTTPS_PROXY` / `HTTP_PROXY`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    /// The request lines tinyproxy logged (`CONNECT 127.0.0.1:5000 HTTP/1.1`,
    /// `GET http://127.0.0.1:5000/v2/ HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once("): ").map(|(_, rest)| rest))
            .filter(|rest| {
                rest.split(' ')
                    .nth(2)
                    .is_some_and(|v| v.starts_with("HTTP/"))
            })
            .map(str::to_string)
            .collect()
    }

    /// The whole log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CONNECT-only proxy that tunnels `name:port` to the loopback address it was given for that
/// name, and answers 403 for any other destination (nothing leaves the machine).
pub struct Tunnel {
    /// `127.0.0.1:PORT`.
    pub host: String,
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Tunnel {
    /// Tunnel each `(name:port, 127.0.0.1:PORT)` of `routes`.
    pub async fn start(routes: &[(&str, &str)]) -> Tunnel {
        let routes: Arc<HashMap<String, String>> = Arc::new(
            routes
                .iter()
                .map(|(from, to)| (from.to_ascii_lowercase(), to.to_string()))
                .collect(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (routes, log) = (routes.clone(), log.clone());
                tokio::spawn(async move {
                    let _ = tunnel(stream, &routes, &log).await;
                });
            }
        });
        Tunnel { host, seen, task }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    /// Every request line received (`CONNECT registry-1.docker.io:443 HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tunnel(
    mut client: TcpStream,
    routes: &HashMap<String, String>,
    log: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await? == 0 || head.len() > 16 * 1024 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let line = text.lines().next().unwrap_or("").to_string();
    log.lock().unwrap().push(line.clone());
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let route = routes.get(&target.to_ascii_lowercase());
    let (true, Some(address)) = (method == "CONNECT", route) else {
        client
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    let mut upstream = TcpStream::connect(address).await?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
