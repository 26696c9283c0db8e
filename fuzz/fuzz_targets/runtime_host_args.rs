//! The Wasm host calls' argument checks (host/runtime/src/args.rs) on arbitrary values: never
//! panic, and what they accept fits the limits they were given. The first byte picks the check;
//! the rest are its arguments, read little-endian.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runtime::args::{
    self, Bbox, Detection, ElementType, HostBudget, OutputBudget, check_dynamic_dims, crop_pixels,
    crop_rect, cut_on_char_boundary, frame_tensor_bytes, tensor_from_bytes,
};

/// Reads fixed-size values off the front of the input; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn f32(&mut self) -> f32 {
        f32::from_le_bytes(self.take())
    }
    fn bytes(&mut self, max: usize) -> &[u8] {
        let n = (self.u32() as usize).min(max).min(self.0.len());
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(self.bytes(max)).into_owned()
    }
}

const MAX_RANK: usize = 8;
const MAX_DIM: u32 = 4096;

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    match input.u8() % 6 {
        0 => {
            // tensor constructor: accepted data matches its dimensions exactly.
            let rank = (input.u8() % 10) as usize;
            let dims: Vec<u32> = (0..rank).map(|_| input.u32() % (MAX_DIM * 2)).collect();
            let element =
                [ElementType::F32, ElementType::I64, ElementType::U8][input.u8() as usize % 3];
            let bytes = input.bytes(1 << 16).to_vec();
            let len = bytes.len();
            if let Ok(t) = tensor_from_bytes(&dims, element, bytes, MAX_RANK, MAX_DIM) {
                let elements: u64 = dims.iter().map(|&d| d as u64).product();
                assert_eq!(t.len() as u64, elements);
                assert_eq!(args::tensor_bytes(&t), len);
                assert!(dims.iter().all(|&d| (1..=MAX_DIM).contains(&d)));
            }
        }
        1 => {
            // frame.crop: the rectangle is inside the frame, the pixels are what it says.
            let (w, h) = (input.u32() % 64 + 1, input.u32() % 64 + 1);
            let region = [input.f32(), input.f32(), input.f32(), input.f32()];
            if let Ok(rect) = crop_rect(w, h, region) {
                let (x, y, cw, ch) = rect;
                assert!(cw > 0 && ch > 0 && x + cw <= w && y + ch <= h);
                let rgb = vec![0u8; (w * h * 3) as usize];
                let pixels = crop_pixels(&rgb, w, h, rect).expect("a checked rectangle crops");
                assert_eq!(pixels.len(), (cw * ch * 3) as usize);
            }
            // A frame whose pixels don't fit its size is an error, not a panic.
            let short = input.bytes(64).to_vec();
            let _ = crop_pixels(&short, w, h, (0, 0, 1, 1));
        }
        2 => {
            // log: cut on a character boundary, never longer than asked.
            let max = input.u32() as usize % 4096;
            let text = input.text(1 << 14);
            let cut = cut_on_char_boundary(&text, max);
            assert!(cut.len() <= max && text.starts_with(cut));
        }
        3 => {
            // The host memory budget never goes over its limit.
            let limit = input.u32() as usize;
            let mut budget = HostBudget::new(limit);
            for _ in 0..16 {
                let amount = input.u32() as u64 * (input.u8() as u64 + 1);
                if input.u8() % 2 == 0 {
                    let _ = budget.charge(amount);
                } else {
                    budget.release(amount as usize);
                }
                assert!(budget.used() <= limit);
            }
        }
        4 => {
            // frame.tensor sizes and dynamic model dimensions.
            let _ = frame_tensor_bytes(input.u32(), input.u32(), MAX_DIM);
            let rank = (input.u8() % 6) as usize;
            let model: Vec<i64> = (0..rank).map(|_| input.u32() as i32 as i64).collect();
            let dims: Vec<u32> = (0..rank).map(|_| input.u32()).collect();
            let max = input.u32() % 8192;
            if check_dynamic_dims("input", &model, &dims, max).is_ok() {
                assert!(model.iter().zip(&dims).all(|(&m, &d)| m >= 0 || d <= max));
            }
        }
        _ => {
            // Output limits: what passes is within every limit.
            let config = runtime::SandboxConfig {
                max_detections: 8,
                max_label_bytes: 16,
                max_attributes: 4,
                max_attribute_bytes: 32,
                max_output_bytes: 256,
                ..Default::default()
            };
            let detections: Vec<Detection> = (0..input.u8() % 12)
                .map(|_| Detection {
                    label: input.text(40),
                    score: input.f32(),
                    box_: Bbox {
                        x: 0.0,
                        y: 0.0,
                        w: 1.0,
                        h: 1.0,
                    },
                    attributes: (0..input.u8() % 6)
                        .map(|_| (input.text(40), input.text(40)))
                        .collect(),
                })
                .collect();
            if OutputBudget::new(&config).check(&detections).is_ok() {
                assert!(detections.len() <= 8);
                let text: usize = detections
                    .iter()
                    .map(|d| {
                        d.label.len()
                            + d.attributes
                                .iter()
                                .map(|(k, v)| k.len() + v.len())
                                .sum::<usize>()
                    })
                    .sum();
                assert!(text <= 256);
                assert!(
                    detections
                        .iter()
                        .all(|d| d.label.len() <= 16 && d.attributes.len() <= 4)
                );
            }
        }
    }
});
