//! `media-analyzer bench archive`: segments through the archive (queued in the store, held,
//! uploaded, recorded) beside the same bytes written straight to the same target and copied on
//! the local disk — the queue's overhead, and how many live streams' segments one host archives
//! as fast as they are made.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::{Archive, ArchivePolicy, ArchiveTarget};

/// Runs the benchmark on `target` (`gs://…` with `STORAGE_EMULATOR_HOST`, or `file:///…`; by
/// default a folder in the temporary directory): `segments` segments of `segment_bytes` each.
/// Prints a Markdown table.
pub async fn archive(
    target_url: Option<&str>,
    segments: usize,
    segment_bytes: usize,
    segment_seconds: f64,
) -> anyhow::Result<()> {
    anyhow::ensure!(segments > 0 && segment_bytes > 0, "nothing to archive");
    let scratch = tempfile::tempdir()?;
    let emulator = std::env::var("STORAGE_EMULATOR_HOST").ok();
    let target_url = target_url.map_or_else(
        || format!("file://{}", scratch.path().join("archive").display()),
        str::to_string,
    );
    let target =
        ArchiveTarget::open(&target_url, emulator.as_deref()).map_err(anyhow::Error::msg)?;
    let store_url = format!("sqlite://{}", scratch.path().join("db.sqlite").display());
    let store = store::Store::open(&store_url).await?;
    let tenant = store.create_tenant("bench").await?;
    let (stream, _) = store.create_stream(&tenant.id, "archive").await?;
    let hls_root = scratch.path().join("hls");
    let folder = hls_root.join(&stream.id);
    std::fs::create_dir_all(&folder)?;
    // Incompressible bytes, so that no layer gains by compressing.
    let mut data = vec![0u8; segment_bytes];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for byte in &mut data {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *byte = x as u8;
    }
    for seq in 0..segments as u64 {
        std::fs::write(folder.join(hls::segment_file_name(seq)), &data)?;
    }
    let total_mb = (segments * segment_bytes) as f64 / 1e6;

    // The local disk: the same files copied within the scratch folder.
    let copies = scratch.path().join("copies");
    std::fs::create_dir_all(&copies)?;
    let started = Instant::now();
    for seq in 0..segments as u64 {
        let name = hls::segment_file_name(seq);
        tokio::fs::copy(folder.join(&name), copies.join(&name)).await?;
    }
    let disk = started.elapsed();

    // Straight to the target: read and put, one at a time, nothing recorded.
    let started = Instant::now();
    for seq in 0..segments as u64 {
        let name = hls::segment_file_name(seq);
        let bytes = tokio::fs::read(folder.join(&name)).await?;
        target
            .put(
                &format!("bench-direct/{}/{name}", stream.id),
                "video/mp2t",
                bytes,
            )
            .await
            .map_err(anyhow::Error::msg)?;
    }
    let direct = started.elapsed();

    // Through the archive: each segment queued as bookkeeping queues it, uploaded by the
    // archiver, its row deleted and hold released.
    let holds = hls::Holds::default();
    let archive = Archive::new(
        "bench".into(),
        store.clone(),
        ArchivePolicy::default(),
        holds.clone(),
    );
    let stop = CancellationToken::new();
    let runner = tokio::spawn(archive.clone().run(target.clone(), hls_root, stop.clone()));
    let stats = archive.stats();
    let started = Instant::now();
    for seq in 0..segments as i64 {
        archive.segment_closed(&stream.id, seq).await;
    }
    let queued = started.elapsed();
    while stats.segments.load(std::sync::atomic::Ordering::Relaxed) < segments as u64
        || !holds.is_empty()
    {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the archive did not finish within 10 minutes ({} failures)",
            stats.failures.load(std::sync::atomic::Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let archived = started.elapsed();
    stop.cancel();
    let _ = runner.await;

    let rate = |d: Duration| segments as f64 / d.as_secs_f64();
    let mbps = |d: Duration| total_mb / d.as_secs_f64();
    println!(
        "\n{segments} segments of {:.2} MB to {} ({} s of video each)\n",
        segment_bytes as f64 / 1e6,
        target.url(),
        segment_seconds
    );
    println!(
        "| path | seconds | segments/s | MB/s | vs the local disk | vs straight to the target |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, d) in [
        ("local disk copy (the limit here)", disk),
        ("straight to the target (read + put)", direct),
        ("through the archive (queue, hold, put, record)", archived),
    ] {
        println!(
            "| {name} | {:.2} | {:.1} | {:.1} | {:.2}× | {:.2}× |",
            d.as_secs_f64(),
            rate(d),
            mbps(d),
            rate(d) / rate(disk),
            rate(d) / rate(direct),
        );
    }
    println!(
        "\nQueueing (store row + hold) took {:.2} ms per segment. One host archives the segments of \
         {:.0} live streams as fast as they are made ({segment_seconds} s segments).",
        queued.as_secs_f64() * 1000.0 / segments as f64,
        rate(archived) * segment_seconds
    );
    Ok(())
}
