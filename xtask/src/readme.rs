//! The sample output of the READMEs: the fenced blocks that show a command
//! (`$ COMMAND`) and the lines it prints, which the tests run and compare
//! (tests/e2e/docs.rs, examples/embed/tests/readme.rs).

use std::path::{Path, PathBuf};

/// One block of a README: a command and what the README says it prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The README, relative to the repository's root (`examples/adapter/README.md`).
    pub readme: String,
    /// The line of the block's `$ ` line (1-based), for messages.
    pub line: usize,
    /// The command, without its `$ `.
    pub command: String,
    /// The lines after the command, each ending in `\n`.
    pub output: String,
}

/// The READMEs whose samples are checked, relative to `root`: the
/// repository's own and each example's.
pub fn readmes(root: &Path) -> crate::Result<Vec<String>> {
    let mut readmes = vec!["README.md".to_owned()];
    let examples = root.join("examples");
    let entries =
        std::fs::read_dir(&examples).map_err(|e| format!("reading {}: {e}", examples.display()))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("README.md").is_file())
        .map(|e| format!("examples/{}/README.md", e.file_name().to_string_lossy()))
        .collect();
    names.sort();
    readmes.extend(names);
    Ok(readmes)
}

/// The samples of `readme` (relative to `root`): every fenced block with no
/// language, or `console`, whose first line starts with `$ `. A block with a
/// second `$ ` line is an error, so that no command of a sample goes unchecked.
pub fn samples(root: &Path, readme: &str) -> crate::Result<Vec<Sample>> {
    let path: PathBuf = root.join(readme);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut samples = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((_, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let block: Vec<(usize, &str)> = lines
            .by_ref()
            .take_while(|(_, l)| l.trim_end() != "```")
            .collect();
        if !matches!(info.trim(), "" | "console") {
            continue;
        }
        let Some(((at, first), rest)) = block.split_first() else {
            continue;
        };
        let Some(command) = first.strip_prefix("$ ") else {
            continue;
        };
        if let Some((second, _)) = rest.iter().find(|(_, l)| l.starts_with("$ ")) {
            return Err(format!(
                "{readme}:{}: a second command in one sample (one `$ ` line a block)",
                second + 1
            ));
        }
        samples.push(Sample {
            readme: readme.to_owned(),
            line: at + 1,
            command: command.trim().to_owned(),
            output: rest.iter().map(|(_, l)| format!("{l}\n")).collect(),
        });
    }
    Ok(samples)
}

/// The one sample of `readme` whose command is `command`.
///
/// # Panics
///
/// When there is none, or several: a test that checks a sample must find it.
pub fn sample(root: &Path, readme: &str, command: &str) -> Sample {
    let samples = samples(root, readme).unwrap_or_else(|e| panic!("{e}"));
    let mut found = samples.into_iter().filter(|s| s.command == command);
    let sample = found
        .next()
        .unwrap_or_else(|| panic!("{readme} has no sample of `{command}`"));
    assert!(
        found.next().is_none(),
        "{readme} has several samples of `{command}`"
    );
    sample
}

/// What both sides of a comparison have redacted: times (`date`, log
/// lines) and the repository's root.
fn redactions() -> snapbox::Redactions {
    let mut redactions = snapbox::Redactions::new();
    redactions
        .insert(
            "[TIME]",
            regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z").unwrap(),
        )
        .unwrap();
    redactions
        .insert("[ROOT]", crate::workspace_root().display().to_string())
        .unwrap();
    redactions
}

/// Whether `actual` is what `sample` shows; if not, the message and diff.
pub fn compare(sample: &Sample, actual: &str) -> Result<(), String> {
    let redactions = redactions();
    let expected = redactions.redact(&sample.output);
    let actual = redactions.redact(actual);
    let name = format!("`{}`", sample.command);
    snapbox::Assert::new()
        .try_eq(
            Some(&name),
            snapbox::Data::text(actual),
            snapbox::Data::text(expected),
        )
        .map_err(|error| {
            format!(
                "{}:{}: the sample output of `{}` differs from what it prints \
                 (fix the README if the program is right)\n{error}",
                sample.readme, sample.line, sample.command
            )
        })
}

/// Panics with a diff unless `actual` is what `sample` shows.
#[track_caller]
pub fn assert_prints(sample: &Sample, actual: &str) {
    if let Err(message) = compare(sample, actual) {
        panic!("{message}");
    }
}

/// [`assert_prints`] for output whose lines come from tasks that run side
/// by side: `stream` names the task each line comes from, and each task's
/// lines must be the sample's, in the sample's order; how the tasks'
/// lines interleave is not checked. Every line is in one stream, so the
/// sample holds the same lines as the output.
#[track_caller]
pub fn assert_prints_per_stream(sample: &Sample, actual: &str, stream: impl Fn(&str) -> String) {
    let mut streams: Vec<String> = sample
        .output
        .lines()
        .chain(actual.lines())
        .map(&stream)
        .collect();
    streams.sort();
    streams.dedup();
    for name in streams {
        let only = |text: &str| -> String {
            text.lines()
                .filter(|l| stream(l) == name)
                .map(|l| format!("{l}\n"))
                .collect()
        };
        let sample = Sample {
            output: only(&sample.output),
            command: format!("{} (the lines of {name})", sample.command),
            ..sample.clone()
        };
        assert_prints(&sample, &only(actual));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` as a README, in a folder of the test's own (`name`).
    fn parse(name: &str, text: &str) -> crate::Result<Vec<Sample>> {
        let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("README.md"), text).unwrap();
        let samples = samples(&dir, "README.md");
        std::fs::remove_dir_all(&dir).unwrap();
        samples
    }

    #[test]
    fn a_block_that_starts_with_a_command_is_a_sample() {
        let samples = parse(
            "sample",
            "text\n\n```\n$ wpod run pod.yaml\n[a] one\n[b] two\n```\n\n```sh\n$ not a sample\n```\n\
             ```\nwpod run POD.yaml [-o json]\n```\n```console\n$ curl x\nbody\n```\n",
        )
        .unwrap();
        assert_eq!(
            samples,
            [
                Sample {
                    readme: "README.md".into(),
                    line: 4,
                    command: "wpod run pod.yaml".into(),
                    output: "[a] one\n[b] two\n".into(),
                },
                Sample {
                    readme: "README.md".into(),
                    line: 16,
                    command: "curl x".into(),
                    output: "body\n".into(),
                },
            ]
        );
    }

    #[test]
    fn a_second_command_in_a_block_is_refused() {
        let error = parse("second", "```\n$ one\nout\n$ two\n```\n").unwrap_err();
        assert_eq!(
            error,
            "README.md:4: a second command in one sample (one `$ ` line a block)"
        );
    }
}
