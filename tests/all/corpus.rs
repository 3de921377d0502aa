//! A corpus of broken components: hundreds of byte-mutated copies of the `hello` example, each given to
//! `edgefn inspect` and deployed to a running host (the deploy `edgefn up` does at start, through the admin API).
//! Every one is served or refused with its path (or name) and a reason; none panics the host or hangs it.

use crate::support::{Host, component, get, send};
use base64::Engine as _;
use serde_json::json;
use std::time::Instant;

/// How many mutants: hundreds, within CI's time.
const MUTANTS: usize = 300;

/// A small deterministic generator (xorshift64*): the same corpus on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `original` with 1 to 4 bytes changed at random places: some land in code (it no longer validates), some in
/// data or custom sections (it still does, and must run or fail cleanly).
fn mutant(original: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len());
        bytes[at] = (rng.next() & 0xff) as u8;
    }
    bytes
}

#[test]
fn mutated_components_are_served_or_refused_with_a_reason_and_nothing_panics_or_hangs() {
    let original = std::fs::read(component("hello")).expect("hello.wasm");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("edgefn.toml");
    // A mutant whose init loops must not hold the test for a minute.
    std::fs::write(&config, "[limits]\ninit_timeout_ms = 3000\ntimeout_ms = 2000\n").expect("config");
    let host = Host::start(&["--config", config.to_str().expect("utf-8")]);
    let auth = format!("Bearer {}", host.token);
    let mut rng = Rng(0x5eed_ed9e_f00d_cafe);
    let (mut served, mut refused_by_inspect, mut refused_by_deploy) = (0, 0, 0);
    let started = Instant::now();
    for n in 0..MUTANTS {
        let bytes = mutant(&original, &mut rng);
        let path = dir.path().join(format!("mutant{n:03}.wasm"));
        std::fs::write(&path, &bytes).expect("write mutant");

        let inspected = std::process::Command::new(env!("CARGO_BIN_EXE_edgefn"))
            .arg("inspect")
            .arg(&path)
            .output()
            .expect("run edgefn inspect");
        let stderr = String::from_utf8_lossy(&inspected.stderr);
        assert!(!stderr.contains("panicked"), "inspect panicked on {}: {stderr}", path.display());
        if !inspected.status.success() {
            refused_by_inspect += 1;
            assert!(
                stderr.contains(&format!("cannot inspect {}: ", path.display())),
                "a refusal without the path and a reason: {stderr}"
            );
        }

        let name = format!("mutant{n:03}");
        let body = json!({ "wasm_base64": base64::engine::general_purpose::STANDARD.encode(&bytes) }).to_string();
        let reply = send(
            "POST",
            &format!("{}/v1/components/{name}/versions", host.admin),
            &[("authorization", &auth)],
            body.as_bytes(),
        );
        match reply.status {
            200 | 201 => {
                served += 1;
                // It is live: whatever it answers, it answers, and the host stays up; then make room for the next.
                let answer = get(&host.url("/hello/corpus"));
                assert!(answer.status < 600, "{}", answer.body);
                let gone =
                    send("DELETE", &format!("{}/v1/components/{name}", host.admin), &[("authorization", &auth)], b"");
                assert_eq!(gone.status, 200, "{}", gone.body);
            }
            400 | 409 | 422 => {
                refused_by_deploy += 1;
                let error = reply.json()["error"].as_str().unwrap_or_default().to_owned();
                assert!(!error.is_empty(), "a refusal without a reason: {}", reply.body);
                // What inspect refuses, the deploy refuses too, for the same reason.
                if !inspected.status.success() {
                    assert_eq!(reply.status, 422, "{}", reply.body);
                }
            }
            other => panic!("deploying {name} answered {other}: {}\nhost log:\n{}", reply.body, host.logs()),
        }
        assert_eq!(get(&host.url("/healthz")).status, 200, "the host stopped answering after {name}");
    }
    assert_eq!(served + refused_by_deploy, MUTANTS);
    assert!(refused_by_inspect > 0 && refused_by_deploy > 0, "the corpus broke nothing: it tests nothing");
    assert!(!host.logs().contains("panicked"), "{}", host.logs());
    println!(
        "{MUTANTS} mutants in {:?}: {served} served, {refused_by_deploy} refused at deploy ({refused_by_inspect} already by \
         inspect)",
        started.elapsed()
    );
}
