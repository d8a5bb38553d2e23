//! The short hostile-client run (`sluice-bench hostile --short`, ~25 s) against the `sluice`
//! binary next to the test's `sluice-bench`: every named check must pass. See README.md,
//! "Hostile clients", for what it attacks and checks; `scripts/hostile` is the long form.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The run bounds its own time; this only catches a hang.
const LIMIT: Duration = Duration::from_secs(240);

#[test]
fn hostile_clients_leave_sluice_serving_within_its_bounds() {
    let bench = Path::new(env!("CARGO_BIN_EXE_sluice-bench"));
    let sluice = bench.with_file_name("sluice");
    assert!(
        sluice.is_file(),
        "no sluice binary at {}: build it first with `cargo build -p sluice` (`cargo test --workspace` \
         builds it before any test runs; `cargo test -p sluice-bench` alone does not)",
        sluice.display()
    );
    let dir = std::env::temp_dir();
    let (stdout, stderr) = (
        dir.join(format!("sluice-hostile-test-{}.out", std::process::id())),
        dir.join(format!("sluice-hostile-test-{}.err", std::process::id())),
    );
    let mut child = Command::new(bench)
        .args(["hostile", "--short", "--sluice"])
        .arg(&sluice)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("start sluice-bench hostile");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = std::fs::read_to_string(&stdout).unwrap_or_default();
    let err = std::fs::read_to_string(&stderr).unwrap_or_default();
    let _ = (std::fs::remove_file(&stdout), std::fs::remove_file(&stderr));
    let status =
        status.unwrap_or_else(|| panic!("sluice-bench hostile did not finish within {LIMIT:?}:\n{out}\n{err}"));
    assert!(status.success(), "hostile checks failed ({status}):\n{out}\nlog of the run:\n{err}");
    assert!(out.contains(" checks, 0 failed"), "{out}");
}
