//! `media-analyzer compare vision FILE`: frames sampled from a recording go to Google Cloud Vision
//! (`OBJECT_LOCALIZATION` and `LOGO_DETECTION`) and through our own components; the report says
//! how far the two agree (objects matched by name and box, brands by name per frame), what each
//! costs per 1,000 frames, and how long each took.
//!
//! Cloud Vision is reached with Application Default Credentials (Google's `google-cloud-auth`:
//! `GOOGLE_APPLICATION_CREDENTIALS`, `gcloud auth application-default login`, or the metadata
//! server on GCP). Without them it stops before any work and says what it needs.
//! `--vision-endpoint` sends the requests elsewhere (an API-compatible server), without credentials.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::AnalysisStats;
use crate::bundle::Bundle;
use crate::file::{AnalyzeOptions, bundle_for};

/// Images per `images:annotate` request (the API takes at most 16).
const BATCH: usize = 16;
/// An answer larger than this is refused rather than read.
const MAX_ANSWER_BYTES: usize = 32 << 20;
/// Results per feature and image that Vision is asked for.
const MAX_RESULTS: u32 = 50;

/// What `compare vision` needs besides the analysis options.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub analyze: AnalyzeOptions,
    /// One frame every this many seconds of media.
    pub every_seconds: f64,
    /// At most this many frames.
    pub max_frames: usize,
    /// `https://vision.googleapis.com` (default), or an API-compatible server (no credentials).
    pub endpoint: Option<String>,
    /// Cloud Vision's price per 1,000 units of each feature, USD (list price, 1,001–5,000,000
    /// units a month): `OBJECT_LOCALIZATION`, `LOGO_DETECTION`.
    pub vision_prices: (f64, f64),
    /// What one vCPU-hour costs where our analysis runs, USD.
    pub cpu_hour_price: f64,
}

/// One sampled frame: its JPEG for Vision and what our components found.
struct Sample {
    seq: u64,
    pts_ms: i64,
    jpeg: Vec<u8>,
    ours: Vec<bus::Detection>,
    analysis: Duration,
}

#[derive(Serialize)]
struct AnnotateRequest<'a> {
    requests: Vec<ImageRequest<'a>>,
}

#[derive(Serialize)]
struct ImageRequest<'a> {
    image: ImageContent,
    features: [Feature<'a>; 2],
}

#[derive(Serialize)]
struct ImageContent {
    content: String,
}

#[derive(Serialize)]
struct Feature<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(rename = "maxResults")]
    max_results: u32,
}

