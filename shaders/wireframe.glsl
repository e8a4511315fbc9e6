#version 330 core
// Wireframe: mesh edges as antialiased screen-space quads of a given pixel width (a geometry
// shader extrudes each line, since core profiles only guarantee 1-pixel GL lines).
// core/render.py inserts "#define VERTEX_SHADER" / GEOMETRY_SHADER / FRAGMENT_SHADER.

#if defined VERTEX_SHADER

uniform mat4 u_projection;
uniform float u_depth_bias_m;  // pulls lines towards the camera along their ray (no 2D shift)

in vec3 in_position;  // OpenCV camera space, metres

void main() {
    vec3 p = in_position * max(1.0 - u_depth_bias_m / max(in_position.z, 1e-6), 0.0);
    gl_Position = u_projection * vec4(p, 1.0);
}

#elif defined GEOMETRY_SHADER

layout(lines) in;
layout(triangle_strip, max_vertices = 4) out;

uniform vec2 u_viewport_px;
uniform float u_width_px;

noperspective out float g_offset_px;  // signed distance from the line's centre, pixels

void main() {
    vec4 p0 = gl_in[0].gl_Position;
    vec4 p1 = gl_in[1].gl_Position;
    if (p0.w <= 0.0 || p1.w <= 0.0) return;  // behind the camera
    vec2 half_vp = 0.5 * u_viewport_px;
    vec2 s0 = p0.xy / p0.w * half_vp;
    vec2 s1 = p1.xy / p1.w * half_vp;
    vec2 dir = s1 - s0;
    float len = length(dir);
    dir = len > 1e-6 ? dir / len : vec2(1.0, 0.0);
    float half_width = 0.5 * u_width_px + 1.0;  // one extra pixel for the antialiased fringe
    vec2 normal_ndc = vec2(-dir.y, dir.x) * half_width / half_vp;
    vec2 along_ndc = dir * (0.5 * u_width_px) / half_vp;  // square caps close the joints
    vec4 ends[2] = vec4[2](p0, p1);
    float along_sign[2] = float[2](-1.0, 1.0);
    for (int e = 0; e < 2; ++e) {
        for (int side = -1; side <= 1; side += 2) {
            vec4 p = ends[e];
            vec2 ndc = p.xy / p.w + along_sign[e] * along_ndc + float(side) * normal_ndc;
            gl_Position = vec4(ndc * p.w, p.z, p.w);
            g_offset_px = float(side) * half_width;
            EmitVertex();
        }
    }
    EndPrimitive();
}

#elif defined FRAGMENT_SHADER

uniform vec4 u_color;  // straight RGB, A = opacity
uniform float u_width_px;

noperspective in float g_offset_px;

out vec4 out_color;  // premultiplied alpha

void main() {
    float alpha = clamp(0.5 * u_width_px + 0.5 - abs(g_offset_px), 0.0, 1.0) * u_color.a;
    if (alpha <= 0.0) discard;
    out_color = vec4(u_color.rgb * alpha, alpha);
}

#endif
