// Colour grade of the whole picture: white balance (temperature, tint), contrast around mid-grey,
// brightness, saturation against Rec. 709 luma.

@fragment
fn fs_colour_grade(@builtin(position) position: vec4<f32>) -> @location(0) vec4<f32> {
    let p = pixel(position);
    let g = params.grade;
    var c = load_source(p).rgb * vec3<f32>(1.0 + 0.15 * g.x, 1.0 + 0.1 * g.y, 1.0 - 0.15 * g.x);
    c = (c - vec3<f32>(0.5)) * g.z + vec3<f32>(0.5 + params.frame.z);
    let luma = dot(c, vec3<f32>(0.2126, 0.7152, 0.0722));
    c = mix(vec3<f32>(luma), c, g.w);
    return opaque(c);
}