#[derive(Debug, Default, Deserialize)]
struct AnnotateResponse {
    #[serde(default)]
    responses: Vec<ImageResponse>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageResponse {
    #[serde(default)]
    localized_object_annotations: Vec<ObjectAnnotation>,
    #[serde(default)]
    logo_annotations: Vec<LogoAnnotation>,
    error: Option<Status>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectAnnotation {
    name: String,
    bounding_poly: Poly,
}

#[derive(Debug, Deserialize)]
struct LogoAnnotation {
    description: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Poly {
    #[serde(default)]
    normalized_vertices: Vec<Vertex>,
}

#[derive(Debug, Default, Deserialize)]
struct Vertex {
    #[serde(default)]
    x: f32,
    #[serde(default)]
    y: f32,
}

#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    code: i32,
    #[serde(default)]
    message: String,
}

/// One label's agreement: found by Vision, by us, and by both (same frame, IoU ≥ 0.5).
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Agreement {
    pub vision: u64,
    pub ours: u64,
    pub both: u64,
}

impl Agreement {
    fn add(&mut self, other: &Agreement) {
        self.vision += other.vision;
        self.ours += other.ours;
        self.both += other.both;
    }
}

/// What `compare vision` reports.
#[derive(Debug, Default, Serialize)]
pub struct Comparison {
    pub frames: usize,
    /// Objects by our label (Vision's names mapped onto ours where they mean the same thing).
    pub objects: BTreeMap<String, Agreement>,
    /// Brands by folded name, counted per frame.
    pub brands: BTreeMap<String, Agreement>,
    /// Our analysis time per frame, mean (ms), on this machine.
    pub ours_ms_per_frame: f64,
    /// Cloud Vision's time per frame, mean over the batched requests (ms).
    pub vision_ms_per_frame: f64,
    pub vision_usd_per_1000: f64,
    pub ours_usd_per_1000: f64,
    /// Frames Vision answered with an error (its message).
    pub vision_errors: Vec<String>,
}

impl Comparison {
    pub fn objects_total(&self) -> Agreement {
        let mut total = Agreement::default();
        self.objects.values().for_each(|a| total.add(a));
        total
    }

    pub fn brands_total(&self) -> Agreement {
        let mut total = Agreement::default();
        self.brands.values().for_each(|a| total.add(a));
        total
    }

    /// The report as a table.
    pub fn table(&self) -> String {
        let share = |n: u64, d: u64| {
            if d == 0 {
                "-".to_string()
            } else {
                format!("{:.0} %", 100.0 * n as f64 / d as f64)
            }
        };
        let mut out = format!(
            "{} frames compared\n\n| objects | Vision | ours | both | Vision's found by us | ours confirmed by Vision |\n|---|---|---|---|---|---|\n",
            self.frames
        );
        let rows = |out: &mut String, rows: &BTreeMap<String, Agreement>, total: Agreement| {
            for (label, a) in rows {
                out.push_str(&format!(
                    "| {label} | {} | {} | {} | {} | {} |\n",
                    a.vision,
                    a.ours,
                    a.both,
                    share(a.both, a.vision),
                    share(a.both, a.ours)
                ));
            }
            out.push_str(&format!(
                "| **all** | {} | {} | {} | {} | {} |\n",
                total.vision,
                total.ours,
                total.both,
                share(total.both, total.vision),
                share(total.both, total.ours)
            ));
        };
        rows(&mut out, &self.objects, self.objects_total());
        out.push_str(
            "\n| brands (frames) | Vision | ours | both | Vision's found by us | ours confirmed by Vision |\n|---|---|---|---|---|---|\n",
        );
        rows(&mut out, &self.brands, self.brands_total());
        out.push_str(&format!(
            "\n| per 1,000 frames | time per frame | cost |\n|---|---|---|\n\
             | Cloud Vision (objects + logos) | {:.0} ms | ${:.2} |\n\
             | our components, this machine | {:.0} ms | ${:.4} |\n",
            self.vision_ms_per_frame,
            self.vision_usd_per_1000,
            self.ours_ms_per_frame,
            self.ours_usd_per_1000
        ));
        for e in &self.vision_errors {
            out.push_str(&format!("Vision error: {e}\n"));
        }
        out
    }
}

/// Vision's object names that mean one of our (COCO) labels.
fn our_label(vision_name: &str) -> String {
    let name = vision_name.to_lowercase();
    let mapped = match name.as_str() {
        "man" | "woman" | "boy" | "girl" | "person" | "human" => "person",
        "mug" | "coffee cup" | "tableware" | "drinkware" => "cup",
        "mobile phone" | "telephone" => "cell phone",
        "computer monitor" | "television" => "tv",
        "laptop" | "computer" => "laptop",
        "automobile" | "vehicle" => "car",
        "bicycle wheel" => "bicycle",
        "wine glass" => "wine glass",
        "bottle" | "water bottle" => "bottle",
        "chair" | "office chair" => "chair",
        "dining table" | "table" | "coffee table" => "dining table",
        "cat" | "dog" | "bird" | "horse" => return name,
        other => other,
    };
    mapped.to_string()
}

/// A brand name folded as our detectors fold it (`brand:<folded>`): lowercase letters and digits.
fn folded(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let (ax2, ay2, bx2, by2) = (a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]);
    let w = (ax2.min(bx2) - a[0].max(b[0])).max(0.0);
    let h = (ay2.min(by2) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// `[x, y, w, h]` of a normalised polygon's bounding box.
fn poly_box(poly: &Poly) -> [f32; 4] {
    let xs = poly.normalized_vertices.iter().map(|v| v.x);
    let ys = poly.normalized_vertices.iter().map(|v| v.y);
    let (x0, x1) = xs.fold((1f32, 0f32), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let (y0, y1) = ys.fold((1f32, 0f32), |(lo, hi), y| (lo.min(y), hi.max(y)));
    [x0, y0, (x1 - x0).max(0.0), (y1 - y0).max(0.0)]
}

/// Adds one frame's objects and brands to the comparison.
fn compare_frame(ours: &[bus::Detection], vision: &ImageResponse, into: &mut Comparison) {
    // Objects: greedy pairs of the same label, best IoU first, IoU ≥ 0.5.
    let theirs: Vec<(String, [f32; 4])> = vision
        .localized_object_annotations
        .iter()
        .map(|o| (our_label(&o.name), poly_box(&o.bounding_poly)))
        .collect();
    let mine: Vec<(&str, [f32; 4])> = ours
        .iter()
        .filter(|d| !d.label.starts_with("brand:"))
        .map(|d| (d.label.as_str(), d.bbox))
        .collect();
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (i, (label, b)) in theirs.iter().enumerate() {
        for (j, (l, m)) in mine.iter().enumerate() {
            let overlap = iou(*b, *m);
            if label == l && overlap >= 0.5 {
                pairs.push((overlap, i, j));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (mut used_i, mut used_j) = (HashSet::new(), HashSet::new());
    for (_, i, j) in pairs {
        if used_i.contains(&i) || used_j.contains(&j) {
            continue;
        }
        used_i.insert(i);
        used_j.insert(j);
        into.objects.entry(theirs[i].0.clone()).or_default().both += 1;
    }
    for (label, _) in &theirs {
        into.objects.entry(label.clone()).or_default().vision += 1;
    }
    for (label, _) in &mine {
        into.objects.entry(label.to_string()).or_default().ours += 1;
    }
    // Brands: named in this frame by each side.
    let theirs: HashSet<String> = vision
        .logo_annotations
        .iter()
        .map(|l| folded(&l.description))
        .collect();
    let mine: HashSet<String> = ours
        .iter()
        .filter_map(|d| d.label.strip_prefix("brand:").map(folded))
        .collect();
    for brand in theirs.union(&mine) {
        let a = into.brands.entry(brand.clone()).or_default();
        a.vision += u64::from(theirs.contains(brand));
        a.ours += u64::from(mine.contains(brand));
        a.both += u64::from(theirs.contains(brand) && mine.contains(brand));
    }
}

/// The sampled frames, analysed by our components (blocking).
fn sample_and_analyse(options: &CompareOptions) -> anyhow::Result<Vec<Sample>> {
    let Bundle {
        runtime,
        components,
    } = bundle_for(&options.analyze)?;
    let mut source = decode::FileSource::open(&options.analyze.input, 2)
        .with_context(|| format!("opening {}", options.analyze.input))?;
    let step_ms = (options.every_seconds * 1000.0).round() as i64;
    let stats = AnalysisStats::default();
    let mut next_pts = i64::MIN;
    let mut samples = Vec::new();
    let mut batch = Vec::new();
    while samples.len() < options.max_frames && source.next_frames(&mut batch)? {
        for frame in batch.drain(..) {
            if frame.pts_ms < next_pts || samples.len() >= options.max_frames {
                continue;
            }
            next_pts = frame.pts_ms + step_ms;
            let started = Instant::now();
            let found = crate::analyse_frame(
                &options.analyze.input,
                &frame,
                &runtime,
                &components,
                &stats,
            );
            let analysis = started.elapsed();
            let mut jpeg = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).encode(
                &frame.rgb,
                frame.width,
                frame.height,
                image::ExtendedColorType::Rgb8,
            )?;
            samples.push(Sample {
                seq: frame.seq,
                pts_ms: frame.pts_ms,
                jpeg,
                ours: found.detections,
                analysis,
            });
        }
    }
    if samples.is_empty() {
        bail!("no frames decoded from {}", options.analyze.input);
    }
    Ok(samples)
}

/// What `compare vision` needs from Google, said plainly.
const NEEDS: &str = concat!(
    "Cloud Vision needs Google credentials and the API enabled:\n",
    "  1. gcloud services enable vision.googleapis.com --project PROJECT_ID\n",
    "  2. credentials, one of: `gcloud auth application-default login`; ",
    "GOOGLE_APPLICATION_CREDENTIALS=/path/to/key.json of a service account with ",
    "roles/serviceusage.serviceUsageConsumer on the project; or run on GCP with such a service account\n",
    "  3. a quota project for user credentials: gcloud auth application-default set-quota-project PROJECT_ID\n",
    "(--vision-endpoint URL sends the requests to an API-compatible server instead, without credentials)"
);

/// Authorisation headers for Vision, checked before any work: `None` with an endpoint of one's
/// own.
async fn vision_headers(
    options: &CompareOptions,
) -> anyhow::Result<Option<google_cloud_auth::credentials::Credentials>> {
    if options.endpoint.is_some() {
        return Ok(None);
    }
    let credentials = google_cloud_auth::credentials::Builder::default()
        .build()
        .map_err(|e| anyhow::anyhow!("no Google credentials ({e}).\n{NEEDS}"))?;
    match tokio::time::timeout(
        Duration::from_secs(10),
        credentials.headers(http::Extensions::new()),
    )
    .await
    {
        Ok(Ok(_)) => Ok(Some(credentials)),
        Ok(Err(e)) => {
            let adc = std::env::var_os("HOME").map(|h| {
                std::path::Path::new(&h).join(".config/gcloud/application_default_credentials.json")
            });
            if std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_none()
                && !adc.is_some_and(|p| p.is_file())
            {
                bail!(
                    "no Google credentials: GOOGLE_APPLICATION_CREDENTIALS is not set, gcloud has no \
                     application-default credentials, and no GCP metadata server gave a token ({e}).\n{NEEDS}"
                );
            }
            bail!("the Google credentials found do not work ({e}).\n{NEEDS}")
        }
        Err(_) => bail!("no Google credentials answered within 10 s.\n{NEEDS}"),
    }
}

async fn annotate(
    http: &reqwest::Client,
    url: &str,
    credentials: Option<&google_cloud_auth::credentials::Credentials>,
    samples: &[Sample],
) -> anyhow::Result<Vec<ImageResponse>> {
    let body = AnnotateRequest {
        requests: samples
            .iter()
            .map(|s| ImageRequest {
                image: ImageContent {
                    content: base64::engine::general_purpose::STANDARD.encode(&s.jpeg),
                },
                features: [
                    Feature {
                        kind: "OBJECT_LOCALIZATION",
                        max_results: MAX_RESULTS,
                    },
                    Feature {
                        kind: "LOGO_DETECTION",
                        max_results: MAX_RESULTS,
                    },
                ],
            })
            .collect(),
    };
    let mut request = http.post(url).json(&body);
    if let Some(credentials) = credentials {
        match credentials.headers(http::Extensions::new()).await {
            Ok(google_cloud_auth::credentials::CacheableResource::New { data, .. }) => {
                request = request.headers(data);
            }
            Ok(google_cloud_auth::credentials::CacheableResource::NotModified) => {}
            Err(e) => bail!("Google credentials: {e}"),
        }
    }
    let mut response = request.send().await.context("Cloud Vision")?;
    let status = response.status();
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.context("reading Vision's answer")? {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            bail!("Vision's answer is over {MAX_ANSWER_BYTES} bytes");
        }
        bytes.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(2000)]).into_owned();
        bail!("Cloud Vision answered {status}: {text}");
    }
    let parsed: AnnotateResponse =
        serde_json::from_slice(&bytes).context("Vision's answer is not images:annotate JSON")?;
    if parsed.responses.len() != samples.len() {
        bail!(
            "Vision answered {} of {} images",
            parsed.responses.len(),
            samples.len()
        );
    }
    Ok(parsed.responses)
}

/// Runs the comparison. Credentials are checked first; then our analysis; then Vision.
pub async fn compare(options: CompareOptions) -> anyhow::Result<Comparison> {
    let every_ok = options.every_seconds.is_finite() && options.every_seconds > 0.0;
    if !every_ok || options.max_frames == 0 || options.max_frames > 5000 {
        bail!("--every-seconds must be above 0 and --frames between 1 and 5000");
    }
    let credentials = vision_headers(&options).await?;
    let base = options
        .endpoint
        .clone()
        .unwrap_or_else(|| "https://vision.googleapis.com".into());
    let url = format!("{}/v1/images:annotate", base.trim_end_matches('/'));
    let blocking = options.clone();
    let samples = tokio::task::spawn_blocking(move || sample_and_analyse(&blocking)).await??;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .build()?;
    let mut comparison = Comparison {
        frames: samples.len(),
        ..Default::default()
    };
    let mut vision_time = Duration::ZERO;
    for chunk in samples.chunks(BATCH) {
        let started = Instant::now();
        let answers = annotate(&http, &url, credentials.as_ref(), chunk).await?;
        vision_time += started.elapsed();
        for (sample, answer) in chunk.iter().zip(&answers) {
            if let Some(e) = &answer.error {
                comparison.vision_errors.push(format!(
                    "frame {} ({} ms): {} {}",
                    sample.seq, sample.pts_ms, e.code, e.message
                ));
                continue;
            }
            compare_frame(&sample.ours, answer, &mut comparison);
        }
    }
    let frames = samples.len() as f64;
    let ours: Duration = samples.iter().map(|s| s.analysis).sum();
    comparison.ours_ms_per_frame = ours.as_secs_f64() * 1000.0 / frames;
    comparison.vision_ms_per_frame = vision_time.as_secs_f64() * 1000.0 / frames;
    comparison.vision_usd_per_1000 = options.vision_prices.0 + options.vision_prices.1;
    // Our analysis keeps one core busy while it runs: CPU-seconds per frame ≈ its time.
    comparison.ours_usd_per_1000 = comparison.ours_ms_per_frame * options.cpu_hour_price / 3600.0;
    Ok(comparison)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(label: &str, bbox: [f32; 4]) -> bus::Detection {
        bus::Detection {
            label: label.into(),
            score: 0.9,
            bbox,
            component: "object-detector".into(),
        }
    }

    fn answer(json: &str) -> ImageResponse {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn objects_pair_by_label_and_overlap_and_brands_by_name() {
        let vision = answer(
            r#"{"localizedObjectAnnotations":[
                {"name":"Mug","score":0.9,"boundingPoly":{"normalizedVertices":[{"x":0.1,"y":0.1},{"x":0.5,"y":0.1},{"x":0.5,"y":0.5},{"x":0.1,"y":0.5}]}},
                {"name":"Person","score":0.8,"boundingPoly":{"normalizedVertices":[{"x":0.6,"y":0.0},{"x":0.9,"y":0.9}]}}],
               "logoAnnotations":[{"description":"Coca-Cola","score":0.7}]}"#,
        );
        let mine = vec![
            ours("cup", [0.12, 0.1, 0.38, 0.4]),
            ours("cup", [0.7, 0.7, 0.1, 0.1]),
            ours("brand:cocacola", [0.0, 0.0, 0.1, 0.1]),
            ours("brand:netflix", [0.0, 0.0, 0.1, 0.1]),
        ];
        let mut c = Comparison::default();
        compare_frame(&mine, &vision, &mut c);
        assert_eq!(
            c.objects["cup"],
            Agreement {
                vision: 1,
                ours: 2,
                both: 1
            }
        );
        assert_eq!(
            c.objects["person"],
            Agreement {
                vision: 1,
                ours: 0,
                both: 0
            }
        );
        assert_eq!(
            c.brands["cocacola"],
            Agreement {
                vision: 1,
                ours: 1,
                both: 1
            }
        );
        assert_eq!(
            c.brands["netflix"],
            Agreement {
                vision: 0,
                ours: 1,
                both: 0
            }
        );
        assert_eq!(
            c.objects_total(),
            Agreement {
                vision: 2,
                ours: 2,
                both: 1
            }
        );
        assert!(
            c.table().contains("| cup | 1 | 2 | 1 | 100 % | 50 % |"),
            "{}",
            c.table()
        );
    }

    #[test]
    fn a_box_that_overlaps_too_little_is_not_the_same_object() {
        let vision = answer(
            r#"{"localizedObjectAnnotations":[{"name":"Cup","boundingPoly":{"normalizedVertices":[{"x":0.0,"y":0.0},{"x":0.2,"y":0.2}]}}]}"#,
        );
        let mut c = Comparison::default();
        compare_frame(&[ours("cup", [0.15, 0.15, 0.2, 0.2])], &vision, &mut c);
        assert_eq!(c.objects["cup"].both, 0);
    }

    #[test]
    fn names_fold_the_way_our_brand_labels_do() {
        assert_eq!(folded("Coca-Cola"), "cocacola");
        assert_eq!(folded("NETFLIX"), "netflix");
        assert_eq!(our_label("Coffee cup"), "cup");
        assert_eq!(our_label("Woman"), "person");
        assert_eq!(our_label("Bicycle"), "bicycle");
    }
}
