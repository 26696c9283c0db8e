// The decoded picture, as the decoder gives it (YUV 4:2:0, BT.601 limited range), to RGB for the
// effects: the first pass on a GPU device, so that 1.5 bytes a pixel go up instead of 4 and the CPU
// converts nothing. `source` is packed as shaders/to_yuv.wgsl writes it: width × height·3/2, the Y
// plane, then one row per chroma row with its U row in the left half and its V row in the right.
// Chroma is taken from the sample whose 2×2 block holds the pixel. Host only.

fn yuv_to_rgb(y: f32, u: f32, v: f32) -> vec3<f32> {
    let l = 1.164384 * (y * 255.0 - 16.0);
    let cb = u * 255.0 - 128.0;
    let cr = v * 255.0 - 128.0;
    return clamp(
        vec3<f32>(l + 1.596027 * cr, l - 0.391762 * cb - 0.812968 * cr, l + 2.017232 * cb) / 255.0,
        vec3<f32>(0.0),
        vec3<f32>(1.0),
    );
}

@fragment
fn fs_from_yuv(@builtin(position) position: vec4<f32>) -> @location(0) vec4<f32> {
    let packed = vec2<i32>(textureDimensions(source));
    let height = packed.y * 2 / 3;
    let p = vec2<i32>(i32(floor(position.x)), i32(floor(position.y)));
    let c = vec2<i32>(p.x / 2, height + p.y / 2);
    let y = textureLoad(source, p, 0).r;
    let u = textureLoad(source, c, 0).r;
    let v = textureLoad(source, c + vec2<i32>(packed.x / 2, 0), 0).r;
    return vec4<f32>(yuv_to_rgb(y, u, v), 1.0);
}
