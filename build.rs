//! Records the source revision in the binary (`OFFRL_COMMIT`, e.g. `6f9927c` or `6f9927c-dirty`),
//! so that every benchmark result names the code that produced it. `unknown` outside a git
//! checkout (a crates.io build, say).

use std::process::Command;

fn main() {
    for path in ["src", "configs", "build.rs", ".git/HEAD", ".git/index"] {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=OFFRL_COMMIT={commit}");
}
