#version 330 core
// Multisampled depth buffer -> (camera-space Z in metres, coverage) per pixel, one full-screen
// triangle. Each sample's depth is exact at that sample, so silhouette pixels average the Z of
// the samples the mesh covers instead of extrapolating a varying to the pixel centre.
// core/render.py inserts "#define VERTEX_SHADER" or "#define FRAGMENT_SHADER".

#if defined VERTEX_SHADER

void main() {
    vec2 ndc = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2)) * 2.0 - 1.0;
    gl_Position = vec4(ndc, 0.0, 1.0);
}

#elif defined FRAGMENT_SHADER

uniform sampler2DMS u_depth;
uniform int u_samples;
// Depth row of core.camera.opengl_projection: z_ndc = a + b / Z, so Z = b / (z_ndc - a).
uniform float u_proj_a;
uniform float u_proj_b;

out vec2 out_depth_coverage;

void main() {
    ivec2 pixel = ivec2(gl_FragCoord.xy);
    float z_sum = 0.0;
    int covered = 0;
    for (int i = 0; i < u_samples; ++i) {
        float d = texelFetch(u_depth, pixel, i).r;
        if (d < 1.0) {  // cleared to 1.0 (the far plane) where nothing was drawn
            z_sum += u_proj_b / ((2.0 * d - 1.0) - u_proj_a);
            covered += 1;
        }
    }
    out_depth_coverage = vec2(covered > 0 ? z_sum / float(covered) : 0.0, float(covered) / float(u_samples));
}

#endif
