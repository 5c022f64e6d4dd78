"""wpod adapter for the WebAssembly wasi-testsuite runner.

The runner (test-runner/wasi_test_runner.py of WebAssembly/wasi-testsuite)
loads this file as a module and asks `compute_argv` for the command line of
each test; it then reads that process's stdout and expects the test's exit
code as the process's exit status. wpod runs pods, not single programs, so
the command line is this very file run as a script (`run-test SPEC`): it
writes a one-container pod for the test, runs `wpod run` on it and exits
with the container's exit code, the guest's stdout passed through.

A test's `root` directory (what `wasmtime run --dir ROOT::/` would give) is
a hostPath volume mounted at `/`.

Environment:
  WPOD                 the wpod command (default `wpod`), e.g. target/debug/wpod
  WPOD_ISOLATION       --isolation for wpod run: none (default), auto, required
  WPOD_ADAPTER_OUTPUT  text (default): the guest's stdout is wpod's stdout,
                       the exit code is read from wpod's report line on stderr
                       (or wpod's exit status when it printed none);
                       json: `-o json`, the exit code is
                       containerStatuses[0].state.terminated.exitCode, and the
                       guest's output, which wpod then prints to stderr with
                       stdout and stderr merged, is passed on as stdout
  WPOD_ROOT_MOUNT      where the test's root directory is mounted (default /;
                       another path is only useful to diagnose a wpod that
                       refuses a volume at /)
  WPOD_TEST_TIMEOUT    seconds per test (default 30; the runner's is 5)
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

WPOD = shlex.split(os.getenv("WPOD", "wpod"))


def get_name() -> str:
    return "wpod"


def get_version() -> str:
    result = subprocess.run(WPOD[0:1] + ["--version"], encoding="UTF-8",
                            capture_output=True, check=True)
    # `wpod 0.1.0`
    return result.stdout.split()[-1]


def get_wasi_versions() -> List[str]:
    # wpod runs WASI 0.2 components too, but the suite's components are
    # WASI 0.3 (wasmtime's -Sp3), which wpod does not provide.
    return ["wasm32-wasip1"]


def get_wasi_worlds() -> List[str]:
    return ["wasi:cli/command"]


def get_timeout_seconds() -> float:
    # Each test is a pod: a first run compiles the module (then cached).
    return float(os.getenv("WPOD_TEST_TIMEOUT", "30"))


def compute_argv(test_path: str,
                 args_env_root: Tuple[List[str], Dict[str, str], Optional[str]],
                 proposals: List[str],
                 wasi_world: str,
                 wasi_version: str) -> List[str]:
    del proposals, wasi_world, wasi_version  # wasip1 commands only
    args, env, root = args_env_root
    spec = {
        "wasm": os.path.abspath(test_path),
        "args": list(args),
        "env": dict(env),
        "root": os.path.abspath(root) if root else None,
    }
    return [sys.executable, os.path.abspath(__file__), "run-test",
            json.dumps(spec)]


def dns1123_label(text: str, default: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63]
    return label.strip("-") or default


def escape(text: str) -> str:
    """Kubernetes expands `$(VAR)` in args and env values; `$$` is a `$`."""
    return text.replace("$", "$$")


def pod_manifest(spec: Dict[str, Any]) -> Dict[str, Any]:
    """The one-container pod that runs a test."""
    name = os.path.splitext(os.path.basename(spec["wasm"]))[0]
    container: Dict[str, Any] = {
        "name": dns1123_label(name, "test"),
        "image": spec["wasm"],
    }
    if spec["args"]:
        container["args"] = [escape(arg) for arg in spec["args"]]
    if spec["env"]:
        container["env"] = [{"name": k, "value": escape(v)}
                            for k, v in spec["env"].items()]
    pod_spec: Dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
    }
    if spec["root"]:
        container["volumeMounts"] = [{
            "name": "root",
            "mountPath": os.getenv("WPOD_ROOT_MOUNT", "/"),
        }]
        pod_spec["volumes"] = [{
            "name": "root",
            "hostPath": {"path": spec["root"], "type": "Directory"},
        }]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "wasi-" + dns1123_label(name, "test")[:57]},
        "spec": pod_spec,
    }


# `wpod: pod `p` Failed: container `c` exited with code 33 (Error)`
REPORT = re.compile(rb"^wpod: pod `[^`]*` \w+: container `[^`]*` "
                    rb"exited with code (-?\d+) ", re.MULTILINE)


def die_with_parent() -> None:
    """The runner kills this script on a timeout: wpod must not outlive it."""
    if sys.platform.startswith("linux"):
        import ctypes  # pylint: disable=import-outside-toplevel
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig,
                                                signal.SIGKILL)


def status_code(code: int) -> int:
    """An exit code as a process exit status (what a shell would see)."""
    return code & 0xFF


def run_test(spec: Dict[str, Any]) -> int:
    isolation = os.getenv("WPOD_ISOLATION", "none")
    output = os.getenv("WPOD_ADAPTER_OUTPUT", "text")
    with tempfile.TemporaryDirectory(prefix="wpod-wasi-") as tmp:
        manifest = os.path.join(tmp, "pod.yaml")
        with open(manifest, "w", encoding="utf-8") as file:
            # JSON is YAML.
            json.dump(pod_manifest(spec), file, ensure_ascii=False, indent=1)
        argv = WPOD + ["run", manifest, f"--isolation={isolation}",
                       "--no-tags"]
        if output == "json":
            return run_json(argv)
        return run_text(argv)


def run_text(argv: List[str]) -> int:
    # stdout is ours (the runner's pipe), untouched; stderr is read for
    # wpod's report line, then passed on.
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, preexec_fn=die_with_parent,
                          check=False)
    sys.stderr.buffer.write(proc.stderr)
    sys.stderr.flush()
    reports = REPORT.findall(proc.stderr)
    if reports:
        return status_code(int(reports[-1]))
    return proc.returncode


def run_json(argv: List[str]) -> int:
    proc = subprocess.run(argv + ["-o", "json"], stdin=subprocess.DEVNULL,
                          capture_output=True, preexec_fn=die_with_parent,
                          check=False)
    # The containers' lines (stdout and stderr, merged) and wpod's own
    # messages are all on stderr: wpod's go to our stderr, the rest is the
    # guest's output.
    guest = []
    for line in proc.stderr.splitlines(keepends=True):
        if line.startswith(b"wpod: "):
            sys.stderr.buffer.write(line)
        else:
            guest.append(line)
    sys.stdout.buffer.write(b"".join(guest))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        status = json.loads(proc.stdout)
        state = status["containerStatuses"][0]["state"]
        return status_code(int(state["terminated"]["exitCode"]))
    except (ValueError, KeyError, IndexError, TypeError):
        sys.stderr.write(f"wpod_adapter: no container status from wpod "
                         f"(exit status {proc.returncode})\n")
        return proc.returncode or 1


def main(argv: List[str]) -> int:
    if argv == ["--version"]:
        # The runner runs the adapter as a script once, to check that it is
        # a module-style adapter: it must print nothing.
        return 0
    if len(argv) == 2 and argv[0] == "run-test":
        return run_test(json.loads(argv[1]))
    if len(argv) == 2 and argv[0] == "manifest":
        json.dump(pod_manifest(json.loads(argv[1])), sys.stdout,
                  ensure_ascii=False, indent=2)
        print()
        return 0
    print("usage: wpod_adapter.py run-test SPEC | manifest SPEC\n"
          "  SPEC: {\"wasm\": PATH, \"args\": [...], \"env\": {...}, "
          "\"root\": PATH or null}\n"
          "  (the runner calls run-test; manifest prints the pod)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
