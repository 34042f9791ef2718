//! A real Prometheus server (Debian's) scraping lab nodes every second with the node's bearer
//! token from a file, evaluating the rules it is given every second, on a free loopback port
//! with its data in a scratch directory. Dropping it stops the server.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub url: String,
}

impl Prometheus {
    /// Started and ready, scraping `targets` (`host:port`) with `token`, evaluating `rules`;
    /// None after printing SKIP when prometheus is not installed (a failure under
    /// AUTONOMY_LAB_REQUIRE=1).
    #[track_caller]
    pub fn start_or_skip(dir: &Path, targets: &[&str], token: &str, rules: &str, label: &str) -> Option<Self> {
        if !crate::run::tool_or_skip("prometheus", label) {
            return None;
        }
        Some(Self::start(dir, targets, token, rules).unwrap_or_else(|e| panic!("{e}")))
    }

    fn start(dir: &Path, targets: &[&str], token: &str, rules: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let token_file = dir.join("token");
        std::fs::write(&token_file, token).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("rules.yml"), rules).map_err(|e| e.to_string())?;
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{}']\nscrape_configs:\n  - job_name: autonomy\n    authorization: {{type: Bearer, credentials_file: '{}'}}\n    static_configs: [{{targets: [{}]}}]\n",
            dir.join("rules.yml").display(),
            token_file.display(),
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).map_err(|e| e.to_string())?;
        let port = crate::backend::free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).map_err(|e| e.to_string())?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start prometheus: {e}"))?;
        let server = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{}/-/ready", server.url)).call().is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
                return Err(format!("prometheus never became ready; log:\n{log}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    /// Waits until every target has been scraped at least `scrapes` times (`up` over the last
    /// minute); the first scrape comes seconds after Prometheus is ready.
    pub fn wait_scraped(&self, scrapes: usize, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self.query("count_over_time(up[1m])");
            let parsed: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
            let counts: Vec<f64> = parsed["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|series| series["value"][1].as_str()?.parse().ok())
                .collect();
            if !counts.is_empty() && counts.iter().all(|count| *count >= scrapes as f64) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "prometheus did not scrape its targets {scrapes} times: {answer}"
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The answer to an instant query, as Prometheus's API gives it (for failure messages).
    pub fn query(&self, expr: &str) -> String {
        match ureq::get(&format!("{}/api/v1/query", self.url))
            .query("query", expr)
            .call()
        {
            Ok(mut answer) => answer.body_mut().read_to_string().unwrap_or_default(),
            Err(error) => error.to_string(),
        }
    }

    /// The names of the alerts in state `firing`, from Prometheus's own API.
    pub fn firing(&self) -> Vec<String> {
        let Ok(mut answer) = ureq::get(&format!("{}/api/v1/alerts", self.url)).call() else {
            return Vec::new();
        };
        let body: serde_json::Value = answer.body_mut().read_json().unwrap_or_default();
        body["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|alert| alert["state"] == "firing")
            .filter_map(|alert| alert["labels"]["alertname"].as_str().map(str::to_owned))
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        crate::process::stop_child(
            &mut self.child,
            nix::sys::signal::Signal::SIGTERM,
            Duration::from_secs(5),
        );
    }
}

/// GET /metrics of the node at `url` with `token`: the status and the body.
pub fn scrape(url: &str, token: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = agent.get(&format!("{url}/metrics"));
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    let mut answer = request.call().expect("the node answers /metrics");
    let status = answer.status().as_u16();
    (status, answer.body_mut().read_to_string().unwrap_or_default())
}
