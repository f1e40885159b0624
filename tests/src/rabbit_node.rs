//! A private RabbitMQ node for tests that must restart the broker or change its listeners
//! (TLS): a second node of the machine's `rabbitmq-server`, on free loopback ports, with its
//! own data directory. Stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bridge::free_port;

/// TLS listener settings: PEM files readable by the `rabbitmq` user.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// The server certificate.
    pub cert: PathBuf,
    /// The server key.
    pub key: PathBuf,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with `openssl`.
pub struct TestCerts {
    /// Where the files are.
    pub dir: tempfile::TempDir,
    /// The broker's listener files.
    pub listener: TlsListener,
    /// The client certificate.
    pub client_cert: PathBuf,
    /// The client key.
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?}");
}

impl TestCerts {
    /// Another certificate signed by this CA: `(certificate, key)` named `name` in its
    /// directory, with the x509 extension `ext` (e.g. `subjectAltName=DNS:wrong.example`).
    pub fn sign(&self, name: &str, ext: &str) -> (PathBuf, PathBuf) {
        sign(self.dir.path(), name, ext);
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("a+rX")
            .arg(self.dir.path())
            .status();
        (
            self.dir.path().join(format!("{name}.pem")),
            self.dir.path().join(format!("{name}.key")),
        )
    }

    /// Generates the certificates (readable by the `rabbitmq` user).
    pub fn generate() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=bridge-test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        for (name, ext) in [
            ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
            ("client", "extendedKeyUsage=clientAuth"),
        ] {
            sign(d, name, ext);
        }
        let _ = Command::new("chmod").arg("-R").arg("a+rX").arg(d).status();
        TestCerts {
            listener: TlsListener {
                ca: d.join("ca.pem"),
                cert: d.join("server.pem"),
                key: d.join("server.key"),
            },
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
            dir,
        }
    }
}

/// Makes `NAME.key` and `NAME.pem` in `d`, signed by `d/ca.pem`, with the x509 extension `ext`.
fn sign(d: &Path, name: &str, ext: &str) {
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
    );
    std::fs::write(d.join(format!("{name}.ext")), ext).expect("ext file");
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &pem,
        ],
    );
}

/// A running private node.
pub struct RabbitNode {
    name: String,
    dir: PathBuf,
    /// The plain AMQP port.
    pub port: u16,
    /// The TLS port, if a TLS listener was asked for.
    pub tls_port: Option<u16>,
    child: Child,
}

fn rabbitmqctl(node: &str, args: &[&str]) -> bool {
    Command::new("rabbitmqctl")
        .arg("-n")
        .arg(node)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl RabbitNode {
    /// Starts a node; with `tls`, also a TLS listener that requires a client certificate.
    pub fn start(tls: Option<&TlsListener>) -> Self {
        let name = format!(
            "bridge-test-{}-{}@localhost",
            std::process::id(),
            free_port()
        );
        let dir = std::env::temp_dir().join(name.replace('@', "-"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("node directory");
        let port = free_port();
        let mut conf = format!("listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n");
        let tls_port = tls.map(|t| {
            let p = free_port();
            conf.push_str(&format!(
                "listeners.ssl.default = 127.0.0.1:{p}\n\
                 ssl_options.cacertfile = {}\nssl_options.certfile = {}\nssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = true\n",
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            ));
            p
        });
        std::fs::write(dir.join("rabbitmq.conf"), conf).expect("node config");
        std::fs::write(dir.join("enabled_plugins"), "[].\n").expect("node plugins");
        // The server runs as the `rabbitmq` user.
        let _ = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(&dir)
            .status();
        let log = std::fs::File::create(
            std::env::temp_dir().join(format!("{}.log", name.replace('@', "-"))),
        )
        .expect("node log");
        let child = Command::new("rabbitmq-server")
            .env("RABBITMQ_NODENAME", &name)
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", free_port().to_string())
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("rabbitmq-server starts (scripts/brokers.sh installs it)");
        let node = RabbitNode {
            name,
            dir,
            port,
            tls_port,
            child,
        };
        node.await_up();
        node
    }

    fn await_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if rabbitmqctl(&self.name, &["await_startup", "--timeout", "5"]) {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("RabbitMQ node {} did not start", self.name);
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the broker application: every connection is closed and new ones are refused.
    pub fn stop_app(&self) {
        assert!(rabbitmqctl(&self.name, &["stop_app"]), "stop_app");
    }

    /// Starts the broker application again. Durable queues and persistent messages survived.
    pub fn start_app(&self) {
        assert!(rabbitmqctl(&self.name, &["start_app"]), "start_app");
        self.await_up();
    }

    /// Runs `rabbitmqctl ARGS` against this node; whether it succeeded.
    pub fn ctl(&self, args: &[&str]) -> bool {
        rabbitmqctl(&self.name, args)
    }

    /// The node's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        rabbitmqctl(&self.name, &["stop"]);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
