//! A `serve` child process for the benchmarks that measure a whole server (`bench fanout`,
//! `bench alerts`): its memory and CPU are its own, it runs on free loopback ports in a data
//! folder of its own, and it is killed when dropped.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

pub struct ServeChild {
    pub process: std::process::Child,
    /// `http://127.0.0.1:PORT`
    pub http: String,
    /// `rtmp://127.0.0.1:PORT/live`
    pub rtmp: String,
    /// The first start's keys.
    pub api_key: String,
    pub stream_key: String,
    _data: tempfile::TempDir,
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl ServeChild {
    /// `serve ARGS` on free ports with a new data folder; returns once it has printed where it
    /// listens and its keys.
    pub fn start<I, S>(args: I) -> anyhow::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let data = tempfile::tempdir()?;
        let mut process = Command::new(std::env::current_exe()?)
            .arg("serve")
            .args(args)
            .args(["--http", "127.0.0.1:0", "--rtmp", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = process.stdout.take().context("child stdout")?;
        let prefixes = [
            "HTTP listening on ",
            "RTMP listening on ",
            "API key: ",
            "Stream key: ",
        ];
        let mut found: [Option<String>; 4] = Default::default();
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line?;
            for (slot, prefix) in found.iter_mut().zip(prefixes) {
                if let Some(value) = line.strip_prefix(prefix) {
                    *slot = Some(value.trim().to_string());
                }
            }
            if found.iter().all(Option::is_some) {
                break;
            }
        }
        // What it prints later is read and dropped: a closed pipe would fail its writes.
        std::thread::spawn(move || lines.for_each(drop));
        let [Some(http), Some(rtmp), Some(api_key), Some(stream_key)] = found else {
            let _ = process.kill();
            let _ = process.wait();
            bail!("the server did not start (no banner)");
        };
        Ok(Self {
            process,
            http,
            rtmp,
            api_key,
            stream_key,
            _data: data,
        })
    }
}
