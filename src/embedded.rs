//! The built-in text assets, compiled into the library by `build.rs`: the algorithms' config
//! files (`configs/*.toml`), the bench profiles (`configs/profiles/*.toml`) and the dataset
//! registry's cards (`datasets/**.toml`). What the source tree holds is what a binary or wheel
//! moved anywhere knows.

mod generated {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

pub use generated::{CARDS, CONFIGS};

/// A config file by name without `.toml`: `rtb-cpu`, `profiles/cpu`.
pub fn config(name: &str) -> Option<&'static str> {
    lookup(CONFIGS, name)
}

/// A bench profile by name: `quick`, `cpu`, `paper`.
pub fn profile(name: &str) -> Option<&'static str> {
    config(&format!("profiles/{name}"))
}

/// The built-in profiles' names, sorted.
pub fn profile_names() -> Vec<&'static str> {
    CONFIGS
        .iter()
        .filter_map(|(n, _)| n.strip_prefix("profiles/"))
        .collect()
}

/// A dataset card by registry name: `locomotion-v5/hopper-medium`.
pub fn card(name: &str) -> Option<&'static str> {
    lookup(CARDS, name)
}

fn lookup(table: &[(&str, &'static str)], name: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The embedded copies are the source tree's files, every one of them.
    #[test]
    fn the_assets_are_the_source_files() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(profile_names(), vec!["cpu", "paper", "quick"]);
        for (dir, table) in [("configs", CONFIGS), ("datasets", CARDS)] {
            assert!(!table.is_empty());
            for (name, text) in table {
                let file = root.join(dir).join(format!("{name}.toml"));
                assert_eq!(std::fs::read_to_string(&file).unwrap(), *text, "{name}");
            }
        }
        assert!(card("locomotion-v5/hopper-medium").is_some());
        assert!(config("rtb-cpu").is_some());
        assert_eq!(profile("nope"), None);
    }
}
