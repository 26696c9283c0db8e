// Face blur: a separable Gaussian (two passes) or a pixelation, inside the regions, with edges
// feathered outward so that every pixel of a region is fully covered.

fn blur_radius() -> i32 {
    return i32(round(clamp(params.shape.x, 1.0, MAX_RADIUS)));
}

fn gaussian(i: i32, radius: i32) -> f32 {
    let sigma = f32(radius) * 0.5;
    let x = f32(i);
    return exp(-(x * x) / (2.0 * sigma * sigma));
}

// Pass 1: rows. Blurs the regions grown by the feather and by the radius vertically (pass 2
// reads that far above and below); copies the rest.
@fragment
fn fs_blur_rows(@builtin(position) position: vec4<f32>) -> @location(0) vec4<f32> {
    let p = pixel(position);
    let q = vec2<f32>(p) + vec2<f32>(0.5, 0.5);
    let radius = blur_radius();
    let feather = max(params.shape.y, 0.0);
    if !inside_any(q, vec2<f32>(feather, feather + f32(radius))) {
        return load_source(p);
    }
    var sum = vec3<f32>(0.0);
    var total = 0.0;
    for (var i = -radius; i <= radius; i = i + 1) {
        let w = gaussian(i, radius);
        sum = sum + load_source(p + vec2<i32>(i, 0)).rgb * w;
        total = total + w;
    }
    return opaque(sum / total);
}

// Pass 2: columns of pass 1's output, blended into the picture before the blur by coverage.
@fragment
fn fs_blur_columns(@builtin(position) position: vec4<f32>) -> @location(0) vec4<f32> {
    let p = pixel(position);
    let q = vec2<f32>(p) + vec2<f32>(0.5, 0.5);
    let m = coverage(q, max(params.shape.y, 0.0));
    let before = load_original(p);
    if m <= 0.0 {
        return before;
    }
    let radius = blur_radius();
    var sum = vec3<f32>(0.0);
    var total = 0.0;
    for (var i = -radius; i <= radius; i = i + 1) {
        let w = gaussian(i, radius);
        sum = sum + load_source(p + vec2<i32>(0, i)).rgb * w;
        total = total + w;
    }
    return opaque(mix(before.rgb, sum / total, m));
}

// Pixelate: each block of the image grid becomes its mean, inside the regions.
@fragment
fn fs_pixelate(@builtin(position) position: vec4<f32>) -> @location(0) vec4<f32> {
    let p = pixel(position);
    let q = vec2<f32>(p) + vec2<f32>(0.5, 0.5);
    let m = coverage(q, max(params.shape.y, 0.0));
    let here = load_source(p);
    if m <= 0.0 {
        return here;
    }
    let block = i32(round(clamp(params.shape.x, 1.0, MAX_BLOCK)));
    let corner = (p / vec2<i32>(block, block)) * block;
    var sum = vec3<f32>(0.0);
    for (var y = 0; y < block; y = y + 1) {
        for (var x = 0; x < block; x = x + 1) {
            sum = sum + load_source(corner + vec2<i32>(x, y)).rgb;
        }
    }
    return opaque(mix(here.rgb, sum / f32(block * block), m));
}
