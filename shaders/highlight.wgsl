// Highlight: dim the picture outside the regions (feathered), outline each region inside its edge.

// Whether q is inside a region and within `width` pixels of its edge.
fn on_outline(q: vec2<f32>, width: f32) -> bool {
    for (var i = 0u; i < region_count(); i = i + 1u) {
        let r = params.regions[i];
        let inner = min(min(q.x - r.x, r.x + r.z - q.x), min(q.y - r.y, r.y + r.w - q.y));
        if inner >= 0.0 && inner < width {
            return true;
        }
    }
    return false;
}

@fragment
fn fs_highlight(@builtin(position) position: vec4<f32>) -> @location(0) vec4<f32> {
    let p = pixel(position);
    let q = vec2<f32>(p) + vec2<f32>(0.5, 0.5);
    let m = coverage(q, max(params.shape.y, 0.0));
    let dim = clamp(params.shape.z, 0.0, 1.0);
    var c = load_source(p).rgb * (1.0 - dim * (1.0 - m));
    if on_outline(q, params.shape.w) {
        c = mix(c, params.colour.rgb, clamp(params.colour.a, 0.0, 1.0));
    }
    return opaque(c);
}
