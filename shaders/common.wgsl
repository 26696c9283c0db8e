// Shared by every effect (prepended to each effect's file; WGSL has no includes).
//
// Effects are fragment shaders over a full-frame triangle, so that naga can also emit GLSL ES 3.00
// for the dashboard's WebGL2 preview from this same source. They read texels with textureLoad
// (texelFetch in GLSL): exact integer addressing, no filtering, so the host's CPU implementation
// can do the same arithmetic. Coordinates are image pixels with the origin at the top left.

const MAX_REGIONS: u32 = 32u;
const MAX_RADIUS: f32 = 64.0;
const MAX_BLOCK: f32 = 32.0;

// Every effect's parameters, one layout for all (only vec4s: the same bytes in WGSL's uniform
// layout and in std140, so the browser fills it as 36 × 4 floats).
struct Params {
    // Regions in pixels: x, y, width, height.
    regions: array<vec4<f32>, 32>,
    // Highlight outline colour: r, g, b, opacity.
    colour: vec4<f32>,
    // Colour grade: temperature (-1 cool .. 1 warm), tint (-1 magenta .. 1 green), contrast
    // (1 = unchanged), saturation (1 = unchanged).
    grade: vec4<f32>,
    // Blur radius or pixelate block (pixels), feather (pixels), dim (0..1), outline width (pixels).
    shape: vec4<f32>,
    // Region count, flip (1: the target's rows run bottom-up, as a WebGL canvas), brightness, unused.
    frame: vec4<f32>,
}

@group(0) @binding(0) var<uniform> params: Params;
// The picture this pass reads.
@group(0) @binding(1) var source: texture_2d<f32>;
// The picture before this effect (the blur's second pass blends into it).
@group(0) @binding(2) var original: texture_2d<f32>;

// A triangle that covers the target: vertices (-1,-1), (3,-1), (-1,3).
@vertex
fn vs_main(@builtin(vertex_index) index: u32) -> @builtin(position) vec4<f32> {
    let x = f32((index << 1u) & 2u) * 2.0 - 1.0;
    let y = f32(index & 2u) * 2.0 - 1.0;
    return vec4<f32>(x, y, 0.0, 1.0);
}

// The image pixel a fragment is for.
fn pixel(position: vec4<f32>) -> vec2<i32> {
    var y = position.y;
    if params.frame.y > 0.5 {
        y = f32(textureDimensions(source).y) - position.y;
    }
    return vec2<i32>(i32(floor(position.x)), i32(floor(y)));
}

fn load_source(p: vec2<i32>) -> vec4<f32> {
    let last = vec2<i32>(textureDimensions(source)) - vec2<i32>(1, 1);
    return textureLoad(source, clamp(p, vec2<i32>(0, 0), last), 0);
}

fn load_original(p: vec2<i32>) -> vec4<f32> {
    let last = vec2<i32>(textureDimensions(original)) - vec2<i32>(1, 1);
    return textureLoad(original, clamp(p, vec2<i32>(0, 0), last), 0);
}

fn region_count() -> u32 {
    return min(u32(max(params.frame.x, 0.0)), MAX_REGIONS);
}

// Distance from pixel centre q to region i grown by `grow` on each side (0 inside).
fn outside_distance(q: vec2<f32>, i: u32, grow: vec2<f32>) -> f32 {
    let r = params.regions[i];
    let half = r.zw * 0.5 + grow;
    return length(max(abs(q - (r.xy + r.zw * 0.5)) - half, vec2<f32>(0.0, 0.0)));
}

// 1 inside any region, falling to 0 over `feather` pixels outside it (the feather never eats
// into a region: all of it is covered).
fn coverage(q: vec2<f32>, feather: f32) -> f32 {
    var m = 0.0;
    for (var i = 0u; i < region_count(); i = i + 1u) {
        let d = outside_distance(q, i, vec2<f32>(0.0, 0.0));
        var c = 0.0;
        if d <= 0.0 {
            c = 1.0;
        } else if feather > 0.0 {
            c = clamp(1.0 - d / feather, 0.0, 1.0);
        }
        m = max(m, c);
    }
    return m;
}

// Whether q is inside any region grown by `grow`.
fn inside_any(q: vec2<f32>, grow: vec2<f32>) -> bool {
    for (var i = 0u; i < region_count(); i = i + 1u) {
        if outside_distance(q, i, grow) <= 0.0 {
            return true;
        }
    }
    return false;
}

fn opaque(c: vec3<f32>) -> vec4<f32> {
    return vec4<f32>(clamp(c, vec3<f32>(0.0), vec3<f32>(1.0)), 1.0);
}
