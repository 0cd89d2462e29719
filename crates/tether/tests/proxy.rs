//! Connections through real proxy servers, started by the tests themselves:
//!
//! - `tinyproxy` (HTTP `CONNECT`), without and with Basic proxy
//!   authentication (`BasicAuth` in its configuration);
//! - `danted` (Dante, SOCKS5), without and with RFC 1929 username/password
//!   authentication.
//!
//! Both are Debian packages installed by `interop/install-proxies.sh` (which
//! `scripts/test.sh` runs). When they are missing these tests fail, they are
//! never skipped.
//!
//! Each proxy runs on a free loopback port with a configuration generated in
//! a temporary directory, inside its own mount and PID namespaces
//! (`unshare`, so the tests need root) where `/etc/hosts` also maps
//! `echo.tether.test` to 127.0.0.1. That name resolves only at the proxy: a connection to
//! `ws://echo.tether.test:PORT/` that works went through the proxy, and a
//! `socks5h://` one proves the name was resolved there. Dante's
//! username/password check reads the system password database, so its
//! namespace also gets `/etc/passwd` and `/etc/shadow` with one extra test
//! user; the machine's own files are never changed.
//!
//! The tests that need the environment (`ws_proxy`, `no_proxy`...) run this
//! test binary again as a child process, with exactly the variables under
//! test, so that no test changes the environment of this process.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tether::reconnect::{Backoff, ReconnectPolicy};
use tether::{ClientBuilder, Error, ErrorKind, Message, Server, ServerBuilder, WebSocket};

/// The name that only the proxies can resolve (to 127.0.0.1).
const NAME: &str = "echo.tether.test";
/// The SOCKS5 test user and its password, and the password's crypt(3)
/// SHA-512 hash (`openssl passwd -6 -salt tethertestsalt s3cret`) for the
/// namespace's `/etc/shadow`.
const SOCKS_USER: &str = "tethersocks";
const SOCKS_PASS: &str = "s3cret";
const SOCKS_HASH: &str = "$6$tethertestsalt$v27RHJvxs1/Q0vzfj7FRro.0z8X.s8QPBrSMhpaS6kyRONv7fV3jELAGZpaFpJITjOofcdIF.DW2WEDDMTv8o1";
/// tinyproxy's Basic credentials.
const HTTP_USER: &str = "alice";
const HTTP_PASS: &str = "pr0xy-pass";
/// The bound on one whole test.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a proxy may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Temporary directories, free ports, the binaries
// ---------------------------------------------------------------------------

/// A directory under cargo's target tmp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "proxy-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn write(&self, file: &str, text: &str) -> PathBuf {
        let p = self.path(file);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (bound, then released for the proxy to take).
fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The path of `bin`, or a failure that says how to install it.
fn require(bin: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(
        ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .map(PathBuf::from),
    );
    for d in dirs {
        let p = d.join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "`{bin}` (Debian package {package}) is not installed, so the proxy tests fail.\n\
         Install the proxies with `bash interop/install-proxies.sh` (as root), \
         or run `scripts/test.sh`, which does."
    );
}

/// Fails the test unless it runs as root (needed for the mount namespace).
fn require_root() {
    let out = Command::new("id").arg("-u").output().expect("run `id -u`");
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        uid, "0",
        "the proxy tests run the proxies in a mount namespace (`unshare -m`) and need root; \
         they run as root in CI and with scripts/test.sh"
    );
}

// ---------------------------------------------------------------------------
// Proxy daemons
// ---------------------------------------------------------------------------

/// A proxy process, stopped (SIGTERM, then SIGKILL) on drop.
struct Daemon {
    name: &'static str,
    child: Child,
    port: u16,
    log: PathBuf,
    dir: TempDir,
}

