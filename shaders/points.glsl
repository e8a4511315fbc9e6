#version 330 core
// Points (landmarks, vertices): antialiased discs of a given pixel diameter, per-point colour.
// A geometry shader turns each point into a screen-aligned quad carrying its pixel offset from
// the centre; gl_PointCoord is avoided because drivers disagree on it by half a pixel (llvmpipe).
// core/render.py inserts "#define VERTEX_SHADER" / GEOMETRY_SHADER / FRAGMENT_SHADER.

#if defined VERTEX_SHADER

uniform mat4 u_projection;
uniform float u_depth_bias_m;  // pulls points towards the camera along their ray (no 2D shift)

in vec3 in_position;  // OpenCV camera space, metres
in vec4 in_color;     // straight RGB, A = opacity

out vec4 v_color;

void main() {
    vec3 p = in_position * max(1.0 - u_depth_bias_m / max(in_position.z, 1e-6), 0.0);
    gl_Position = u_projection * vec4(p, 1.0);
    v_color = in_color;
}

#elif defined GEOMETRY_SHADER

layout(points) in;
layout(triangle_strip, max_vertices = 4) out;

uniform vec2 u_viewport_px;
uniform float u_size_px;  // disc diameter

in vec4 v_color[];
flat out vec4 g_color;
noperspective out vec2 g_offset_px;  // from the disc's centre

void main() {
    vec4 p = gl_in[0].gl_Position;
    if (p.w <= 0.0) return;  // behind the camera
    float half_extent = 0.5 * u_size_px + 1.0;  // one extra pixel for the antialiased fringe
    vec2 px_to_ndc = 2.0 / u_viewport_px;
    for (int i = 0; i < 4; ++i) {
        vec2 corner = vec2(float(i & 1), float(i >> 1)) * 2.0 - 1.0;
        vec2 offset = corner * half_extent;
        gl_Position = vec4(p.xy + offset * px_to_ndc * p.w, p.z, p.w);
        g_color = v_color[0];
        g_offset_px = offset;
        EmitVertex();
    }
    EndPrimitive();
}

#elif defined FRAGMENT_SHADER

uniform float u_size_px;

flat in vec4 g_color;
noperspective in vec2 g_offset_px;

out vec4 out_color;  // premultiplied alpha

void main() {
    float alpha = clamp(0.5 * u_size_px + 0.5 - length(g_offset_px), 0.0, 1.0) * g_color.a;
    if (alpha <= 0.0) discard;
    out_color = vec4(g_color.rgb * alpha, alpha);
}

#endif
