//! Fuzz target: a manifest's text through `PodSpec::from_yaml_str`, bounds
//! first (size, nesting depth), then the YAML parser, the conversion and the
//! validation. Properties: no panic; every pod read validates; every error
//! renders. Time is bounded by afl-fuzz (`fuzz/run` sets its timeout), which
//! records a slower input as a hang.

#[path = "../../../runtime/src/manifest/mod.rs"]
#[allow(dead_code, unused_imports)]
mod manifest;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        match manifest::PodSpec::from_yaml_str(&text, "fuzz.yaml") {
            Ok(pods) => {
                for pod in pods {
                    assert_eq!(pod.validate(), Ok(()), "a pod read from YAML must validate");
                }
            }
            Err(error) => {
                let message = error.to_string();
                assert!(message.starts_with("fuzz.yaml"), "{message}");
            }
        }
    });
}
