//! Fuzz target: the texts of quantities and egress rules, parsed directly
//! (the manifest target reaches them only through YAML). Properties: no
//! panic; a quantity's canonical form is canonical (its own canonical form)
//! and means the same bytes and millicores.

#[path = "../../../runtime/src/manifest/mod.rs"]
#[allow(dead_code, unused_imports)]
mod manifest;

use manifest::quantity;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        if let Ok(canonical) = quantity::canonical(&text) {
            assert_eq!(
                quantity::canonical(&canonical).as_ref(),
                Ok(&canonical),
                "{text:?}"
            );
            assert_eq!(
                quantity::parse_bytes(&canonical),
                quantity::parse_bytes(&text),
                "{text:?}"
            );
            assert_eq!(
                quantity::parse_millis(&canonical),
                quantity::parse_millis(&text),
                "{text:?}"
            );
        }
        if let Ok(policy) = manifest::EgressPolicy::parse(&text) {
            for rule in policy.allow {
                assert!(rule.prefix_len <= if rule.network.is_ipv4() { 32 } else { 128 });
            }
        }
    });
}
