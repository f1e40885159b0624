//! A plugin that misbehaves in the way its `mode` setting names, to prove the host contains it.
//! Every mode but the one named behaves normally for messages with header `x-behave`.
//!
//! | mode | what `process` does |
//! |---|---|
//! | `loop` | spins forever |
//! | `memory` | allocates until memory runs out |
//! | `recursion` | recurses without end with large frames (overflows the shadow stack in linear memory) |
//! | `call-depth` | recurses without end, keeping frames on the WebAssembly stack |
//! | `trap` | panics |
//! | `sandbox` | tries files, environment, sockets; reports each result as a header |
//! | `huge-payload` | sets a payload of `size` bytes (default 100 MiB) |
//! | `many-headers` | adds `count` headers (default 1 000 000) |
//! | `fan-out` | returns `count` duplicates |
//! | `keep` | keeps `count` duplicates of every message across calls, and forwards it |
//! | `echo` | reads the payload and writes it back (a payload-reading plugin) |
//! | `touch` | reads one header and sets another (a header-only plugin) |
//! | `log` | logs `count` lines through the host and prints to stdout |
//! | `forge-log` | logs one line with a newline, a carriage return and an escape sequence in it |
//! | `reset-hops` | sets `x-bridge-hops` to `0` (the host's count must stand) |
//! | `partition` | sends the message to Kafka partition `count` of the mapping's topic |
//! | `reject` | rejects its configuration in `init` |

use std::hint::black_box;

use bridge_guest_sdk::{Config, KafkaTarget, Message, Transform, Verdict, log};

/// The configured misbehaviour.
pub struct Hostile {
    mode: String,
    size: usize,
    count: u32,
    kept: Vec<Message>,
}

impl Transform for Hostile {
    fn init(config: Config) -> Result<Self, String> {
        let mode = config.require("mode")?.to_string();
        if mode == "reject" {
            return Err("this plugin always rejects its configuration".to_string());
        }
        Ok(Hostile {
            mode,
            size: config.parse_or("size", 100 * 1024 * 1024)?,
            count: config.parse_or("count", 1_000_000)?,
            kept: Vec::new(),
        })
    }

    fn process(&mut self, msg: &mut Message) -> Verdict {
        if msg.header("x-behave").is_some() {
            msg.set_header("x-processed", "yes");
            return Verdict::Forward;
        }
        match self.mode.as_str() {
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1024 * 1024]);
                    black_box(&hoard);
                }
            }
            "recursion" => {
                black_box(recurse(black_box(1)));
                Verdict::Forward
            }
            "call-depth" => {
                black_box(depth(black_box(u64::MAX)));
                Verdict::Forward
            }
            "trap" => panic!("hostile plugin traps on purpose"),
            "sandbox" => {
                let file = std::fs::read("/etc/passwd")
                    .map(|_| "read".to_string())
                    .unwrap_or_else(|e| format!("denied: {e}"));
                let dir = std::fs::read_dir(".")
                    .map(|_| "listed".to_string())
                    .unwrap_or_else(|e| format!("denied: {e}"));
                let env = std::env::vars().count().to_string();
                let path = std::env::var("PATH").unwrap_or_else(|_| "unset".to_string());
                let tcp = std::net::TcpStream::connect("127.0.0.1:5672")
                    .map(|_| "connected".to_string())
                    .unwrap_or_else(|e| format!("denied: {e}"));
                let dns = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80))
                    .map(|_| "resolved".to_string())
                    .unwrap_or_else(|e| format!("denied: {e}"));
                msg.set_header("x-file", file);
                msg.set_header("x-dir", dir);
                msg.set_header("x-env-count", env);
                msg.set_header("x-env-path", path);
                msg.set_header("x-tcp", tcp);
                msg.set_header("x-dns", dns);
                Verdict::Forward
            }
            "huge-payload" => {
                let payload = vec![7u8; self.size];
                msg.set_payload(Some(&payload));
                Verdict::Forward
            }
            "many-headers" => {
                for i in 0..self.count {
                    msg.add_header("h", i.to_le_bytes());
                }
                Verdict::Forward
            }
            "fan-out" => Verdict::FanOut((0..self.count).map(|_| msg.duplicate()).collect()),
            "keep" => {
                for _ in 0..self.count {
                    self.kept.push(msg.duplicate());
                }
                Verdict::Forward
            }
            "echo" => {
                let payload = msg.payload();
                msg.set_payload(payload.as_deref());
                Verdict::Forward
            }
            "touch" => {
                let region = msg.header("region");
                msg.set_header("x-seen", if region.is_some() { "1" } else { "0" });
                Verdict::Forward
            }
            "log" => {
                for i in 0..self.count {
                    log::info(&format!("host log line {i}"));
                    println!("stdout line {i}");
                }
                Verdict::Forward
            }
            "forge-log" => {
                log::warn(
                    "innocent\n2026-01-01T00:00:00Z ERROR bridge_host: forged line\r\u{1b}[2K",
                );
                Verdict::Forward
            }
            "reset-hops" => {
                msg.set_header("x-bridge-hops", "0");
                Verdict::Forward
            }
            "partition" => {
                msg.set_kafka_target(&KafkaTarget {
                    topic: None,
                    partition: i32::try_from(self.count).ok(),
                });
                Verdict::Forward
            }
            other => Verdict::DeadLetter(format!("unknown mode `{other}`")),
        }
    }
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    let pad = black_box([n; 64]);
    if pad[0] == u64::MAX {
        return 0;
    }
    recurse(black_box(pad[7] + 1)) + pad[3]
}

#[inline(never)]
fn depth(n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        depth(black_box(n - 1)).wrapping_add(1)
    }
}

bridge_guest_sdk::export_transform!(Hostile);
