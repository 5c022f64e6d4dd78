//! One error style for everything a manifest can get wrong:
//! `wpod: error: FILE: [(document N) | (pod `NAME`)] FIELD.PATH: what is
//! wrong; what to do`, each OS error and each position said once. A table
//! with one row per error of the manifest and image layers (and the
//! volumes and ports a manifest names), each run through the real binary.

use crate::support::Workspace;

/// One way a manifest goes wrong.
struct Case {
    name: &'static str,
    /// The manifest (`@name@` expands as in every test); `None`: the file
    /// is not there.
    yaml: Option<&'static str>,
    /// Files to write in the workspace first.
    files: &'static [(&'static str, &'static [u8])],
    /// `validate` or `run`, and flags.
    args: &'static [&'static str],
    code: i32,
    /// What follows `FILE: ` on the error line.
    expected: &'static str,
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  restartPolicy: Never\n  containers:\n";

const CASES: &[Case] = &[
    Case {
        name: "missing manifest",
        yaml: None,
        files: &[],
        args: &["validate"],
        code: 125,
        expected: "cannot read the manifest: No such file or directory (os error 2)",
    },
    Case {
        name: "YAML syntax",
        yaml: Some("apiVersion: v1\nkind: Pod\nmetadata: {name: x\nspec: {}\n"),
        files: &[],
        args: &["validate"],
        code: 125,
        // The position once, before the message (the parser's own mark of
        // where the mapping began stays: it is another position).
        expected: "4:5: YAML syntax error: did not find expected ',' or '}', while parsing a flow mapping",
    },
    Case {
        name: "unknown field",
        yaml: Some(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: c, imagee: x.wasm}\n",
        ),
        files: &[],
        args: &["validate", "--offline"],
        code: 125,
        expected: "spec.containers[0].imagee: unknown field `imagee`",
    },
    Case {
        name: "bad value",
        yaml: Some(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  restartPolicy: Sometimes\n  containers:\n  - {name: c, image: x.wasm}\n",
        ),
        files: &[],
        args: &["validate", "--offline"],
        code: 125,
        expected: "spec.restartPolicy: unknown restart policy `Sometimes`; use Always, OnFailure or Never",
    },
    Case {
        name: "image not found",
        yaml: Some("  - {name: c, image: nosuch.wasm}\n"),
        files: &[],
        args: &["validate"],
        code: 127,
        expected: "(pod `p`) spec.containers[0].image: image `nosuch.wasm` not found; looked for",
    },
    Case {
        name: "image is a text file",
        yaml: Some("  - {name: c, image: text.wasm}\n"),
        files: &[("text.wasm", b"echo hi\n")],
        args: &["run"],
        code: 126,
        expected: "(pod `p`) spec.containers[0].image: image `text.wasm`: ",
    },
    Case {
        name: "image is not valid Wasm",
        yaml: Some("  - {name: c, image: cut.wasm}\n"),
        files: &[("cut.wasm", b"\0asm\x01\0\0\0\x01\x05")],
        args: &["run"],
        code: 126,
        expected: "(pod `p`) spec.containers[0].image: image `cut.wasm`: ",
    },
    Case {
        name: "image is not a command",
        yaml: Some("  - {name: c, image: lib.wasm}\n"),
        files: &[("lib.wasm", b"\0asm\x01\0\0\0")],
        args: &["run"],
        code: 126,
        expected: "(pod `p`) spec.containers[0].image: image `lib.wasm`: ",
    },
    Case {
        name: "program not in the image",
        yaml: Some("  - {name: c, image: empty, command: [nothere]}\n"),
        files: &[
            ("images/empty/latest/image.json", b"{\"config\": {}}"),
            ("images/empty/latest/rootfs/.keep", b""),
        ],
        args: &["validate"],
        code: 127,
        expected: "(pod `p`) spec.containers[0].image: image `empty`: program `nothere` not found in the image",
    },
    Case {
        name: "image.json key beside config",
        yaml: Some("  - {name: c, image: odd}\n"),
        files: &[
            ("images/odd/latest/image.json", b"{\"Cmd\": [\"sh\"]}"),
            ("images/odd/latest/rootfs/.keep", b""),
        ],
        args: &["validate"],
        code: 125,
        expected: "(pod `p`) spec.containers[0].image: image `odd`: ",
    },
    Case {
        name: "image.json wrong type",
        yaml: Some("  - {name: c, image: typo}\n"),
        files: &[
            (
                "images/typo/latest/image.json",
                b"{\"config\": {\"Cmd\": \"sh\"}}",
            ),
            ("images/typo/latest/rootfs/.keep", b""),
        ],
        args: &["validate"],
        code: 125,
        expected: "(pod `p`) spec.containers[0].image: image `typo`: ",
    },
    Case {
        name: "hostPath missing",
        yaml: Some(
            "  - {name: c, image: '@hello@', volumeMounts: [{name: v, mountPath: /v}]}\n  volumes: [{name: v, hostPath: {path: /nonexistent/wpod-e2e, type: Directory}}]\n",
        ),
        files: &[],
        args: &["validate"],
        code: 125,
        expected: "(pod `p`) spec.volumes[0].hostPath.path: hostPath /nonexistent/wpod-e2e does not exist; create it, or use type DirectoryOrCreate",
    },
    Case {
        name: "hostPath of the wrong kind",
        yaml: Some(
            "  - {name: c, image: '@hello@', volumeMounts: [{name: v, mountPath: /v}]}\n  volumes: [{name: v, hostPath: {path: /etc/hostname, type: Directory}}]\n",
        ),
        files: &[],
        args: &["run", "--isolation=none"],
        code: 125,
        expected: "(pod `p`) spec.volumes[0].hostPath.path: hostPath /etc/hostname is not a directory; point hostPath.path at a directory",
    },
    Case {
        name: "HTTP component without a port",
        yaml: Some("  - {name: c, image: '@http_proxy@'}\n"),
        files: &[],
        args: &["run", "--isolation=none"],
        code: 125,
        expected: "(pod `p`) spec.containers[0].ports: ",
    },
];

