//! A running `hoist controller`, against any API server a kubeconfig names.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `hoist controller`; stopped with SIGTERM when dropped.
pub struct Running {
    child: Child,
    /// What it logged (`HOIST_LOG=hoist=info`), read by [`Running::log`].
    log: PathBuf,
    _state: tempfile::TempDir,
}

impl Running {
    /// Starts `hoist controller --kubeconfig KUBECONFIG EXTRA...` with a
    /// state directory of its own. `HOIST_TEST_LOGS` set: its log goes to
    /// the test's stderr as well, when the controller stops.
    pub fn start(kubeconfig: &Path, extra: &[&str]) -> Running {
        Running::start_with_env(kubeconfig, extra, &[])
    }

    /// [`Running::start`] with `env` added to the controller's
    /// environment (a cloud's identity variables, a proxy).
    pub fn start_with_env(kubeconfig: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
        let state = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let kubeconfig = kubeconfig.to_string_lossy().into_owned();
        let state_dir = state.path().join("state").to_string_lossy().into_owned();
        // Port 0: the controller binds a free port and logs which.
        let mut args = vec![
            "controller",
            "--kubeconfig",
            &kubeconfig,
            "--state-dir",
            &state_dir,
            "--metrics-addr",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let log = state.path().join("controller.log");
        let log_file = std::fs::File::create(&log).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(env!("CARGO_BIN_EXE_hoist"))
            .args(&args)
            .env("HOIST_LOG", "hoist=info")
            .env("DOCKER_CONFIG", state.path())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting hoist controller: {e}"));
        Running {
            child,
            log,
            _state: state,
        }
    }

    /// The process id, for signals and /proc.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address `listener` (`metrics` or `webhook`, given
    /// `127.0.0.1:0`) is bound to, once the controller has logged it.
    pub fn listening(&self, listener: &str) -> Option<String> {
        super::listening_on(&self.log(), listener)
    }

    /// [`Running::listening`], waited for.
    pub fn wait_listening(&self, listener: &str) -> String {
        super::wait_for(
            &format!("the {listener} listener"),
            Duration::from_secs(30),
            Duration::from_millis(20),
            || self.listening(listener),
        )
    }

    /// GET `path` on the metrics endpoint: status and body (status 0 when
    /// nothing listens yet).
    pub fn get(&self, path: &str) -> (u16, String) {
        let Some(metrics) = self.listening("metrics") else {
            return (0, "not listening yet".into());
        };
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        match agent.get(&format!("http://{metrics}{path}")).call() {
            Ok(mut response) => (
                response.status().as_u16(),
                response.body_mut().read_to_string().unwrap_or_default(),
            ),
            Err(e) => (0, e.to_string()),
        }
    }

    /// SIGTERM, then the exit code (`None` when it had to be killed after
    /// 15 s).
    pub fn stop(&mut self) -> Option<i32> {
        self.stop_within(Duration::from_secs(15))
    }

    /// SIGTERM, then the exit code, or `None` when it had not exited
    /// `grace` later and was killed.
    pub fn stop_within(&mut self, grace: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if started.elapsed() > grace {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no release of its lease, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.running() {
            self.stop();
        }
        if std::env::var_os("HOIST_TEST_LOGS").is_some() {
            eprintln!("--- hoist controller log ---\n{}", self.log());
        }
    }
}

/// The peak resident set of a process, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Sum of a counter family in the Prometheus text.
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
