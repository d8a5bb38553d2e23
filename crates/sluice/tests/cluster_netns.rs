//! Issue 16's cluster on separate machines: three sluice nodes and a `redis-server`, each in
//! its own network namespace (`ip netns` + a veth pair onto one bridge, one address per
//! machine), so that nodes reach each other only through the addresses they advertise, as on a
//! real network. ffmpeg publishes to origin A; players on edges B and C (in the root
//! namespace, through the bridge) decode it; each edge holds one upstream connection whatever
//! its number of players; A is killed and the publisher comes back on B, and the players on C
//! resume; Redis is stopped and the running streams keep flowing.
//!
//! Needs root (network namespaces): elsewhere, or where the kernel refuses namespaces (an
//! unprivileged container), it is skipped with a message saying why.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The namespaces, the bridge and the veth pairs of one test; all removed on drop.
struct Net {
    /// Unique per test run: names and the subnet derive from it.
    tag: u32,
    machines: usize,
}

impl Net {
    /// `machines` namespaces on one bridge, or why they cannot be made here.
    fn create(machines: usize) -> Result<Net, String> {
        let uid = run_timeout(Command::new("id").arg("-u"), Duration::from_secs(5));
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("network namespaces need root".into());
        }
        let tag = std::process::id() % 10_000;
        let net = Net { tag, machines };
        net.ip(&["link", "add", &net.bridge(), "type", "bridge"])?;
        net.ip(&["addr", "add", &format!("{}/24", net.host_addr()), "dev", &net.bridge()])?;
        net.ip(&["link", "set", &net.bridge(), "up"])?;
        for i in 0..machines {
            let (ns, host_end, ns_end) = (net.ns(i), net.veth(i, 'h'), net.veth(i, 'n'));
            net.ip(&["netns", "add", &ns])?;
            net.ip(&["link", "add", &host_end, "type", "veth", "peer", "name", &ns_end])?;
            net.ip(&["link", "set", &host_end, "master", &net.bridge(), "up"])?;
            net.ip(&["link", "set", &ns_end, "netns", &ns])?;
            net.ip(&["-n", &ns, "addr", "add", &format!("{}/24", net.addr(i)), "dev", &ns_end])?;
            net.ip(&["-n", &ns, "link", "set", &ns_end, "up"])?;
            net.ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn ip(&self, args: &[&str]) -> Result<(), String> {
        let out = run_timeout(Command::new("ip").args(args), Duration::from_secs(10));
        match out.status.success() {
            true => Ok(()),
            false => Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())),
        }
    }

    fn bridge(&self) -> String {
        format!("slbr{}", self.tag)
    }

    fn ns(&self, i: usize) -> String {
        format!("sluice-test-{}-{i}", self.tag)
    }

    /// Interface names are at most 15 bytes.
    fn veth(&self, i: usize, end: char) -> String {
        format!("sl{}{end}{i}", self.tag)
    }

    fn subnet(&self) -> String {
        format!("10.213.{}", self.tag % 250)
    }

    /// The root namespace's address on the bridge (where the test's clients are).
    fn host_addr(&self) -> String {
        format!("{}.1", self.subnet())
    }

    /// Machine `i`'s address.
    fn addr(&self, i: usize) -> String {
        format!("{}.{}", self.subnet(), 10 + i)
    }

    /// `program` to run inside machine `i`.
    fn command(&self, i: usize, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(i), program]);
        cmd
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.machines {
            // The test's processes are killed by their owners' Drop before this runs.
            let _ = self.ip(&["link", "del", &self.veth(i, 'h')]);
            let _ = self.ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = self.ip(&["link", "del", &self.bridge()]);
    }
}

/// A process in a machine, killed when dropped. `ip netns exec` execs the program, so the
/// child is the program itself.
struct InNs {
    child: Child,
    log: std::path::PathBuf,
}