impl Daemon {
    /// Starts `program args` in a new mount namespace where the files of
    /// `mounts` (`(source, target)`) are bind-mounted over the system's.
    fn start(
        name: &'static str,
        dir: TempDir,
        port: u16,
        mounts: &[(PathBuf, &str)],
        program: &Path,
        args: &[&str],
    ) -> Daemon {
        require_root();
        let unshare = require("unshare", "util-linux");
        let mut script = String::from("set -e\n");
        for (i, _) in mounts.iter().enumerate() {
            script.push_str(&format!(
                "mount --bind \"${}\" \"${}\"\n",
                2 * i + 1,
                2 * i + 2
            ));
        }
        script.push_str(&format!("shift {}\nexec \"$@\"\n", 2 * mounts.len()));
        let log = dir.path(&format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("create the log");
        let mut cmd = Command::new(unshare);
        // A PID namespace too, so that the daemon's own children (dante forks
        // a dozen) are reaped when it stops instead of lingering as zombies;
        // --kill-child ends the tree should unshare itself be killed.
        cmd.args([
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--kill-child",
            "sh",
            "-c",
            &script,
            "sh",
        ]);
        for (src, dst) in mounts {
            cmd.arg(src).arg(dst);
        }
        cmd.arg(program).args(args);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup the log"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e}"));
        let mut d = Daemon {
            name,
            child,
            port,
            log,
            dir,
        };
        d.wait_listening();
        d
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited at start ({status}); its output:\n{}",
                    self.name,
                    self.log()
                );
            }
            if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not listen on {addr} within {START_TIMEOUT:?}; its output:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The proxy URL, with `user:password@` when given.
    fn url(&self, scheme: &str, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((u, p)) => format!("{scheme}://{u}:{p}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }
}

impl Drop for Daemon {
    /// Stops the daemon: SIGTERM to it (the first process of the PID
    /// namespace, child of `unshare`), so that it exits, the kernel ends the
    /// rest of the namespace, and `unshare` reaps it and exits; SIGKILL after
    /// 3 s.
    fn drop(&mut self) {
        let pid = self.child.id();
        let daemon = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .ok()
            .and_then(|s| s.split_whitespace().next().map(str::to_string));
        let target = daemon.clone().unwrap_or_else(|| pid.to_string());
        let _ = Command::new("kill").args(["-TERM", &target]).status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(d) = daemon {
            let _ = Command::new("kill").args(["-KILL", &d]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

/// `/etc/hosts` plus `echo.tether.test`, for a namespace.
fn hosts_file(dir: &TempDir) -> PathBuf {
    let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    if !hosts.ends_with('\n') && !hosts.is_empty() {
        hosts.push('\n');
    }
    hosts.push_str(&format!("127.0.0.1 {NAME}\n"));
    dir.write("hosts", &hosts)
}

/// tinyproxy on a free port; with Basic authentication when `auth`.
fn tinyproxy(auth: bool) -> Daemon {
    let bin = require("tinyproxy", "tinyproxy");
    let dir = TempDir::new("tinyproxy");
    let port = free_port();
    let mut conf = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 50\nAllow 127.0.0.1\n\
         LogLevel Info\nDisableViaHeader Yes\n"
    );
    if auth {
        conf.push_str(&format!("BasicAuth {HTTP_USER} {HTTP_PASS}\n"));
    }
    let conf = dir.write("tinyproxy.conf", &conf);
    let hosts = hosts_file(&dir);
    let conf = conf.to_str().expect("a UTF-8 path").to_string();
    Daemon::start(
        "tinyproxy",
        dir,
        port,
        &[(hosts, "/etc/hosts")],
        &bin,
        &["-d", "-c", &conf],
    )
}

/// danted on a free port; with username/password authentication when `auth`.
fn dante(auth: bool) -> Daemon {
    let bin = require("danted", "dante-server");
    let dir = TempDir::new("dante");
    let port = free_port();
    let method = if auth { "username" } else { "none" };
    let conf = format!(
        "logoutput: stderr\n\
         internal: 127.0.0.1 port = {port}\n\
         external: 127.0.0.1\n\
         clientmethod: none\n\
         socksmethod: {method}\n\
         user.privileged: root\n\
         user.unprivileged: nobody\n\
         client pass {{ from: 127.0.0.0/8 to: 0.0.0.0/0 }}\n\
         socks pass {{\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  command: connect\n  log: connect error\n}}\n"
    );
    let conf = dir.write("danted.conf", &conf);
    let mut mounts = vec![(hosts_file(&dir), "/etc/hosts")];
    if auth {
        let mut passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
        let mut shadow = std::fs::read_to_string("/etc/shadow")
            .expect("read /etc/shadow (the SOCKS5 authentication test needs root)");
        for f in [&mut passwd, &mut shadow] {
            if !f.ends_with('\n') {
                f.push('\n');
            }
        }
        passwd.push_str(&format!(
            "{SOCKS_USER}:x:64999:64999:tether proxy test:/nonexistent:/usr/sbin/nologin\n"
        ));
        shadow.push_str(&format!("{SOCKS_USER}:{SOCKS_HASH}:19000:0:99999:7:::\n"));
        mounts.push((dir.write("passwd", &passwd), "/etc/passwd"));
        mounts.push((dir.write("shadow", &shadow), "/etc/shadow"));
    }
    let conf = conf.to_str().expect("a UTF-8 path").to_string();
    Daemon::start("danted", dir, port, &mounts, &bin, &["-f", &conf])
}

// ---------------------------------------------------------------------------
// The WebSocket side
// ---------------------------------------------------------------------------

/// A tether echo server on 127.0.0.1, plain or TLS.
async fn echo_server(tls: Option<(&str, &str)>) -> Server {
    #[allow(unused_mut)]
    let mut b = ServerBuilder::new();
    #[cfg(feature = "rustls")]
    if let Some((cert, key)) = tls {
        b = b
            .tls_pem_bytes(cert.as_bytes(), key.as_bytes())
            .expect("the test certificate");
    }
    #[cfg(not(feature = "rustls"))]
    assert!(tls.is_none(), "TLS needs the `tls` feature");
    b.serve("127.0.0.1:0", |mut ws: WebSocket| async move {
        while let Some(Ok(msg)) = ws.recv().await {
            if msg.is_data() && ws.send(msg).await.is_err() {
                break;
            }
        }
    })
    .await
    .expect("an echo server")
}

/// Sends a message and expects it back.
async fn echo(mut ws: WebSocket, what: &str) {
    ws.send(Message::text(what.to_string()))
        .await
        .expect("send");
    let back = tokio::time::timeout(Duration::from_secs(10), ws.recv())
        .await
        .expect("an echo within 10 s")
        .expect("an echo")
        .expect("an echo, not an error");
    assert_eq!(back, Message::text(what.to_string()));
    let _ = ws.close(tether::CloseCode::NORMAL, "").await;
}

fn client(url: &str, proxy: &str) -> ClientBuilder {
    ClientBuilder::new(url)
        .proxy(proxy)
        .open_timeout(Some(Duration::from_secs(10)))
}

/// A reconnect policy with short delays, for counting attempts.
fn quick(max_attempts: Option<u32>) -> ReconnectPolicy {
    ReconnectPolicy::default()
        .backoff(Backoff {
            initial_max: Duration::from_millis(20),
            min: Duration::from_millis(10),
            factor: 2.0,
            max: Duration::from_millis(50),
            jitter: 0.5,
        })
        .max_attempts(max_attempts)
        .seed(7)
}

/// The first item of a reconnecting stream, which must be an error, and the
/// number of attempts made.
async fn fatal(builder: ClientBuilder, policy: ReconnectPolicy) -> (Error, u32) {
    let mut conns = builder.reconnecting(policy);
    let first = tokio::time::timeout(Duration::from_secs(30), conns.next())
        .await
        .expect("the reconnect loop to stop within 30 s")
        .expect("an item");
    match first {
        Ok(_) => panic!("connected, but an error was expected"),
        Err(e) => (e, conns.attempts()),
    }
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("the test to finish within its bound")
}

fn assert_no_secret(e: &Error, secret: &str) {
    let shown = format!("{e} | {e:?}");
    assert!(!shown.contains(secret), "a secret leaked: {shown}");
}

// ---------------------------------------------------------------------------
// HTTP CONNECT through tinyproxy
// ---------------------------------------------------------------------------

#[tokio::test]
async fn http_connect_without_auth() {
    within(async {
        let proxy = tinyproxy(false);
        let server = echo_server(None).await;
        let port = server.local_addr().port();
        // The name resolves only at the proxy.
        let url = format!("ws://{NAME}:{port}/chat");
        let ws = client(&url, &proxy.url("http", None))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{e}\ntinyproxy:\n{}", proxy.log()));
        echo(ws, "through tinyproxy").await;
        // An IP target, and the proxy's log.
        let ws = client(&format!("ws://127.0.0.1:{port}/"), &proxy.url("http", None))
            .connect()
            .await
            .unwrap();
        echo(ws, "by address").await;
        let log = proxy.log();
        assert!(log.contains(&format!("CONNECT {NAME}:{port}")), "{log}");
        assert!(log.contains(&format!("CONNECT 127.0.0.1:{port}")), "{log}");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn http_connect_with_basic_auth() {
    within(async {
        let proxy = tinyproxy(true);
        let server = echo_server(None).await;
        let url = format!("ws://{NAME}:{}/", server.local_addr().port());
        let ws = client(&url, &proxy.url("http", Some((HTTP_USER, HTTP_PASS))))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{e}\ntinyproxy:\n{}", proxy.log()));
        echo(ws, "authenticated").await;
        // Percent-encoded credentials are decoded.
        let encoded = format!(
            "http://%61lice:{}@127.0.0.1:{}",
            HTTP_PASS.replace('-', "%2D"),
            proxy.port
        );
        let ws = client(&url, &encoded).connect().await.unwrap();
        echo(ws, "encoded").await;
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn http_connect_refused_credentials_are_fatal_after_one_attempt() {
    within(async {
        let proxy = tinyproxy(true);
        let server = echo_server(None).await;
        let url = format!("ws://{NAME}:{}/", server.local_addr().port());

        let wrong = proxy.url("http", Some((HTTP_USER, "hunter2")));
        let (e, attempts) = fatal(client(&url, &wrong), quick(None)).await;
        assert_eq!(attempts, 1, "{e}");
        assert_eq!(e.kind(), ErrorKind::HttpStatus, "{e}");
        // tinyproxy answers wrong credentials with 401 (and none with 407).
        assert_eq!(e.status(), Some(401));
        assert!(e.is_proxy() && e.is_auth_refused(), "{e}");
        let r = e.response().expect("the proxy's response");
        assert!(r.header_str("www-authenticate").is_some(), "{r:?}");
        assert!(!r.body.is_empty() && r.body.len() <= 4096, "{r:?}");
        let shown = e.to_string();
        assert!(shown.contains("proxy"), "{shown}");
        assert!(shown.contains("refused the CONNECT"), "{shown}");
        assert!(shown.contains("HTTP 401"), "{shown}");
        assert!(shown.contains("refused the credentials"), "{shown}");
        assert_no_secret(&e, "hunter2");

        // No credentials at all: 407, the proxy asks for some; fatal too.
        let (e, attempts) = fatal(client(&url, &proxy.url("http", None)), quick(None)).await;
        assert_eq!((attempts, e.status()), (1, Some(407)), "{e}");
        assert!(e.is_proxy() && e.is_auth_refused(), "{e}");
        let r = e.response().expect("the proxy's response");
        assert!(r.header_str("proxy-authenticate").is_some(), "{r:?}");
        assert!(e.to_string().contains("HTTP 407"), "{e}");
        assert!(e.to_string().contains("asks for credentials"), "{e}");

        // The proxy's refusal does not spend a credentials-provider refresh.
        let with_provider = client(&url, &wrong)
            .headers_provider(|_| async { Ok::<_, tether::BoxError>(http::HeaderMap::new()) });
        let (e, attempts) = fatal(with_provider, quick(None)).await;
        assert_eq!((attempts, e.status()), (1, Some(401)), "{e}");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn http_proxy_cannot_reach_the_target_is_retryable() {
    within(async {
        let proxy = tinyproxy(false);
        let closed = free_port();
        let url = format!("ws://127.0.0.1:{closed}/");
        let (e, attempts) = fatal(client(&url, &proxy.url("http", None)), quick(Some(2))).await;
        assert_eq!(e.kind(), ErrorKind::Exhausted, "{e}");
        assert_eq!(attempts, 2, "{e}");
        let last = e.last_error().expect("the last error");
        // tinyproxy says "500 Unable to connect".
        assert_eq!(last.kind(), ErrorKind::HttpStatus, "{last}");
        assert!(last.is_proxy() && !last.is_auth_refused(), "{last}");
        assert!(last.status().is_some_and(|s| s >= 500), "{last}");
        assert!(last.to_string().contains("refused the CONNECT"), "{last}");
    })
    .await
}

// ---------------------------------------------------------------------------
// SOCKS5 through dante
// ---------------------------------------------------------------------------

#[tokio::test]
async fn socks5_without_auth() {
    within(async {
        let proxy = dante(false);
        let server = echo_server(None).await;
        let port = server.local_addr().port();
        // socks5h: the name is resolved by the proxy (nowhere else can).
        let ws = client(&format!("ws://{NAME}:{port}/"), &proxy.url("socks5h", None))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{e}\ndanted:\n{}", proxy.log()));
        echo(ws, "through dante").await;
        // socks5: resolved here, so the name fails locally (not at the proxy).
        let e = client(&format!("ws://{NAME}:{port}/"), &proxy.url("socks5", None))
            .connect()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Dns, "{e}");
        // socks5 with an address.
        let ws = client(
            &format!("ws://127.0.0.1:{port}/"),
            &proxy.url("socks5", None),
        )
        .connect()
        .await
        .unwrap();
        echo(ws, "by address").await;
        let log = proxy.log();
        assert!(log.contains(&format!(".{port}")), "{log}");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn socks5_with_username_and_password() {
    within(async {
        let proxy = dante(true);
        let server = echo_server(None).await;
        let url = format!("ws://{NAME}:{}/", server.local_addr().port());
        let ws = client(&url, &proxy.url("socks5h", Some((SOCKS_USER, SOCKS_PASS))))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{e}\ndanted:\n{}", proxy.log()));
        echo(ws, "authenticated socks").await;

        // A wrong password: fatal at once.
        let wrong = proxy.url("socks5h", Some((SOCKS_USER, "hunter2")));
        let (e, attempts) = fatal(client(&url, &wrong), quick(None)).await;
        assert_eq!(attempts, 1, "{e}");
        assert_eq!(e.kind(), ErrorKind::Handshake, "{e}");
        assert!(e.is_proxy() && e.is_auth_refused(), "{e}");
        assert!(e.to_string().contains("refused the credentials"), "{e}");
        assert_no_secret(&e, "hunter2");

        // No credentials: the proxy accepts no offered method; fatal.
        let (e, attempts) = fatal(client(&url, &proxy.url("socks5h", None)), quick(None)).await;
        assert_eq!((attempts, e.kind()), (1, ErrorKind::Handshake), "{e}");
        assert!(e.is_auth_refused(), "{e}");
        assert!(e.to_string().contains("requires authentication"), "{e}");
        server.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn socks5_failure_replies_are_retryable_connect_errors() {
    within(async {
        let proxy = dante(false);
        let closed = free_port();
        let url = format!("ws://127.0.0.1:{closed}/");
        let (e, attempts) = fatal(client(&url, &proxy.url("socks5h", None)), quick(Some(2))).await;
        assert_eq!((e.kind(), attempts), (ErrorKind::Exhausted, 2), "{e}");
        let last = e.last_error().expect("the last error");
        assert_eq!(last.kind(), ErrorKind::Connect, "{last}");
        assert!(last.is_proxy(), "{last}");
        assert!(
            last.to_string().contains("connection refused (reply 5)"),
            "{last}"
        );
    })
    .await
}

#[tokio::test]
async fn an_unreachable_proxy_is_a_retryable_connect_error() {
    within(async {
        let closed = free_port();
        for scheme in ["http", "socks5h"] {
            let proxy = format!("{scheme}://user:hunter2@127.0.0.1:{closed}");
            let (e, attempts) =
                fatal(client("ws://example.invalid/", &proxy), quick(Some(2))).await;
            assert_eq!((e.kind(), attempts), (ErrorKind::Exhausted, 2), "{e}");
            let last = e.last_error().unwrap();
            assert_eq!(last.kind(), ErrorKind::Connect, "{last}");
            assert!(last.is_proxy(), "{last}");
            assert!(
                last.to_string().contains("could not connect to the proxy"),
                "{last}"
            );
            assert_no_secret(&e, "hunter2");
        }
        // An invalid proxy URL is fatal before any network access.
        let (e, _) = fatal(client("ws://example.invalid/", "https://p:1"), quick(None)).await;
        assert_eq!(e.kind(), ErrorKind::InvalidUrl, "{e}");
        assert!(e.is_proxy());
    })
    .await
}

// ---------------------------------------------------------------------------
// wss:// through each proxy
// ---------------------------------------------------------------------------

#[cfg(feature = "rustls")]
#[tokio::test]
async fn wss_through_both_proxies() {
    within(async {
        let ck = rcgen::generate_simple_self_signed(vec![NAME.to_string()]).unwrap();
        let (cert, key) = (ck.cert.pem(), ck.signing_key.serialize_pem());
        let server = echo_server(Some((&cert, &key))).await;
        let url = format!("wss://{NAME}:{}/", server.local_addr().port());
        let http = tinyproxy(true);
        let socks = dante(true);
        for proxy in [
            http.url("http", Some((HTTP_USER, HTTP_PASS))),
            socks.url("socks5h", Some((SOCKS_USER, SOCKS_PASS))),
        ] {
            let ws = client(&url, &proxy)
                .add_root_certificate_pem(cert.as_bytes())
                .unwrap()
                .connect()
                .await
                .unwrap_or_else(|e| {
                    panic!("{e}\ntinyproxy:\n{}\ndanted:\n{}", http.log(), socks.log())
                });
            echo(ws, "wss through a proxy").await;
        }
        server.shutdown().await;
    })
    .await
}

// ---------------------------------------------------------------------------
// The environment: this binary again, as a child, with chosen variables
// ---------------------------------------------------------------------------

/// Environment variables that choose a proxy, cleared for the child.
const PROXY_VARS: [&str; 16] = [
    "ws_proxy",
    "WS_PROXY",
    "wss_proxy",
    "WSS_PROXY",
    "socks_proxy",
    "SOCKS_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
    "REQUEST_METHOD",
    "TETHER_PROXY_CHILD_NO_PROXY",
];

/// Not a test on its own: the child of the environment tests. Connects to
/// `TETHER_PROXY_CHILD_URL` with the default proxy setting (or
/// `.no_proxy()` when `TETHER_PROXY_CHILD_NO_PROXY` is set) and prints the
/// outcome.
#[tokio::test]
async fn env_child() {
    let Ok(url) = std::env::var("TETHER_PROXY_CHILD_URL") else {
        return;
    };
    let mut b = ClientBuilder::new(url).open_timeout(Some(Duration::from_secs(10)));
    if std::env::var_os("TETHER_PROXY_CHILD_NO_PROXY").is_some() {
        b = b.no_proxy();
    }
    match b.connect().await {
        Ok(ws) => {
            echo(ws, "from the environment").await;
            println!("CHILD-OUTCOME ok");
        }
        Err(e) => println!(
            "CHILD-OUTCOME error kind={:?} proxy={} message={e}",
            e.kind(),
            e.is_proxy()
        ),
    }
}

/// Runs [`env_child`] in a mount namespace where `echo.tether.test`
/// resolves (locally too), with exactly `vars` set among the proxy
/// variables; returns its outcome line.
fn run_child(hosts: &Path, url: &str, vars: &[(&str, String)]) -> String {
    let exe = std::env::current_exe().expect("the test binary");
    let unshare = require("unshare", "util-linux");
    let mut cmd = Command::new(unshare);
    cmd.args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        "set -e; mount --bind \"$1\" /etc/hosts; shift; exec \"$@\"",
        "sh",
    ])
    .arg(hosts)
    .arg(exe)
    .args(["env_child", "--exact", "--nocapture", "--test-threads=1"]);
    for v in PROXY_VARS {
        cmd.env_remove(v);
    }
    cmd.env("TETHER_PROXY_CHILD_URL", url);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // The test harness may print "test env_child ... " before it.
    stdout
        .lines()
        .find_map(|l| l.find("CHILD-OUTCOME").map(|i| l[i..].to_string()))
        .unwrap_or_else(|| panic!("no outcome from the child:\n{stdout}\n{stderr}"))
}

#[tokio::test]
async fn proxies_from_the_environment() {
    within(async {
        require_root();
        let http = tinyproxy(false);
        let socks = dante(false);
        let server = echo_server(None).await;
        let port = server.local_addr().port();
        let dir = TempDir::new("env");
        let hosts = hosts_file(&dir);
        let url = format!("ws://{NAME}:{port}/");
        let dead = format!("http://127.0.0.1:{}", free_port());
        let hosts2 = hosts.clone();
        let run = move |url: String, vars: Vec<(&'static str, String)>| {
            let hosts = hosts2.clone();
            tokio::task::spawn_blocking(move || run_child(&hosts, &url, &vars))
        };

        // ws_proxy: through tinyproxy (its log shows the CONNECT).
        let out = run(url.clone(), vec![("ws_proxy", http.url("http", None))])
            .await
            .unwrap();
        assert_eq!(out, "CHILD-OUTCOME ok", "{}", http.log());
        assert!(http.log().contains(&format!("CONNECT {NAME}:{port}")));

        // Upper-case HTTPS_PROXY applies to ws:// too: a dead proxy fails it.
        let out = run(url.clone(), vec![("HTTPS_PROXY", dead.clone())])
            .await
            .unwrap();
        assert!(
            out.starts_with("CHILD-OUTCOME error kind=Connect proxy=true"),
            "{out}"
        );

        // ws_proxy comes before https_proxy.
        let out = run(
            url.clone(),
            vec![
                ("ws_proxy", http.url("http", None)),
                ("https_proxy", dead.clone()),
            ],
        )
        .await
        .unwrap();
        assert_eq!(out, "CHILD-OUTCOME ok");

        // socks_proxy=http://... means socks5h, and comes before http_proxy.
        let socks_as_http = format!("http://127.0.0.1:{}", socks.port);
        let out = run(
            url.clone(),
            vec![("socks_proxy", socks_as_http), ("http_proxy", dead.clone())],
        )
        .await
        .unwrap();
        assert_eq!(out, "CHILD-OUTCOME ok", "{}", socks.log());

        // no_proxy first: the dead proxy is not used.
        for no in [
            NAME.to_string(),
            ".tether.test".into(),
            format!("{NAME}:{port}"),
            "*".into(),
        ] {
            let out = run(
                url.clone(),
                vec![("ws_proxy", dead.clone()), ("NO_PROXY", no.clone())],
            )
            .await
            .unwrap();
            assert_eq!(out, "CHILD-OUTCOME ok", "NO_PROXY={no}");
        }
        // ...but a no_proxy entry for another port does not match.
        let out = run(
            url.clone(),
            vec![
                ("ws_proxy", dead.clone()),
                ("no_proxy", format!("{NAME}:1")),
            ],
        )
        .await
        .unwrap();
        assert!(out.contains("proxy=true"), "{out}");

        // all_proxy, last.
        let out = run(url.clone(), vec![("ALL_PROXY", dead.clone())])
            .await
            .unwrap();
        assert!(out.contains("proxy=true"), "{out}");

        // Loopback is never proxied from the environment.
        let out = run(
            format!("ws://127.0.0.1:{port}/"),
            vec![("ws_proxy", dead.clone()), ("all_proxy", dead.clone())],
        )
        .await
        .unwrap();
        assert_eq!(out, "CHILD-OUTCOME ok");

        // .no_proxy() ignores the environment.
        let out = run(
            url.clone(),
            vec![
                ("ws_proxy", dead.clone()),
                ("TETHER_PROXY_CHILD_NO_PROXY", "1".into()),
            ],
        )
        .await
        .unwrap();
        assert_eq!(out, "CHILD-OUTCOME ok");
        server.shutdown().await;
    })
    .await
}

/// A proxy's redirect is the proxy's answer, not the server's: not followed.
#[tokio::test]
async fn a_proxy_redirect_is_not_followed() {
    within(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let fake = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            s.write_all(
                b"HTTP/1.1 302 Found\r\nLocation: ws://elsewhere.invalid/\r\nContent-Length: 0\r\n\r\n",
            )
            .await
            .unwrap();
            head
        });
        let e = client("ws://target.invalid:81/x", &format!("http://127.0.0.1:{port}"))
            .connect()
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::HttpStatus, "{e}");
        assert_eq!(e.status(), Some(302));
        assert!(e.is_proxy() && !e.is_auth_refused(), "{e}");
        let head = fake.await.unwrap();
        assert!(
            head.starts_with("CONNECT target.invalid:81 HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nUser-Agent: tether/"), "{head}");
    })
    .await
}