#[test]
fn every_error_of_a_manifest_has_one_style() {
    for case in CASES {
        let workspace = Workspace::new();
        for (path, bytes) in case.files {
            workspace.write(path, *bytes);
        }
        let manifest = match case.yaml {
            Some(yaml) if yaml.starts_with("  - ") => workspace.pod(&format!("{POD}{yaml}")),
            Some(yaml) => workspace.pod(yaml),
            None => workspace.path().join("absent.yaml"),
        };
        let mut args: Vec<&str> = case.args.to_vec();
        let file = manifest.to_str().unwrap();
        args.push(file);
        let run = workspace.run(&args);
        assert_eq!(run.code, case.code, "{}: {run:?}", case.name);
        let line = run
            .stderr
            .lines()
            .find(|l| l.starts_with("wpod: error: "))
            .unwrap_or_else(|| panic!("{}: no error line: {run:?}", case.name));
        let prefix = format!("wpod: error: {file}");
        assert!(
            line.starts_with(&prefix),
            "{}: the file does not come first: {line}",
            case.name
        );
        let rest = &line[prefix.len()..];
        let rest = rest
            .strip_prefix(": ")
            .unwrap_or(rest.trim_start_matches(':'));
        assert!(
            rest.starts_with(case.expected) || rest.contains(case.expected),
            "{}: expected {:?} in {line}",
            case.name,
            case.expected
        );
        // What to do, after what is wrong (a syntax error says where
        // instead).
        if case.name != "YAML syntax" && case.name != "missing manifest" {
            assert!(line.contains("; "), "{}: no hint: {line}", case.name);
        }
        assert!(
            run.stderr.matches("(os error").count() <= 1,
            "{}: an OS error twice: {}",
            case.name,
            run.stderr
        );
        assert!(
            !line.contains(" at line ") || case.name == "YAML syntax",
            "{}: a position twice: {line}",
            case.name
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}
