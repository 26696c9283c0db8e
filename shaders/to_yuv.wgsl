// The finished picture as the encoder takes it: YUV 4:2:0, BT.601 limited range (as libswscale
// converts RGB by default), packed in one single-channel target of width × height·3/2 — the Y
// plane, then one row per chroma row: its U row in the left half, its V row in the right half.
// Converting here, on the device, reads back 1.5 bytes a pixel instead of 4 and spares the CPU
// the conversion. Host only: the browser preview draws RGB. Needs an even width and height.

fn to_y(c: vec3<f32>) -> f32 {
    return (16.0 + dot(c, vec3<f32>(65.481, 128.553, 24.966))) / 255.0;
}

fn to_u(c: vec3<f32>) -> f32 {
    return (128.0 + dot(c, vec3<f32>(-37.797, -74.203, 112.0))) / 255.0;
}

fn to_v(c: vec3<f32>) -> f32 {
    return (128.0 + dot(c, vec3<f32>(112.0, -93.786, -18.214))) / 255.0;
}

@fragment
fn fs_to_yuv(@builtin(position) position: vec4<f32>) -> @location(0) vec4<f32> {
    let size = vec2<i32>(textureDimensions(source));
    let p = vec2<i32>(i32(floor(position.x)), i32(floor(position.y)));
    if p.y < size.y {
        return vec4<f32>(to_y(load_source(p).rgb), 0.0, 0.0, 1.0);
    }
    // A chroma sample: the mean of its 2×2 block (the conversion is linear, so this is the
    // mean of the four pixels' chroma).
    let half = size.x / 2;
    let is_v = p.x >= half;
    let block = vec2<i32>((p.x - select(0, half, is_v)) * 2, (p.y - size.y) * 2);
    let c = (load_source(block).rgb + load_source(block + vec2<i32>(1, 0)).rgb
        + load_source(block + vec2<i32>(0, 1)).rgb + load_source(block + vec2<i32>(1, 1)).rgb) * 0.25;
    return vec4<f32>(select(to_u(c), to_v(c), is_v), 0.0, 0.0, 1.0);
}