impl InNs {
    fn spawn(mut cmd: Command, log: &Path) -> InNs {
        let file = std::fs::File::create(log).unwrap();
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(file).spawn().expect("ip netns exec");
        InNs { child, log: log.to_owned() }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for InNs {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A sluice node on machine `i`: RTMP on 1935 and the API on 8080 at its address.
struct Node {
    proc: InNs,
    addr: String,
}

impl Node {
    fn start(net: &Net, i: usize, redis: &str, dir: &TempDir) -> Node {
        let addr = net.addr(i);
        let conf = format!(
            "rtmp {{ http_listen {addr}:8080; http_stats_public on; cluster_redis redis://{redis}:6379/0; cluster_ttl 3s;
  server {{ listen {addr}:1935; cluster_address rtmp://{addr}:1935;
    application live {{ live on; }} }} }}"
        );
        let path = dir.path(&format!("node{i}.conf"));
        std::fs::write(&path, conf).unwrap();
        let mut cmd = net.command(i, sluice_bin());
        cmd.arg("-c").arg(&path).env("RUST_LOG", "debug");
        let node = Node { proc: InNs::spawn(cmd, &dir.path(&format!("node{i}.log"))), addr };
        let deadline = Instant::now() + Duration::from_secs(15);
        while node.api("/api/v1/server").is_none() {
            assert!(Instant::now() < deadline, "node {i} did not answer its API; log:\n{}", node.proc.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        node
    }

    fn rtmp(&self, name: &str) -> String {
        format!("rtmp://{}:1935/live/{name}", self.addr)
    }

    fn api(&self, path: &str) -> Option<Value> {
        let (status, body) = curl(&format!("http://{}:8080{path}", self.addr));
        (status == 200).then(|| serde_json::from_str(&body).ok()).flatten()
    }

    /// The node's upstream (pull) legs of `live/NAME`, from its API.
    fn pull_legs(&self, name: &str) -> usize {
        let Some(stream) = self.api(&format!("/api/v1/streams/live/{name}")) else { return 0 };
        let relays = stream["relays"].as_array().cloned().unwrap_or_default();
        relays.iter().filter(|r| r["direction"] == "pull").count()
    }

    /// Whether `live/NAME` is published on this node by a local publisher.
    fn publishes(&self, name: &str) -> bool {
        self.api(&format!("/api/v1/streams/live/{name}")).is_some_and(|s| s["origin"] == "local")
    }
}

fn frames(log: &Path) -> usize {
    showinfo_sizes(log).values().sum()
}

/// Waits until the player logging to `log` decodes `more` frames beyond what it had.
fn wait_more_frames(what: &str, log: &Path, more: usize, limit: Duration) {
    let from = frames(log);
    wait_for(what, limit, || (frames(log) >= from + more).then_some(()));
}

#[test]
fn origins_and_edges_in_network_namespaces_with_redis() {
    let net = match Net::create(4) {
        Ok(net) => net,
        Err(why) => {
            eprintln!("skipped: the network-namespace cluster test cannot run here: {why}");
            return;
        }
    };
    let dir = TempDir::new("cluster-netns");
    let redis_addr = net.addr(3);
    let mut redis_cmd = net.command(3, "redis-server");
    redis_cmd.args([
        "--bind",
        &redis_addr,
        "--port",
        "6379",
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    let mut redis = InNs::spawn(redis_cmd, &dir.path("redis.log"));
    wait_for("redis-server to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect((redis_addr.as_str(), 6379)).ok()
    });

    let mut a = Node::start(&net, 0, &redis_addr, &dir);
    let b = Node::start(&net, 1, &redis_addr, &dir);
    let c = Node::start(&net, 2, &redis_addr, &dir);

    // ffmpeg (in the root namespace, another machine) publishes to origin A.
    let _first = ffmpeg_publish_pattern(&a.rtmp("cam"), "320x240", 600, 25);
    wait_for("A to publish cam", Duration::from_secs(20), || a.publishes("cam").then_some(()));
    let cluster = a.api("/api/v1/cluster").expect("A's /api/v1/cluster");
    assert_eq!(cluster["up"], true, "A's directory: {cluster}");
    assert_eq!(cluster["registered"], 1, "A registered its stream: {cluster}");

    // Two players on each edge.
    let logs: Vec<_> = (0..4).map(|i| dir.path(&format!("player{i}.log"))).collect();
    let _players: Vec<Proc> =
        logs.iter().enumerate().map(|(i, log)| showinfo_player(&[&b, &c][i / 2].rtmp("cam"), log)).collect();
    for log in &logs {
        wait_more_frames("every edge player to decode", log, 25, Duration::from_secs(30));
    }
    for (edge, name) in [(&b, "B"), (&c, "C")] {
        assert_eq!(edge.pull_legs("cam"), 1, "edge {name} holds one upstream for its two players");
        let stream = edge.api("/api/v1/streams/live/cam").unwrap();
        let origin = stream["origin"].as_str().unwrap_or_default().to_owned();
        assert!(origin.contains(&a.addr), "edge {name}'s stream comes from A ({}): {origin}", a.addr);
        let (_, metrics) = curl(&format!("http://{}:8080/metrics", edge.addr));
        assert!(metrics.lines().any(|l| l == "sluice_pulled_streams{app=\"live\"} 1"), "edge {name}: {metrics}");
    }
    let upstreams = a.api("/api/v1/clients").unwrap()["clients"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["role"] == "player" && c["name"] == "cam")
        .count();
    assert_eq!(upstreams, 2, "A serves one upstream per edge, not one per player");

    // A dies with its publisher's connection; the publisher comes back on B (OBS and ffmpeg
    // scripts retry): B refuses it until A's registration expires, then takes it.
    a.proc.kill();
    let started = Instant::now();
    let _second = wait_for("the publisher to be accepted by B", Duration::from_secs(30), || {
        let publisher = ffmpeg_publish_pattern(&b.rtmp("cam"), "320x240", 600, 25);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if b.publishes("cam") {
                return Some(publisher);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });
    eprintln!("republished on B {:?} after A died", started.elapsed());
    // C's players, kept through the edge's failover rounds, play again from B; B's own
    // players, whose pull had lost A, watch the local publisher.
    for log in &logs {
        wait_more_frames("every player to resume from B", log, 50, Duration::from_secs(40));
    }
    let stream = c.api("/api/v1/streams/live/cam").unwrap();
    assert!(stream["origin"].as_str().unwrap_or_default().contains(&b.addr), "C pulls from B now: {stream}");

    // Redis stops: what runs keeps running; the directory reports itself down.
    redis.kill();
    for log in &logs[2..] {
        wait_more_frames("C's players to keep playing without Redis", log, 75, Duration::from_secs(20));
    }
    let health = wait_for("B to see the directory down", Duration::from_secs(20), || {
        b.api("/api/v1/cluster").filter(|h| h["up"] == false)
    });
    assert!(!health["last_error"].is_null(), "the directory's error is shown: {health}");
}
